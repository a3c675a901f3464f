"""The fault table: each fault made real while a run goes, its wall time against its bound,
the exit code, and whether the reports are complete (or, where they cannot be, cleanly absent).

    python benchmarks/faults.py        # as root (PostgreSQL runs as postgres; a tmpfs is mounted)

Per-call timeout 2 s, statement_timeout 2 s: the PostgreSQL client deadline is 4 s. "checks"
is the sum of the checks' durations from summary.json; "wall" is the whole pytest process
(start-up on this machine included). The same faults are self-tests in tests/test_faults.py.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import REPO, run_suite  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402
from tests.servers_faults import cluster_pids, frozen, report_files, start_suite  # noqa: E402
from tests.test_faults import DEADLINE, LOCAL, ONE_CHECK, PASSWORD, TIMEOUT, _fill, pg_inventory, slow_query_pid  # noqa: E402

ROWS: list[tuple] = []


def complete(reports: Path) -> str:
    files = report_files(reports)
    if {"report.html", "junit.xml", "summary.json"} <= set(files):
        summary = json.loads(files["summary.json"])
        return "interrupted, marked" if summary.get("interrupted") else "yes"
    return "none written (no partial)" if not files else f"partial: {sorted(files)}"


def row(fault: str, result, wall: float, bound: str, reports: Path, note: str = "") -> None:
    checks = sum(c["duration"] for c in result.summary.get("checks", [])) if result.summary else 0.0
    traceback = "Traceback" in result.output or "INTERNALERROR" in result.output
    ROWS.append(
        (fault, f"{checks:.1f}", f"{wall:.1f}", bound, result.rc, complete(reports), "yes" if traceback else "no", note)
    )


def main() -> None:
    with PostgresServer() as pg:
        pg.create_monitor_role("opscheck", PASSWORD)
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            run = start_suite(pg_inventory(pg), t / "a", "-k", "sql_assertion", "--timeout=60")
            slow_query_pid(pg)
            with frozen(cluster_pids(pg)):
                result, wall = run.result()
            row("PostgreSQL frozen mid-query", result, wall, f"checks < {DEADLINE + 2:g} s", t / "a" / "reports")

            with frozen(cluster_pids(pg)):
                start = time.monotonic()
                result = run_suite(pg_inventory(pg), t / "b", "-k", "sql_assertion or select_1")
                wall = time.monotonic() - start
            row("PostgreSQL frozen before the run", result, wall, f"checks < {TIMEOUT + 2} s", t / "b" / "reports")

            run = start_suite(pg_inventory(pg), t / "c", "-k", "sql_assertion")
            os.kill(slow_query_pid(pg), 9)
            result, wall = run.result()
            row("PostgreSQL backend killed mid-query", result, wall, "one failure, rest blocked", t / "c" / "reports")

            run = start_suite(pg_inventory(pg, "gone"), t / "d", "-k", "sql_assertion")
            slow_query_pid(pg)
            shutil.move(t / "d" / "reports" / "gone", t / "moved")
            (t / "d" / "reports" / "gone").write_text("a file")
            result, wall = run.result()
            row("reports dir replaced by a file", result, wall, "exit 6, summary printed", t / "d" / "reports")

            reports = t / "e" / "reports"
            run_suite(pg_inventory(pg, "int"), t / "e0", "-k", "b-after", f"--reports-dir={reports}")
            run = start_suite(pg_inventory(pg, "int"), t / "e", "-k", "sql_assertion", reports=reports)
            slow_query_pid(pg)
            run.interrupt()
            result, wall = run.result()
            row("Ctrl-C mid-query", result, wall, "exit 2, latest kept", reports)

    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        inventory = {
            "environment": "bench-redis",
            "defaults": {"timeout": TIMEOUT},
            "redis": [{"name": "queue", "url": server.url(), "queues": [{"key": "jobs", "may_be_absent": True}]}],
        }
        with frozen([server.proc.pid]):
            start = time.monotonic()
            result = run_suite(inventory, Path(tmp), "-k", "redis")
            wall = time.monotonic() - start
        row("Redis frozen", result, wall, f"checks < {TIMEOUT + 2} s", Path(tmp) / "reports", "not answering")

    with tempfile.TemporaryDirectory() as tmp:
        disk = Path(tmp) / "disk"
        disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
        try:  # as tests/test_faults.py: one run fits, then too little is left for another's reports
            run_suite(LOCAL, Path(tmp) / "x", *ONE_CHECK, f"--reports-dir={disk}")
            _fill(disk / "filler", leave=16 * 1024)
            start = time.monotonic()
            result = run_suite(LOCAL, Path(tmp) / "y", *ONE_CHECK, f"--reports-dir={disk}")
            wall = time.monotonic() - start
            newest = sorted(p for p in (disk / "local").iterdir() if p.is_dir() and not p.is_symlink())[-1]
            latest = os.readlink(disk / "local" / "latest")
            note = f"latest -> {latest} (the first run), newest dir {newest.name}: {sorted(os.listdir(newest))}"
            row(
                "reports dir full (1 MiB tmpfs, 16 KiB left)",
                result,
                wall,
                "exit 6, summary printed",
                Path(tmp) / "y" / "reports",
                note,
            )
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)

    with tempfile.TemporaryDirectory() as tmp:
        reports = Path(tmp) / "shared"
        start = time.monotonic()
        runs = [start_suite(LOCAL, Path(tmp) / f"r{i}", *ONE_CHECK, reports=reports) for i in range(4)]
        results = [r.result()[0] for r in runs]
        wall = time.monotonic() - start
        state = json.loads((reports / "local" / "state.json").read_text())
        ok = all(r.rc in (0, 1) and "Traceback" not in r.output for r in results)
        dirs = [p for p in (reports / "local").iterdir() if p.is_dir() and not p.is_symlink()]
        result = results[-1]
        row(
            "4 runs at once, one reports dir",
            result,
            wall,
            "no crash, 4 reports",
            reports,
            f"all clean: {ok}; {len(dirs)} run dirs; state last_run {state.get('last_run')}",
        )

    print("| fault | checks (s) | wall (s) | bound | exit | reports complete | traceback | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(str(x) for x in r) + " |")
    print(f"\ncommand: {sys.executable} benchmarks/faults.py   (in {REPO})")


if __name__ == "__main__":
    main()
