"""Faults mid-run, each made real: a server frozen (SIGSTOP) or killed while its checks run,
a reports directory that fills up or is replaced by a file, Ctrl-C, runs at once, -n 2.

Each asserts the run's wall time (or the checks' time) against its bound, the exit code,
no traceback, and what the reports say; benchmarks/faults.py prints the same as a table.
"""

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import REPO, run_suite
from tests.servers import PostgresServer, RedisServer
from tests.servers_faults import cluster_pids, frozen, report_files, start_suite, wait_until

PASSWORD = "Fault-pw-4417"
TIMEOUT = 2  # seconds per network call
STATEMENT_MS = 2000
DEADLINE = STATEMENT_MS / 1000 + TIMEOUT  # the client's query deadline
SLOW = "SELECT 1 AS v FROM pg_sleep(1.5)"


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        server.create_monitor_role("opscheck", PASSWORD)
        yield server


def pg_inventory(pg, env="faults", slow=SLOW, statement_ms=None, timeout=None):
    return {
        "environment": env,
        "defaults": {"timeout": timeout or TIMEOUT},
        "postgres": [
            {
                "name": "db",
                "dsn": pg.dsn("opscheck", PASSWORD),
                "statement_timeout_ms": statement_ms or STATEMENT_MS,
                "assertions": [
                    {"name": "a-slow", "query": slow, "value": 1},
                    {"name": "b-after", "query": "SELECT 1 AS v", "value": 1},
                    {"name": "c-after", "query": "SELECT 2 AS v", "value": 2},
                ],
            }
        ],
    }


def slow_query_pid(pg, slow=SLOW) -> int:
    """The backend running the slow assertion, once it runs."""
    sql = f"SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = '{slow}'"
    return wait_until(lambda: int(pg.psql(sql).strip() or 0), 60, "the slow assertion")


def assert_clean(result):
    assert "Traceback" not in result.output and "INTERNALERROR" not in result.output, result.output


def checks_seconds(result) -> float:
    return sum(c["duration"] for c in result.summary["checks"])


def test_postgres_frozen_mid_query(pg, tmp_path):
    """The server stops answering while a query runs: one client deadline, then blocked."""
    run = start_suite(pg_inventory(pg), tmp_path, "-k", "sql_assertion", "--timeout=60")
    slow_query_pid(pg)
    with frozen(cluster_pids(pg)):  # the backend serving the run included
        result, _ = run.result()
    assert_clean(result)
    assert result.rc == 1, result.output
    result.assert_failed("test_postgres_sql_assertion[db:a-slow]", f"no answer within {DEADLINE:g} s")
    result.assert_failed("test_postgres_sql_assertion[db:b-after]", "blocked: ")
    result.assert_failed("test_postgres_sql_assertion[db:c-after]", "blocked: ")
    assert checks_seconds(result) < DEADLINE + 2, result.summary["checks"]
    assert (tmp_path / "reports" / "faults" / "latest" / "summary.json").exists()
    assert set(report_files(tmp_path / "reports")) == RUN_FILES


def test_postgres_frozen_before_the_run(pg, tmp_path):
    with frozen(cluster_pids(pg)):
        result = run_suite(pg_inventory(pg), tmp_path, "-k", "sql_assertion or select_1")
    assert_clean(result)
    assert result.rc == 1
    result.assert_failed("test_postgres_select_1[db]", "cannot connect")
    result.assert_failed("test_postgres_sql_assertion[db:a-slow]", "blocked: ")
    assert checks_seconds(result) < TIMEOUT + 2, result.summary["checks"]


def test_postgres_backend_killed_mid_query(pg, tmp_path):
    run = start_suite(pg_inventory(pg), tmp_path, "-k", "sql_assertion")
    os.kill(slow_query_pid(pg), 9)
    result, _ = run.result()
    assert_clean(result)
    assert result.rc == 1
    result.assert_failed("test_postgres_sql_assertion[db:a-slow]", "connection lost")
    result.assert_failed("test_postgres_sql_assertion[db:b-after]", "blocked: ")
    wait_until(lambda: pg.psql("SELECT 1").strip() == "1", 60, "PostgreSQL after crash recovery")


def test_redis_frozen_is_not_answering(tmp_path):
    with RedisServer() as server:
        inventory = {
            "environment": "faults-redis",
            "defaults": {"timeout": TIMEOUT},
            "redis": [{"name": "queue", "url": server.url(), "queues": [{"key": "jobs", "may_be_absent": True}]}],
        }
        with frozen([server.proc.pid]):
            result = run_suite(inventory, tmp_path, "-k", "redis")
    assert_clean(result)
    assert result.rc == 1
    messages = [c["message"] for c in result.summary["checks"]]
    assert sum("not answering" in m and "blocked" not in m for m in messages) == 1, messages
    assert all("not answering" in m for m in messages) and not any("cannot connect" in m for m in messages)
    assert checks_seconds(result) < TIMEOUT + 2, result.summary["checks"]


LOCAL = (REPO / "inventories" / "local.yml").read_text()
ONE_CHECK = ("-k", "test_memory_available")
RUN_FILES = {"report.html", "details.html", "junit.xml", "summary.json"}


