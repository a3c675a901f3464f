"""10,000 checks in one run, every report on, against 1,000: the growth is linear.

    .venv/bin/python benchmarks/ten_thousand.py [--runs 3]

One real local redis-server with N queue keys; two checks per key (warning and critical
depth), so 500 keys make 1,000 checks and 5,000 keys 10,000. Each figure is the median of
--runs full runs (`pytest -q`, HTML + JUnit + summary.json written). Target: 10,000 checks
in under 15 s, and 10,000 / 1,000 <= 10.5 x the per-check part (wall minus start-up).
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's
import yaml

HERE = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    python = str(HERE / ".venv" / "bin" / "python")
    server = shutil.which("redis-server") or sys.exit("redis-server is needed")
    port = free_port()
    redis = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""], stdout=subprocess.DEVNULL
    )
    time.sleep(0.5)
    figures = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for keys in (500, 5000):
                path = folder / f"q{keys}.yml"
                queues = [{"key": f"q{i}", "may_be_absent": True} for i in range(keys)]
                url = f"redis://127.0.0.1:{port}/0"
                path.write_text(
                    yaml.safe_dump({"environment": "bench", "redis": [{"name": "q", "url": url, "queues": queues}]})
                )
                command = [python, "-m", "pytest", "-q", "-p", "no:randomly", f"--inventory={path}"]
                command += [f"--reports-dir={folder / 'reports'}", "--keep-runs=1", "--no-state", "-k", "queue_depth"]
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    proc = subprocess.run(command, cwd=HERE, capture_output=True, text=True)
                    times.append(time.perf_counter() - start)
                    if proc.returncode != 0:
                        sys.exit(f"exit {proc.returncode}: {proc.stdout[-2000:]}")
                figures[keys * 2] = (statistics.median(times), proc.stdout.strip().splitlines()[-1], command)
            start = time.perf_counter()
            subprocess.run([python, "-c", "import pytest, opscheck.session"], cwd=HERE, check=True)
            startup = time.perf_counter() - start
    finally:
        redis.terminate()
        redis.wait()
    small, large = figures[1000][0], figures[10000][0]
    print("| checks | wall s (median) | pytest says |")
    print("|---|---|---|")
    for n, (wall, said, _) in figures.items():
        print(f"| {n:,} | {wall:.2f} | {said} |")
    growth = (large - startup) / max(small - startup, 1e-9)
    print(f"10,000 checks: {large:.2f} s (target < 15 s: {'met' if large < 15 else 'NOT met'})")
    print(
        f"growth of the per-check part 10,000 / 1,000: {growth:.1f} x (linear: ~10 x; import start-up {startup:.2f} s)"
    )
    print(f"command: {' '.join(figures[10000][2])}")


if __name__ == "__main__":
    main()
