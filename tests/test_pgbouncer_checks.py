"""PgBouncer family against a real PgBouncer in front of a real PostgreSQL.

Broken for real: a pool of 2 server connections held by two open transactions, and a
third client queued behind them (cl_waiting, maxwait growing).
"""

import contextlib
import threading
import time

import psycopg
import pytest

from tests.conftest import run_suite
from tests.servers import PgBouncerServer, PostgresServer, closed_port

PASSWORD = "opscheck-Bouncer-4417"
STATS_PASSWORD = "stats-Only-5521"


@pytest.fixture(scope="module")
def bouncer():
    with PostgresServer() as pg:
        pg.create_monitor_role("opscheck", PASSWORD)
        with PgBouncerServer(pg, {"opscheck": PASSWORD, "stats": STATS_PASSWORD}, pool_size=2) as pgb:
            yield pgb


def inventory(pgb, **limits):
    return {
        "environment": "selftest-pgbouncer",
        "pgbouncer": [
            {"name": "bouncer", "dsn": pgb.dsn("stats", "pgbouncer"), **limits},
            {"name": "stopped", "dsn": f"postgresql://stats:{STATS_PASSWORD}@127.0.0.1:{closed_port()}/pgbouncer"},
        ],
    }


@contextlib.contextmanager
def saturated(pgb):
    """Two transactions hold both server connections; a third client waits for one."""
    holders = [psycopg.connect(pgb.dsn("opscheck")) for _ in range(2)]
    for conn in holders:
        conn.execute("SELECT 1")  # transaction pooling: the open transaction keeps its server
    waiter = psycopg.connect(pgb.dsn("opscheck"), autocommit=True)
    thread = threading.Thread(target=_query, args=(waiter,), daemon=True)
    thread.start()
    try:
        time.sleep(1.5)
        yield
    finally:
        for conn in holders:
            conn.close()
        thread.join(10)
        waiter.close()


def _query(conn):
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT 1")


def test_idle_pool_passes_and_stopped_bouncer_fails(bouncer, tmp_path):
    result = run_suite(inventory(bouncer), tmp_path)
    result.assert_passed(
        *(
            f"test_pgbouncer_{c}[bouncer]"
            for c in (
                "console_answers",
                "clients_waiting_below_limit",
                "maxwait_below_warning",
                "maxwait_below_critical",
                "server_pool_below_warning",
                "server_pool_below_critical",
                "client_connections_below_limit",
            )
        )
    )
    result.assert_failed("test_pgbouncer_console_answers[stopped]", "cannot connect")
    result.assert_failed("test_pgbouncer_maxwait_below_warning[stopped]", "blocked:")
    assert STATS_PASSWORD not in result.output


def test_saturated_pool_fails_waiting_maxwait_and_pool_checks(bouncer, tmp_path):
    with saturated(bouncer):
        result = run_suite(inventory(bouncer, client_connections_max_pct=5), tmp_path, "-k", "bouncer and not stopped")
    result.assert_failed("test_pgbouncer_clients_waiting_below_limit[bouncer]", "app/opscheck cl_waiting 1")
    result.assert_failed("test_pgbouncer_maxwait_below_warning[bouncer]", ">= warning 1 s", "app/opscheck maxwait")
    result.assert_passed("test_pgbouncer_maxwait_below_critical[bouncer]")  # 15 s: not yet
    result.assert_failed("test_pgbouncer_server_pool_below_warning[bouncer]", "2 of pool_size 2 = 100%")
    result.assert_failed("test_pgbouncer_server_pool_below_critical[bouncer]", "2 of pool_size 2")
    # 4 clients (2 holders, the waiter, opscheck's console session) of max_client_conn 50 = 8% >= 5%
    result.assert_failed("test_pgbouncer_client_connections_below_limit[bouncer]", "of max_client_conn 50")


def test_postgres_checks_through_pgbouncer_run_after_run(bouncer, tmp_path):
    """Transaction pooling hands each run's statements to server connections an earlier run
    used: the postgres family must not leave named prepared statements there (psycopg
    prepares a statement after 5 executions; the next run's "_pg3_0" then already exists)."""
    inventory = {
        "environment": "selftest-through-pgbouncer",
        "postgres": [{"name": "db", "dsn": bouncer.dsn("opscheck")}],
    }
    for run in range(3):
        result = run_suite(inventory, tmp_path / f"run{run}", "-m", "daily")
        failed = {c: m["message"] for c, m in result.checks.items() if m["outcome"] != "passed"}
        assert result.rc == 0 and not failed, f"run {run + 1}: {failed}\n{result.output[-2000:]}"
