"""PostgreSQL family against a real server, connecting as the least-privilege role.

Broken cases made real: the server stopped (a closed port), a wrong password, the
connections saturated by held sessions, SQL assertions that do not hold, and queries
that try to write or smuggle a second statement.
"""

import pytest

from tests.conftest import run_suite
from tests.servers import PostgresServer, closed_port

PASSWORD = "opscheck-Pw-7731"


@pytest.fixture(scope="module")
def server():
    with PostgresServer(extra_conf={"max_connections": 20, "superuser_reserved_connections": 3}) as pg:
        pg.psql("CREATE TABLE circuit_breaker_state (name text, state text)")
        pg.psql("INSERT INTO circuit_breaker_state VALUES ('rpc', 'closed'), ('llm', 'open')")
        pg.create_monitor_role("opscheck", PASSWORD)
        pg.psql("GRANT SELECT ON circuit_breaker_state TO opscheck")
        yield pg


def target(name, dsn, **extra):
    return {"name": name, "dsn": dsn, **extra}


@pytest.fixture(scope="module")
def result(server, tmp_path_factory):
    dsn = server.dsn("opscheck", PASSWORD)
    assertions = [
        {
            "name": "no-open-breakers",
            "query": "SELECT count(*) FROM circuit_breaker_state WHERE state = 'open'",
            "op": "==",
            "value": 0,
            "severity": "p1",
            "schedule": ["daily"],
            "hint": "A circuit breaker is open: its dependency is failing.",
        },
        {
            "name": "rpc-closed",
            "query": "SELECT state FROM circuit_breaker_state WHERE name = 'rpc'",
            "op": "==",
            "value": "closed",
        },
    ]
    inventory = {
        "environment": "selftest-postgres",
        "postgres": [
            target("main", dsn, assertions=assertions),
            target("stopped", f"postgresql://opscheck:{PASSWORD}@127.0.0.1:{closed_port()}/postgres"),
            target("wrong-password", server.dsn("opscheck", "not-the-password")),
            # 20 max - 3 reserved = 17 usable; the fixture below holds 14 (+ opscheck) = 88%
            target("saturated", dsn, connections_warn_pct=80, connections_crit_pct=90),
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="module")
def saturated_result(server, tmp_path_factory):
    dsn = server.dsn("opscheck", PASSWORD)
    inventory = {
        "environment": "selftest-pg-saturated",
        "postgres": [target("main", dsn, connections_warn_pct=80, connections_crit_pct=90)],
    }
    with server.hold_connections(14, "opscheck", PASSWORD):
        return run_suite(inventory, tmp_path_factory.mktemp("pgsat"), "-k", "connections")


def test_healthy_server_passes(result):
    result.assert_passed(
        "test_postgres_select_1[main]",
        "test_postgres_connections_below_warning[main]",
        "test_postgres_connections_below_critical[main]",
    )


def test_stopped_server_fails_then_blocks(result):
    message = result.assert_failed("test_postgres_select_1[stopped]", "cannot connect")
    assert "blocked:" not in message
    for check in (
        "test_postgres_connections_below_warning[stopped]",
        "test_postgres_connections_below_critical[stopped]",
    ):
        result.assert_failed(check, 'blocked: postgres "stopped"')


def test_wrong_password_fails_without_leaking_it(result):
    result.assert_failed("test_postgres_select_1[wrong-password]", "password authentication failed")
    assert "not-the-password" not in result.output
    assert PASSWORD not in result.output


def test_dsn_is_shown_masked(result):
    message = result.message("test_postgres_select_1[stopped]")
    assert "opscheck:***@127.0.0.1" in message


def test_connections_saturated_fail_warning_not_critical(saturated_result):
    r = saturated_result
    r.assert_failed(
        "test_postgres_connections_below_warning[main]",
        "client connections",
        ">= warning 80%",
        "by database: postgres 1",
    )
    r.assert_passed("test_postgres_connections_below_critical[main]")


def test_sql_assertion_holds_and_fails(result):
    result.assert_passed("test_postgres_sql_assertion[main:rpc-closed]")
    message = result.assert_failed(
        "test_postgres_sql_assertion[main:no-open-breakers]",
        "got 1, expected == 0",
        "runbook: A circuit breaker is open",
    )
    assert result.checks["test_postgres_sql_assertion[main:no-open-breakers]"]["severity"] == "p1"
    assert message


def test_writing_query_is_refused(server):
    """The loader's parser refuses these (tests/test_hostile_inputs.py); behind it the client
    still runs every query in BEGIN READ ONLY, one statement at a time, and the server refuses."""
    from opscheck.core.errors import OpscheckError
    from opscheck.families.postgres import Postgres, PostgresClient

    client = PostgresClient(Postgres(name="main", dsn=server.dsn("opscheck", PASSWORD)), 5)
    try:
        with pytest.raises(OpscheckError, match="read-only"):
            client.query("DELETE FROM circuit_breaker_state")
        with pytest.raises(OpscheckError, match="cannot insert multiple commands"):
            client.query("SELECT 1; DELETE FROM circuit_breaker_state")
        assert client.scalar("SELECT 1") == 1  # the connection is still usable after a refusal
    finally:
        client.close()
    assert server.psql("SELECT count(*) FROM circuit_breaker_state").strip() == "2"


def test_unicode_escaped_terminate_is_refused_before_it_runs(server):
    """The issue's walk-around: U&"pg_terminate_\\0062ackend" resolves to pg_terminate_backend."""
    from opscheck.families.postgres import sql_problem

    query = 'SELECT count(U&"pg_terminate_\\0062ackend"(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid()'
    assert "pg_terminate_backend" in (sql_problem(query) or "")
    # what the server makes of the name: the very function (the parser agrees with it)
    assert server.psql("SELECT to_regproc(U&'pg_terminate_\\0062ackend')::text").strip() == "pg_terminate_backend"


def test_queries_are_read_only_with_statement_timeout(server):
    """Each query runs in BEGIN READ ONLY with a local statement_timeout, as application opscheck."""
    from opscheck.families.postgres import Postgres, PostgresClient

    client = PostgresClient(
        Postgres(name="t", dsn=server.dsn("opscheck", PASSWORD), statement_timeout_ms=1234), timeout=5
    )
    row = client.query(
        "SELECT current_setting('transaction_read_only') AS ro, "
        "current_setting('statement_timeout') AS st, "
        "current_setting('application_name') AS app"
    )[0]
    assert row == {"ro": "on", "st": "1234ms", "app": "opscheck"}
    client.close()
