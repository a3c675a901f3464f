"""The logs family's correlation checks on 100 MB of container logs (needs root, docker.io,
busybox-static), beside the shell pipeline an operator would write instead.

    python benchmarks/log_correlation.py

A container on a private engine writes 100 MB of mixed lines (caddy-style JSON access lines
with a 5xx now and then, CreateTask / "completed successfully" pairs, ExecuteTask lines).
Each row is ONE process, measured on its own (os.wait4: wall time and max RSS of that
process and the children it waited for):

- `pytest -m logs` (as a user runs it) with the logs checks that existed before correlation
  (forbidden, error rate): the current figures;
- the same run with the correlation checks added (a sequence paired by key, two ratios, a
  JSON field condition, lines at a cron schedule's times), on the default window cap
  (max_bytes 16 MiB) and on a cap that holds the whole 100 MB;
- `docker logs NAME 2>&1 | awk ...` computing the same 5xx share and unpaired CreateTasks.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers_docker import DockerEngineServer  # noqa: E402

PAD = "p" * 900
BLOCK = (
    # 100 lines of about 1 kB: 96 access lines (one 502), a CreateTask and its completion, two ExecuteTask
    'i=0; while [ $i -lt 95 ]; do echo \'{"logger":"http.log.access","msg":"handled request","status":200,'
    f'"pad":"{PAD}"}}\'; i=$((i+1)); done > /tmp/block; '
    f'echo \'{{"logger":"http.log.access","msg":"handled request","status":502,"pad":"{PAD}"}}\' >> /tmp/block; '
    'echo "CreateTask id=7 workflow=wf-42" >> /tmp/block; echo "✅ task 7 completed successfully" >> /tmp/block; '
    'echo "ExecuteTask 7" >> /tmp/block; echo "✅ task 7 completed" >> /tmp/block; '
)
WRITER = (
    "echo 'Listening for PostgreSQL NOTIFY events'; "
    + BLOCK
    + "while cat /tmp/block; do :; done | head -c 100000000; echo; echo done; sleep 100000"
)

BEFORE = {
    "forbidden": [{"name": "task_panic", "pattern": "TASK_PANIC"}],
    "error_rate": {},
}
CORRELATION = {
    "forbidden": [
        *BEFORE["forbidden"],
        {"name": "json_errors", "pattern": '"level"', "fields": [{"path": "level", "op": "==", "value": "error"}]},
    ],
    "sequences": [
        {
            "name": "create_task",
            "first": r"CreateTask id=(?P<task>\d+)",
            "then": r"✅ task (?P<task>\d+) completed successfully",
            "key": "task",
            "within": "60s",
        }
    ],
    "ratios": [
        {
            "name": "caddy_5xx",
            "matching": {"pattern": '"status":5', "fields": [{"path": "status", "op": ">=", "value": 500}]},
            "of": "http.log.access",
            "max_pct": 2,
        },
        {"name": "completed", "matching": r"✅ task \d+ completed$", "of": "ExecuteTask", "min_pct": 95},
    ],
    "expected_at": [{"name": "scheduler", "cron": "* * * * *", "matching": "CreateTask", "window": "start"}],
}

AWK = (
    "docker logs --since 1h {name} 2>&1 | awk '"
    '/http.log.access/ {{ n++; if ($0 ~ /"status":5/) e++ }} '
    "/CreateTask id=/ {{ match($0, /id=[0-9]+/); open[substr($0, RSTART+3, RLENGTH-3)]++ }} "
    "/completed successfully/ {{ match($0, /task [0-9]+/); delete open[substr($0, RSTART+5, RLENGTH-5)] }} "
    'END {{ c = 0; for (k in open) c++; printf "5xx %.2f %% of %d, %d unpaired\\n", 100*e/n, n, c }}\''
)


def measured(command: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall s, max RSS MiB, output) of one process and the children it waited for."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, output


def suite(server: DockerEngineServer, patterns: dict, max_bytes: int) -> tuple[float, float, dict]:
    """One `pytest -m logs` run: (wall s, max RSS MiB, {check: duration s})."""
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "inventory.yml"
        source = {"name": "bigmix", "docker": "engine", "container": "bigmix", "max_bytes": max_bytes}
        inventory.write_text(
            yaml.safe_dump(
                {
                    "environment": "bench-correlation",
                    "docker": [{"name": "engine", "engine": server.url}],
                    "logs": [{**source, "tail_lines": 1_000_000, **patterns}],
                },
                allow_unicode=True,
            )
        )
        command = [sys.executable, "-m", "pytest", f"--inventory={inventory}", f"--reports-dir={tmp}/r", "-m", "logs"]
        wall, rss, output = measured(command + ["-q", "-p", "no:cacheprovider", "--no-state"])
        summaries = list(Path(tmp, "r").glob("*/*/summary.json"))
        if not summaries:
            raise RuntimeError(output[-3000:])
        checks = json.loads(summaries[0].read_text())["checks"]
        failed = [c["id"] for c in checks if c["outcome"] != "passed" and "window_complete" not in c["id"]]
        if failed:
            raise RuntimeError(f"unexpected failures: {failed}\n{output[-3000:]}")
        return wall, rss, {c["id"].split("::")[1]: c["duration"] for c in checks}


def main() -> None:
    server = DockerEngineServer().start()
    try:
        server.run("bigmix", WRITER)
        server.wait("bigmix", lambda a: b"done" in server.client.api.logs("bigmix", tail=2), 300, "100 MB logged")
        print("100 MB of container logs (about 100,000 lines of 1 kB), one process per row")
        print()
        print("| run | window cap | wall (s) | max RSS (MiB) | correlation checks (s) |")
        print("|---|---|---|---|---|")
        for cap in (16 * 1024 * 1024, 128 * 1024 * 1024):
            for label, patterns in (("logs checks before correlation", BEFORE), ("+ correlation checks", CORRELATION)):
                wall, rss, durations = suite(server, patterns, cap)
                correlation = sum(
                    d
                    for c, d in durations.items()
                    if any(k in c for k in ("sequence", "ratio", "expected", "json_errors"))
                )
                shown = f"{correlation:.2f}" if patterns is CORRELATION else "-"
                print(f"| pytest -m logs, {label} | {cap // 1024 // 1024} MiB | {wall:.2f} | {rss:.0f} | {shown} |")
        env = {**os.environ, "DOCKER_HOST": server.url}
        wall, rss, output = measured(["sh", "-c", AWK.format(name="bigmix")], env=env)
        pipeline = "`docker logs bigmix 2>&1 \\| awk` (5xx share, unpaired CreateTask)"
        print(f"| {pipeline} | none | {wall:.2f} | {rss:.0f} | - |")
        print()
        print(f"awk said: {output.strip()}")
        print("command: python benchmarks/log_correlation.py")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
