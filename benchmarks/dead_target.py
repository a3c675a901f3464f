"""What one unreachable PostgreSQL target with 10 checks costs a run, with and without xdist.

    python benchmarks/dead_target.py            # prints a table; needs root for the netns case

Three kinds of dead: a listener that accepts and never answers, an address whose packets
are dropped (netns + nft), and a closed port. The per-call timeout is 2 s (libpq's
minimum connect_timeout). Wall time is the whole pytest process (start-up included);
"checks" is the sum of the ten checks' durations from summary.json.
"""

import sys
import tempfile
import time
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import run_suite  # noqa: E402
from tests.servers import BlackholeNamespace, SilentListener, closed_port  # noqa: E402

# select_1, the two connection checks and 7 SQL assertions: the "10 checks on it"
TEN_CHECKS = ["-k", "select_1 or connections_below or sql_assertion"]


def target(dsn: str) -> dict:
    assertions = [{"name": f"a{i}", "query": f"SELECT {i}", "op": "==", "value": i} for i in range(7)]
    return {
        "environment": "bench-dead",
        "postgres": [{"name": "dead", "dsn": dsn, "timeout": 2, "assertions": assertions}],
    }


def measure(label: str, dsn: str, counter=None) -> None:
    for mode, args in (("serial", []), ("xdist -n 2", ["-n", "2"])):
        before = counter.accepts if counter else 0
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run_suite(target(dsn), Path(tmp), *TEN_CHECKS, *args)
            wall = time.perf_counter() - start
        checks = sum(c["duration"] for c in result.checks.values())
        attempts = f"{counter.accepts - before}" if counter else "-"
        print(f"| {label} | {mode} | {wall:.2f} | {checks:.2f} | {len(result.checks)} | {attempts} |")


def main() -> None:
    print("| dead target | mode | wall s | checks s | checks | connection attempts |")
    print("|---|---|---|---|---|---|")
    with SilentListener() as silent:
        measure("accepts, never answers", f"postgresql://u:pw@127.0.0.1:{silent.port}/db", silent)
    try:
        with BlackholeNamespace() as ns:
            measure("packets dropped (netns)", f"postgresql://u:pw@{ns.address}:5432/db")
    except RuntimeError as exc:
        print(f"| packets dropped (netns) | skipped: {exc} | | | | |")
    measure("closed port", f"postgresql://u:pw@127.0.0.1:{closed_port()}/db")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_suite({"environment": "bench-empty", "hosts": [{"name": "h"}]}, Path(tmp), "-k", "memory")
        print(f"\nbaseline: a run with one trivial check takes {time.perf_counter() - start:.2f} s wall")


if __name__ == "__main__":
    main()
