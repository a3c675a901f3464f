"""The containers family's costs on a private Docker engine (needs root, docker.io, busybox-static).

    python benchmarks/docker_stats.py

1. Stats sweep: `stats` takes about a second per container (the engine waits for a second CPU
   sample). The containers family reads all containers of an engine in ONE concurrent sweep:
   measured for 1 and 20 running containers, against reading them one after another.
2. Logs: the whole suite (a subprocess, as a user runs it) reading the window of a container
   that wrote 100 MB of logs, with the default byte cap (max_bytes 16 MiB): wall time, the
   time of the log checks, and the run's memory high-water mark (ru_maxrss of the pytest
   process), beside a run on a container with a few lines.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opscheck.families.docker import Docker, DockerEngine  # noqa: E402
from tests.servers_docker import DockerEngineServer  # noqa: E402


def sweep(server: DockerEngineServer, names: list[str]) -> tuple[float, float]:
    target = Docker(name="bench", engine=server.url, containers=[{"name": n} for n in names])
    engine = DockerEngine(target, timeout=30)
    ids = [engine.find(spec)[0]["Id"] for spec in target.containers]
    start = time.perf_counter()
    result = engine.sweep_stats(ids)
    concurrent = time.perf_counter() - start
    assert all(not isinstance(v, str) for v in result.values()), result
    start = time.perf_counter()
    for container_id in ids:
        engine.client().stats(container_id, stream=False)
    serial = time.perf_counter() - start
    engine.close()
    return concurrent, serial


def suite_memory(server: DockerEngineServer, container: str) -> tuple[float, float, int]:
    """(wall s, log checks s, max RSS KiB) of `pytest -m logs` on one container's log."""
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "inventory.yml"
        inventory.write_text(
            "environment: bench-logs\n"
            f"docker: [{{name: engine, engine: '{server.url}'}}]\n"
            f"logs:\n  - name: {container}\n    docker: engine\n    container: {container}\n"
            "    forbidden: [{name: task_panic, pattern: TASK_PANIC}]\n"
            "    required: [{name: listener, pattern: 'Listening for PostgreSQL NOTIFY', window: start}]\n"
            "    error_rate: {}\n"
        )
        command = [
            sys.executable,
            "-m",
            "pytest",
            f"--inventory={inventory}",
            f"--reports-dir={tmp}/r",
            "-m",
            "logs",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
        wall = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary = json.loads(next(Path(tmp, "r").glob("*/*/summary.json")).read_text())
        checks = sum(c["duration"] for c in summary["checks"])
        if proc.returncode not in (0, 1):
            raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
        return wall, checks, max(rss, before)


def main() -> None:
    server = DockerEngineServer().start()
    try:
        names = [f"c{i:02d}" for i in range(20)]
        server.run_many({n: ("sleep 100000", {}) for n in names})
        print("| containers | one concurrent sweep (s) | one after another (s) |")
        print("|---|---|---|")
        for count in (1, 20):
            concurrent, serial = sweep(server, names[:count])
            print(f"| {count} | {concurrent:.2f} | {serial:.2f} |")

        server.run_many(
            {
                "small": ("echo 'Listening for PostgreSQL NOTIFY events'; echo ERROR one; sleep 100000", {}),
                "biglog": (
                    "echo 'Listening for PostgreSQL NOTIFY events'; yes \"$(head -c 1000 /dev/zero | tr '\\0' x)\" "
                    "| head -c 100000000; echo; echo done; sleep 100000",
                    {},
                ),
            }
        )
        server.wait("biglog", lambda a: b"done" in server.client.api.logs("biglog", tail=1), 120, "100 MB logged")
        print()
        print("| log window | wall (s) | log checks (s) | pytest max RSS (MiB) |")
        print("|---|---|---|---|")
        # the small run first: ru_maxrss of children is a high-water mark over all of them
        for container in ("small", "biglog"):
            wall, checks, rss = suite_memory(server, container)
            print(f"| {container} | {wall:.2f} | {checks:.2f} | {rss / 1024:.0f} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
