"""What opscheck adds to pytest: per-check overhead, collection growth, start-up.

    .venv/bin/python benchmarks/overhead.py [--runs 5] [--checkout DIR]

Side by side, in one run, each figure the median of --runs:
- per-check overhead: the marginal wall time of 1,000 more Redis queue checks on one real
  local redis-server (500 -> 1,000 keys, two checks per key), every report on (HTML,
  JUnit, summary.json), against the marginal time of 1,000 more trivial parametrized
  pytest tests with the same reports (pytest's own cost per test); neither run selects
  with -k (pytest's keyword match costs every test), and the figure with `-k queue_depth`
  follows;
- collection growth: `--collect-only` of 10,000 checks against 1,000 checks;
- start-up: `pytest --collect-only` on the default inventory and `opscheck validate` on it,
  each against `python -c "import pytest, pydantic, yaml, requests"` in the same venv.

--checkout DIR measures another checkout of opscheck (its own .venv) with this script, so
a before/after comparison uses the same method. A marginal cost is the median of the
differences of alternating runs (this machine's speed varies from one second to the next),
and each round runs opscheck's pair, plain pytest's pair and the `-k` pair in turn, so a
slow minute hits all three alike. The CPU time (user + system) of the same runs follows: it
counts what the runs compute, not the moments they wait for a busy machine.
"""

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's
import yaml

HERE = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def once(command: list[str], cwd: Path) -> float:
    """The wall time of one run of a command (it must exit 0, 1 or 5)."""
    return measured(command, cwd)[0]


