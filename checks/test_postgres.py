"""PostgreSQL family: reachability, connection headroom, and the inventory's own SQL checks.

Queries run read-only (fixtures/postgres.py) as a least-privilege role with pg_monitor.
"""

import pytest

from fixtures.checking import expect, fmt, holds, pct

pytestmark = [pytest.mark.database]

CONNECTIONS_SQL = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved
"""
CONNECTIONS_HINT = (
    "Client connections are close to max_connections minus the reserved slots; new clients "
    "will get 'too many connections' (runbook: 'too many connections', DB_MAX_CONNECTIONS). "
    "Look at `SELECT datname, usename, application_name, state, count(*) FROM pg_stat_activity "
    "GROUP BY 1,2,3,4 ORDER BY 5 DESC` for a pool that leaks or an app that scaled out; put "
    "PgBouncer in front or raise the pool limits."
)


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "The database does not answer `SELECT 1` (runbook: `pg_isready`, `SELECT 1`). Is the server "
    "up (`docker compose ps postgres`, `systemctl status postgresql`), reachable from here, "
    "and are the credentials valid? Look at the server log for FATAL lines."
)
def test_postgres_select_1(postgres, pg):
    expect(pg.scalar("SELECT 1") == 1, f"{pg.shown}: SELECT 1 did not return 1")


def _connections_below(pg, limit_pct: float, level: str):
    row = pg.query(CONNECTIONS_SQL)[0]
    available = row["max_connections"] - row["reserved"]
    used_pct = pct(row["used"], available)
    expect(
        used_pct < limit_pct,
        f"{pg.shown}: {fmt(row['used'])} client connections = {used_pct:.0f}% of "
        f"{fmt(available)} available (max_connections {row['max_connections']} - reserved "
        f"{row['reserved']}) >= {level} {limit_pct:g}%",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(CONNECTIONS_HINT)
def test_postgres_connections_below_warning(postgres, pg):
    _connections_below(pg, postgres.connections_warn_pct, "warning")


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(CONNECTIONS_HINT)
def test_postgres_connections_below_critical(postgres, pg):
    _connections_below(pg, postgres.connections_crit_pct, "critical")


@pytest.mark.runbook("An inventory-defined SQL assertion does not hold; see its query.")
def test_postgres_sql_assertion(sql_assertion, pg):
    check = sql_assertion.value
    actual = pg.scalar(check.query)
    expect(
        holds(actual, check.op, check.value),
        f'{pg.shown}: assertion "{check.name}": got {actual!r}, expected {check.op} '
        f"{check.value!r} (query: {' '.join(check.query.split())[:300]})",
    )
