"""PgBouncer family: clients waiting, wait times and server pool use, from the admin console."""

import pytest

from opscheck.core.checking import expect, fmt, pct

pytestmark = [pytest.mark.database]

WAIT_HINT = (
    "Clients wait for a server connection in PgBouncer (runbook: `SHOW POOLS`, cl_waiting, "
    "maxwait): the pool is too small for the load, or server connections are held by long "
    "transactions (pool_mode, idle in transaction). Look at SHOW POOLS / SHOW SERVERS and "
    "at long queries on PostgreSQL before raising pool_size."
)
POOL_HINT = (
    "PgBouncer uses most of a pool's server connections (sv_active + sv_idle + sv_used + "
    "sv_tested + sv_login vs pool_size): the next burst will queue clients. Check the "
    "database's max_connections before raising pool_size."
)


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "PgBouncer's console does not answer (runbook: `psql -p 6432 pgbouncer -c 'SHOW POOLS'`). "
    "Is PgBouncer running and is the stats user in stats_users and the auth file?"
)
def test_pgbouncer_console_answers(pgbouncer, bouncer):
    version = bouncer.show("VERSION")
    expect(bool(version), f"{bouncer.shown}: SHOW VERSION returned nothing")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(WAIT_HINT)
def test_pgbouncer_clients_waiting_below_limit(pgbouncer, bouncer):
    waiting = [p for p in bouncer.pools() if p["cl_waiting"] > pgbouncer.clients_waiting_max]
    expect(
        not waiting,
        f"{bouncer.shown}: clients waiting > limit {pgbouncer.clients_waiting_max}: "
        + ", ".join(f"{p['database']}/{p['user']} cl_waiting {p['cl_waiting']}" for p in waiting),
    )


def _maxwait(bouncer, limit_s: float, level: str):
    def seconds(pool):  # maxwait is whole seconds; maxwait_us the rest (PgBouncer >= 1.8)
        return pool["maxwait"] + pool.get("maxwait_us", 0) / 1e6

    slow = [p for p in bouncer.pools() if seconds(p) >= limit_s]
    expect(
        not slow,
        f"{bouncer.shown}: oldest waiting client >= {level} {limit_s:g} s: "
        + ", ".join(
            f"{p['database']}/{p['user']} maxwait {seconds(p):.1f} s ({p['cl_waiting']} waiting)" for p in slow
        ),
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(WAIT_HINT)
def test_pgbouncer_maxwait_below_warning(pgbouncer, bouncer):
    _maxwait(bouncer, pgbouncer.maxwait_warn_s, "warning")


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(WAIT_HINT)
def test_pgbouncer_maxwait_below_critical(pgbouncer, bouncer):
    _maxwait(bouncer, pgbouncer.maxwait_crit_s, "critical")


def _server_pool(bouncer, limit_pct: float, level: str):
    sizes = {d["name"]: d["pool_size"] for d in bouncer.show("DATABASES")}
    full = []
    for pool in bouncer.pools():
        used = sum(pool.get(c, 0) for c in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
        size = sizes.get(pool["database"], 0)
        if size and pct(used, size) >= limit_pct:
            full.append(f"{pool['database']}/{pool['user']} {used} of pool_size {size} = {pct(used, size):.0f}%")
    expect(not full, f"{bouncer.shown}: server connections >= {level} {limit_pct:g}% of the pool: " + ", ".join(full))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(POOL_HINT)
def test_pgbouncer_server_pool_below_warning(pgbouncer, bouncer):
    _server_pool(bouncer, pgbouncer.server_pool_warn_pct, "warning")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(POOL_HINT)
def test_pgbouncer_server_pool_below_critical(pgbouncer, bouncer):
    _server_pool(bouncer, pgbouncer.server_pool_crit_pct, "critical")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "PgBouncer is close to max_client_conn: new application connections will be "
    "refused. Look for a client that leaks connections or scaled out."
)
def test_pgbouncer_client_connections_below_limit(pgbouncer, bouncer):
    lists = {row["list"]: row["items"] for row in bouncer.show("LISTS")}
    config = {row["key"]: row["value"] for row in bouncer.show("CONFIG")}
    used, limit = int(lists.get("used_clients", 0)), int(config.get("max_client_conn", 0))
    expect(limit > 0, f"{bouncer.shown}: SHOW CONFIG has no max_client_conn")
    expect(
        pct(used, limit) < pgbouncer.client_connections_max_pct,
        f"{bouncer.shown}: {fmt(used)} client connections = {pct(used, limit):.0f}% of max_client_conn "
        f"{fmt(limit)} >= limit {pgbouncer.client_connections_max_pct:g}%",
    )
