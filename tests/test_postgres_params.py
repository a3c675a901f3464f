"""Incident-time parameters in SQL assertions, against a real PostgreSQL as the monitor role.

`{key_prefix}` in a query is bound as a query parameter (AgentAuri's "status of the API key
with prefix X"): a value with quotes stays a value, a `%` in the SQL stays a `%`, and the
assertion is adhoc: deselected unless its --param is given.
"""

import pytest

from tests.conftest import run_suite
from tests.servers import PostgresServer

PASSWORD = "opscheck-Pw-5120"
STATUS_SQL = (
    "SELECT coalesce((SELECT CASE WHEN NOT is_active THEN 'inactive' WHEN revoked_at IS NOT NULL THEN 'revoked' "
    "WHEN expires_at <= now() THEN 'expired' ELSE 'active' END FROM api_keys WHERE key_prefix = {%s}), 'missing')"
)


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        pg.psql(
            "CREATE TABLE api_keys (key_prefix text, is_active bool, expires_at timestamptz, revoked_at timestamptz)"
        )
        pg.psql(
            "INSERT INTO api_keys VALUES ('sk_live_ABC', true, NULL, NULL), "
            "('sk_live_REV', true, NULL, now() - interval '1 day'), ('sk_test_OLD', true, now() - interval '1 h', NULL)"
        )
        pg.create_monitor_role("opscheck", PASSWORD)
        pg.psql("GRANT SELECT ON api_keys TO opscheck")
        yield pg


def inventory(server) -> dict:
    def status(name, param):
        return {
            "name": name,
            "query": STATUS_SQL % param,
            "op": "==",
            "value": "active",
            "schedule": ["adhoc"],
            "severity": "p2",
        }

    return {
        "environment": "selftest-pg-params",
        "postgres": [
            {
                "name": "db",
                "dsn": server.dsn("opscheck", PASSWORD),
                "assertions": [
                    status("key-status", "key_prefix"),
                    status("revoked-key-status", "revoked_prefix"),
                    status("hostile-key-status", "hostile"),
                    {  # a `%` in the SQL next to a bound parameter
                        "name": "keys-like-prefix",
                        "query": "SELECT count(*) FROM api_keys WHERE key_prefix LIKE {mode} || '%'",
                        "op": "==",
                        "value": 2,
                        "schedule": ["adhoc"],
                    },
                    {"name": "always", "query": "SELECT count(*) FROM api_keys", "op": "==", "value": 3},
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def result(server, tmp_path_factory):
    params = ["key_prefix=sk_live_ABC", "revoked_prefix=sk_live_REV", "hostile=x' OR '1'='1", "mode=sk_live_"]
    args = [a for p in params for a in ("--param", p)]
    return run_suite(inventory(server), tmp_path_factory.mktemp("pgparams"), *args)


def test_bound_parameter_passes_on_an_active_key(result):
    result.assert_passed("test_postgres_sql_assertion[db:key-status]", "test_postgres_sql_assertion[db:always]")
    assert result.checks["test_postgres_sql_assertion[db:key-status]"]["schedule"] == "adhoc"


def test_revoked_key_fails_naming_the_parameter(result):
    result.assert_failed(
        "test_postgres_sql_assertion[db:revoked-key-status]",
        "revoked_prefix='sk_live_REV'",
        "got 'revoked', expected == 'active'",
    )


def test_a_quote_in_the_value_is_data_not_sql(result):
    """Spliced into the SQL, `x' OR '1'='1` would rewrite the query (here: a syntax error, with
    quotes around the placeholder: a match on every key); bound, it is one value, matching none."""
    result.assert_failed("test_postgres_sql_assertion[db:hostile-key-status]", "got 'missing'")


def test_percent_in_the_sql_survives_binding(result):
    result.assert_passed("test_postgres_sql_assertion[db:keys-like-prefix]")


def test_without_its_param_the_assertion_is_deselected(server, run_checks):
    run = run_checks(inventory(server), "--param", "key_prefix=sk_live_ABC", "-k", "sql_assertion")
    run.assert_passed("test_postgres_sql_assertion[db:key-status]", "test_postgres_sql_assertion[db:always]")
    assert "test_postgres_sql_assertion[db:revoked-key-status]" not in run.checks
    assert "deselected" in run.output


def test_a_placeholder_needs_the_adhoc_schedule(server, run_checks):
    broken = inventory(server)
    broken["postgres"][0]["assertions"][0]["schedule"] = ["daily"]
    run = run_checks(broken)
    assert run.rc == 4, run.output
    assert "needs schedule [adhoc]" in run.output