def _fill(path, leave: int) -> None:
    """Fill a filesystem to the last `leave` bytes."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"x" * 65536)
                f.flush()
        except OSError:
            pass
    os.truncate(path, max(0, os.path.getsize(path) - leave))


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: one run's reports fit; fill() then leaves too little for another's."""
    folder = tmp_path / "disk"
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_reports_directory(small_disk, tmp_path):
    first = run_suite(LOCAL, tmp_path / "a", *ONE_CHECK, f"--reports-dir={small_disk}")
    assert first.rc in (0, 1) and (small_disk / "local" / "latest" / "summary.json").exists(), first.output
    latest = os.readlink(small_disk / "local" / "latest")
    _fill(small_disk / "filler", leave=16 * 1024)  # a run directory can be made, its reports cannot be written
    second = run_suite(LOCAL, tmp_path / "b", *ONE_CHECK, f"--reports-dir={small_disk}")
    assert_clean(second)
    assert second.rc == 6, second.output
    assert "reports of this run could not be written" in second.output
    assert " passed" in second.output or " failed" in second.output, "the terminal summary is printed"
    assert os.readlink(small_disk / "local" / "latest") == latest
    runs = [p for p in (small_disk / "local").iterdir() if p.is_dir() and not p.is_symlink()]
    for run in runs:  # the complete first run, and nothing truncated of the second
        names = {f.name for f in run.iterdir()}
        assert names in (RUN_FILES, set()), names


def test_reports_directory_replaced_by_a_file_mid_run(pg, tmp_path):
    run = start_suite(pg_inventory(pg, "faults-gone"), tmp_path, "-k", "sql_assertion")
    slow_query_pid(pg)
    env_dir = tmp_path / "reports" / "faults-gone"
    shutil.move(env_dir, tmp_path / "moved-away")
    env_dir.write_text("not a directory")
    result, _ = run.result()
    assert_clean(result)
    assert result.rc == 6, result.output
    assert "could not be written" in result.output and " passed" in result.output


def test_ctrl_c_marks_the_run_interrupted(pg, tmp_path):
    reports = tmp_path / "reports"
    done = run_suite(pg_inventory(pg, "faults-int"), tmp_path / "first", "-k", "b-after", f"--reports-dir={reports}")
    assert done.rc == 0, done.output
    env_dir = reports / "faults-int"
    latest, state = os.readlink(env_dir / "latest"), (env_dir / "state.json").read_bytes()
    # a query long enough that the interrupt lands in it however slow this machine is today
    slower = "SELECT 1 AS v FROM pg_sleep(20)"
    inventory = pg_inventory(pg, "faults-int", slow=slower, statement_ms=30000, timeout=30)
    run = start_suite(inventory, tmp_path / "second", "-k", "sql_assertion", reports=reports)
    slow_query_pid(pg, slower)
    run.interrupt()
    result, _ = run.result()
    assert_clean(result)
    assert result.rc == 2, result.output
    assert os.readlink(env_dir / "latest") == latest and (env_dir / "state.json").read_bytes() == state
    files = report_files(reports)
    summary = json.loads(files["summary.json"])
    assert summary["interrupted"] is True and summary["exit_status"] == 2
    outcomes = {c["id"].split("::")[1]: c["outcome"] for c in summary["checks"]}
    assert outcomes.get("test_postgres_sql_assertion[db:a-slow]") == "interrupted", outcomes
    assert "passed" not in outcomes.values() or outcomes["test_postgres_sql_assertion[db:a-slow]"] != "passed"
    assert "INTERRUPTED" in files["report.html"]
    suite = ET.fromstring(files["junit.xml"]).find("testsuite")
    assert {(p.get("name"), p.get("value")) for p in suite.iter("property")} >= {("interrupted", "true")}
    assert all(case.get("name") for case in suite.iter("testcase"))


def test_runs_at_once_share_a_reports_directory(tmp_path):
    reports = tmp_path / "shared"
    runs = [start_suite(LOCAL, tmp_path / f"r{i}", *ONE_CHECK, reports=reports) for i in range(4)]
    results = [run.result()[0] for run in runs]
    for result in results:
        assert_clean(result)
        assert result.rc in (0, 1), result.output
    env_dir = reports / "local"
    finished = [p for p in env_dir.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(finished) == 4 and all((p / "summary.json").exists() for p in finished)
    assert (env_dir / os.readlink(env_dir / "latest") / "summary.json").exists()
    assert "last_run" in json.loads((env_dir / "state.json").read_text())
    assert not [p.name for p in env_dir.iterdir() if p.name.endswith(".tmp")]


def test_serial_and_parallel_runs_name_checks_alike(tmp_path):
    names = {}
    for mode, extra in (("serial", ()), ("parallel", ("-n", "2"))):
        result = run_suite(LOCAL, tmp_path / mode, "-k", "memory or disk", *extra)
        assert result.rc in (0, 1), result.output
        junit = ET.fromstring(report_files(tmp_path / mode / "reports")["junit.xml"])
        names[mode] = (
            sorted(c["id"] for c in result.summary["checks"]),
            sorted(f"{c.get('classname')}.{c.get('name')}" for c in junit.iter("testcase")),
            result.summary["counts"]["deselected"],
        )
    assert names["serial"] == names["parallel"]
    assert names["serial"][2] > 0 and not any("@" in n for n in names["serial"][1])