def measured(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of a command (exit 0, 1 or 5)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1, 5):
        sys.exit(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def timed(command: list[str], cwd: Path, runs: int) -> float:
    """The median wall time of a command."""
    return statistics.median(once(command, cwd) for _ in range(runs))


@dataclass
class Marginal:
    """The medians of a small and a large run, and of the per-unit differences of each round's
    pair, in wall and in CPU seconds."""

    small: float
    large: float
    per_unit: float
    per_unit_cpu: float


def marginals(pairs: list[tuple[list[str], list[str], Path]], runs: int, extra: int) -> list[Marginal]:
    """Each (small, large, cwd) pair's Marginal. The pairs run in turn within each round, so a
    slow moment of a shared machine hits every pair of that round alike."""
    rounds = [[(measured(small, cwd), measured(large, cwd)) for small, large, cwd in pairs] for _ in range(runs)]
    found = []
    for i in range(len(pairs)):
        got = [r[i] for r in rounds]
        found.append(
            Marginal(
                statistics.median(a[0] for a, _ in got),
                statistics.median(b[0] for _, b in got),
                statistics.median((b[0] - a[0]) / extra for a, b in got),
                statistics.median((b[1] - a[1]) / extra for a, b in got),
            )
        )
    return found


def queue_inventory(path: Path, port: int, keys: int) -> Path:
    queues = [{"key": f"q{i}", "may_be_absent": True} for i in range(keys)]
    doc = {"environment": "bench", "redis": [{"name": "queue", "url": f"redis://127.0.0.1:{port}/0", "queues": queues}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


TRIVIAL = """
import pytest

@pytest.mark.parametrize("n", range({n}))
def test_trivial(n):
    assert n >= 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--checkout", type=Path, default=HERE, help="an opscheck checkout with its own .venv")
    args = parser.parse_args()
    repo = args.checkout.resolve()
    python = str(repo / ".venv" / "bin" / "python")
    runs = args.runs
    server = shutil.which("redis-server")
    if not server:
        sys.exit("redis-server is needed (apt-get install redis-server)")
    port = free_port()
    redis = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            reports = f"--reports-dir={tmp_path / 'reports'}"
            opscheck = [python, "-m", "pytest", "-q", "-p", "no:randomly", reports, "--keep-runs=1"]

            def keys_command(keys: int, *extra: str) -> list[str]:
                inventory = queue_inventory(tmp_path / f"q{keys}.yml", port, keys)
                return [*opscheck, f"--inventory={inventory}", *extra]

            def run_keys(keys: int, *extra: str) -> float:
                return timed(keys_command(keys, *extra), repo, runs)

            plain = tmp_path / "plain"
            plain.mkdir()
            (plain / "conftest.py").write_text("")
            pytest_cmd = [
                python,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:opscheck",
                "--junitxml=junit.xml",
                "--html=report.html",
                "--self-contained-html",
            ]
            (plain / "test_a.py").write_text(TRIVIAL.format(n=1000))
            (plain / "test_b.py").write_text(TRIVIAL.format(n=2000))

            selected = ("-k", "queue_depth")  # pytest's keyword match, on every check
            ops, plain_tests, ops_k = marginals(
                [
                    # unselected, as the plain tests are (the target's 11 other checks run in both)
                    (keys_command(500), keys_command(1000), repo),
                    ([*pytest_cmd, "test_a.py"], [*pytest_cmd, "test_b.py"], plain),
                    (keys_command(500, *selected), keys_command(1000, *selected), repo),
                ],
                runs,
                1000,
            )
            q500, q1000 = ops.small, ops.large

            c1000 = run_keys(500, "--collect-only", "-k", "queue_depth")
            c10000 = run_keys(5000, "--collect-only", "-k", "queue_depth")

            baseline = timed([python, "-c", "import pytest, pydantic, yaml, requests"], repo, runs)
            local = repo / "inventories" / "local.yml"
            collect = timed(
                [python, "-m", "pytest", "-q", "--collect-only", f"--inventory={local}", reports], repo, runs
            )
            validate_cmd = [python, "-c", "import sys; from opscheck.cli import main; sys.exit(main())"]
            if not (repo / "src" / "opscheck").exists():  # the layout before the move
                validate_cmd = [python, "-m", "fixtures.cli"]
            validate = timed([*validate_cmd, "validate", str(local)], repo, runs)
    finally:
        redis.terminate()
        redis.wait()

    print(f"opscheck checkout: {repo} (median of {runs} runs)")
    print("| figure | measured | budget |")
    print("|---|---|---|")
    print(f"| 1,000 queue checks (500 keys) + 11 other checks, all reports | {q500:.2f} s | |")
    print(f"| 2,000 queue checks (1,000 keys) + 11 other checks, all reports | {q1000:.2f} s | |")
    print(f"| marginal cost per opscheck check | {ops.per_unit * 1000:.2f} ms | <= 1.0 ms |")
    pytest_ms = plain_tests.per_unit * 1000
    print(f"| marginal cost per plain pytest test, same reports | {pytest_ms:.2f} ms | (pytest's own) |")
    print(f"| opscheck / plain pytest, per check | {ops.per_unit / plain_tests.per_unit:.2f} x | |")
    print(f"| marginal cost per opscheck check, `-k queue_depth` | {ops_k.per_unit * 1000:.2f} ms | |")
    print(
        f"| the same in CPU time (user + system): opscheck, plain pytest, ratio | {ops.per_unit_cpu * 1000:.2f} ms, "
        f"{plain_tests.per_unit_cpu * 1000:.2f} ms, {ops.per_unit_cpu / plain_tests.per_unit_cpu:.2f} x | |"
    )
    print(f"| collect 1,000 checks | {c1000:.2f} s | |")
    print(f"| collect 10,000 checks | {c10000:.2f} s | |")
    print(f"| collection growth 10,000 / 1,000 | {c10000 / c1000:.1f} x | <= 10.5 x |")
    print(f"| python -c 'import pytest, pydantic, yaml, requests' | {baseline:.2f} s | |")
    print(f"| pytest --collect-only, default inventory | {collect:.2f} s = {collect / baseline:.1f} x | <= 2.2 x |")
    print(f"| opscheck validate, default inventory | {validate:.2f} s = {validate / baseline:.1f} x | <= 1.7 x |")


if __name__ == "__main__":
    main()
