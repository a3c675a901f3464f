"""PostgreSQL family: reachability, connection headroom, and the inventory's own SQL checks.

Queries run read-only (fixtures/postgres.py) as a least-privilege role with pg_monitor.
"""

import pytest

from opscheck.core.checking import expect, fmt, growth_since_last_run, holds, pct
from opscheck.core.redact import clip_line
from opscheck.families.postgres import expected_heads, recorded_revisions

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
    if used_pct < limit_pct:
        return
    per_db = pg.query(
        "SELECT coalesce(datname, '-') AS db, count(*) AS n FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
    )
    expect(
        False,
        f"{pg.shown}: {fmt(row['used'])} client connections = {used_pct:.0f}% of "
        f"{fmt(available)} available (max_connections {row['max_connections']} - reserved "
        f"{row['reserved']}) >= {level} {limit_pct:g}%; by database: "
        + ", ".join(f"{r['db']} {r['n']}" for r in per_db),
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
def test_postgres_sql_assertion(sql_assertion, pg, incident_params):
    check = sql_assertion.value
    query, params = check.bound(incident_params)  # {name} -> a bound parameter, never spliced in
    actual = pg.scalar(query, params)
    given = "".join(f", {name}={value!r}" for name, value in (params or {}).items())
    expect(
        holds(actual, check.op, check.value),
        f'{pg.shown}: assertion "{check.name}"{given}: got {actual!r}, expected {check.op} '
        f"{check.value!r} (query: {clip_line(check.query, 300)})",
    )


# --- activity: long queries, old transactions, idle in transaction, lock waits, deadlocks --

# Client backends only: a walsender is "active" for as long as replication runs.
ACTIVITY_SQL = """
SELECT pid, usename, datname, application_name, state,
       extract(epoch FROM now() - {since})::float AS seconds, left(query, 120) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND {where}
  AND now() - {since} > make_interval(secs => %s)
ORDER BY {since}
"""


def _sessions(pg, where: str, since: str, limit_s: float) -> tuple[int, str]:
    """(how many sessions match, a description of the oldest ones)."""
    pg.require_stats_visibility()
    count, rows = pg.rows(ACTIVITY_SQL.format(where=where, since=since), [limit_s], limit=3)
    shown = "; ".join(
        f"pid {r['pid']} {r['usename']}@{r['datname']} ({r['application_name'] or 'no app name'}) "
        f"{r['state']} {fmt(r['seconds'])} s: {clip_line(r['query'] or '', 80)}"
        for r in rows
    )
    return count, shown


LONG_QUERY_HINT = (
    "A client query has run too long (runbooks: 'queries running > 1 minute' / '> 5 minutes', "
    "`SELECT pid, now() - query_start, query FROM pg_stat_activity WHERE state = 'active'`). "
    "Look at its plan (EXPLAIN), missing indexes and locks it waits for. Cancelling it "
    "(pg_cancel_backend) is an operator's decision, not a check's."
)


def _long_queries(pg, limit_s: float, level: str):
    count, shown = _sessions(pg, "state = 'active'", "query_start", limit_s)
    expect(count == 0, f"{pg.shown}: {count} client quer(ies) active longer than {level} {limit_s:g} s: {shown}")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(LONG_QUERY_HINT)
def test_postgres_long_queries_below_warning(postgres, pg):
    _long_queries(pg, postgres.long_query_warn_s, "warning")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(LONG_QUERY_HINT)
def test_postgres_long_queries_below_critical(postgres, pg):
    _long_queries(pg, postgres.long_query_crit_s, "critical")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A transaction has been open too long: it holds locks and keeps VACUUM from removing dead "
    "rows (bloat, and in the end wraparound). Find the application that opened it "
    "(application_name, client_addr) and why it does not commit."
)
def test_postgres_no_old_transactions(postgres, pg):
    count, shown = _sessions(pg, "xact_start IS NOT NULL", "xact_start", postgres.transaction_max_s)
    expect(count == 0, f"{pg.shown}: {count} transaction(s) open longer than {postgres.transaction_max_s:g} s: {shown}")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A session sits 'idle in transaction': an application began a transaction and went away "
    "without COMMIT or ROLLBACK (a leaked pool connection, an exception path). It holds locks "
    "and blocks VACUUM. Set idle_in_transaction_session_timeout, fix the code path."
)
def test_postgres_no_idle_in_transaction(postgres, pg):
    count, shown = _sessions(
        pg, "state LIKE 'idle in transaction%%'", "state_change", postgres.idle_in_transaction_max_s
    )
    expect(
        count == 0,
        f"{pg.shown}: {count} session(s) idle in transaction longer than "
        f"{postgres.idle_in_transaction_max_s:g} s: {shown}",
    )


LOCK_HINT = (
    "Sessions wait on locks held by others (runbook: lock waits, `pg_blocking_pids`). Find "
    "the blocker: `SELECT pid, pg_blocking_pids(pid), query FROM pg_stat_activity WHERE "
    "wait_event_type = 'Lock'`; it is often an idle-in-transaction session or a migration."
)


def _lock_waits(pg, limit_s: float, level: str):
    count, shown = _sessions(pg, "wait_event_type = 'Lock'", "query_start", limit_s)
    expect(count == 0, f"{pg.shown}: {count} session(s) waiting on a lock longer than {level} {limit_s:g} s: {shown}")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(LOCK_HINT)
def test_postgres_lock_waits_below_warning(postgres, pg):
    _lock_waits(pg, postgres.lock_wait_warn_s, "warning")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(LOCK_HINT)
def test_postgres_lock_waits_below_critical(postgres, pg):
    _lock_waits(pg, postgres.lock_wait_crit_s, "critical")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "PostgreSQL detected deadlocks since the last run: two transactions took locks in opposite "
    "orders. The server log has 'deadlock detected' with both statements; make the "
    "application take locks in one order."
)
def test_postgres_no_new_deadlocks(postgres, pg, state, remember):
    total = int(pg.scalar("SELECT coalesce(sum(deadlocks), 0) FROM pg_stat_database"))
    new, previous = growth_since_last_run(state, remember, f"postgres:{postgres.name}:deadlocks", total)
    expect(
        new <= postgres.deadlocks_max,
        f"{pg.shown}: {new} new deadlock(s) since the last run ({previous} -> {total}) "
        f"> limit {postgres.deadlocks_max}",
    )


# --- replication -------------------------------------------------------------------------

REPLICA_LAG_SQL = """
SELECT pg_is_wal_replay_paused() AS paused,
       coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float AS bytes,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float AS seconds
"""
PRIMARY_LAG_SQL = """
SELECT application_name, client_addr::text AS client, state,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::float AS bytes,
       coalesce(extract(epoch FROM replay_lag), 0)::float AS seconds
FROM pg_stat_replication ORDER BY bytes DESC
"""


def _is_replica(pg) -> bool:
    return bool(pg.scalar("SELECT pg_is_in_recovery()"))


def _lag(pg) -> tuple[float, float, str]:
    """(worst lag in seconds, in bytes, description) from whichever side this target is."""
    if _is_replica(pg):
        row = pg.query(REPLICA_LAG_SQL)[0]
        paused = " (replay is PAUSED)" if row["paused"] else ""
        return row["seconds"], row["bytes"], f"replica lag{paused}"
    pg.require_stats_visibility()
    rows = pg.query(PRIMARY_LAG_SQL)
    if not rows:
        return 0.0, 0.0, "no replica connected"
    worst = max(rows, key=lambda r: (r["seconds"], r["bytes"]))
    return worst["seconds"], worst["bytes"], f"replica {worst['application_name']} ({worst['client']})"


REPLICATION_HINT = (
    "A replica is behind its primary: reads from it are stale and a failover would lose data. "
    "Look at `pg_stat_replication` on the primary (write/flush/replay lag), the replica's log, "
    "network throughput, long queries on the replica (hot_standby_feedback conflicts), and "
    "whether replay was paused (`SELECT pg_is_wal_replay_paused()`)."
)


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "The server is not in the role the inventory expects: a failover or a "
    "promotion happened. Check the HA manager and where the application writes."
)
def test_postgres_role_as_expected(pg_replication, pg):
    actual = "replica" if _is_replica(pg) else "primary"
    expect(actual == pg_replication.role, f"{pg.shown}: is a {actual}, expected {pg_replication.role}")


def _lag_below(pg, target, limit_s: float, level: str):
    seconds, size, what = _lag(pg)
    expect(
        seconds < limit_s and size < target.replication_lag_max_bytes,
        f"{pg.shown}: {what}: {fmt(seconds)} s and {fmt(size)} bytes behind >= {level} {limit_s:g} s "
        f"or {fmt(target.replication_lag_max_bytes)} bytes",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(REPLICATION_HINT)
def test_postgres_replication_lag_below_warning(pg_replication, pg):
    _lag_below(pg, pg_replication, pg_replication.replication_lag_warn_s, "warning")


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(REPLICATION_HINT)
def test_postgres_replication_lag_below_critical(pg_replication, pg):
    _lag_below(pg, pg_replication, pg_replication.replication_lag_crit_s, "critical")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(REPLICATION_HINT)
def test_postgres_replay_not_paused(pg_replication, pg):
    paused = _is_replica(pg) and bool(pg.scalar("SELECT pg_is_wal_replay_paused()"))
    expect(
        not paused,
        f"{pg.shown}: WAL replay is paused (pg_wal_replay_pause was called): "
        "the replica receives WAL but does not apply it",
    )


SLOTS_SQL = """
SELECT slot_name, slot_type, active,
       coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                                     ELSE pg_current_wal_lsn() END, restart_lsn), 0)::float AS retained
FROM pg_replication_slots ORDER BY retained DESC
"""
SLOTS_HINT = (
    "A replication slot is inactive or retains too much WAL: the primary keeps every WAL "
    "segment the slot's consumer has not confirmed, until the disk fills. Is the replica or "
    "CDC consumer down? Dropping a slot is an operator's decision."
)


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(SLOTS_HINT)
def test_postgres_replication_slots_active(pg_replication, pg):
    inactive = [r for r in pg.query(SLOTS_SQL) if not r["active"]]
    expect(
        not inactive,
        f"{pg.shown}: {len(inactive)} inactive replication slot(s): "
        + ", ".join(
            f"{r['slot_name']} ({r['slot_type']}, retains {fmt(r['retained'] / 1048576)} MiB)" for r in inactive
        ),
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(SLOTS_HINT)
def test_postgres_slot_wal_retention_below_limit(pg_replication, pg):
    limit = pg_replication.slot_retained_wal_max_bytes
    over = [r for r in pg.query(SLOTS_SQL) if r["retained"] >= limit]
    expect(
        not over,
        f"{pg.shown}: slot(s) retaining >= {fmt(limit / 1048576)} MiB of WAL: "
        + ", ".join(f"{r['slot_name']} {fmt(r['retained'] / 1048576)} MiB" for r in over),
    )


# --- wraparound and sequences ---------------------------------------------------------------

WRAPAROUND_HINT = (
    "Transaction IDs are running out: at 2^31 (2,147 million) PostgreSQL stops accepting "
    "writes to prevent wraparound. Autovacuum must freeze the oldest tables; look for a "
    "long-running transaction or an abandoned replication slot that holds back the xmin "
    "horizon, and autovacuum workers that cannot finish."
)


def _wraparound(pg, limit: int, level: str):
    row = pg.query("SELECT datname, age(datfrozenxid)::bigint AS age FROM pg_database ORDER BY 2 DESC LIMIT 1")[0]
    expect(
        row["age"] < limit,
        f"{pg.shown}: database {row['datname']} datfrozenxid age {fmt(row['age'])} "
        f">= {level} {fmt(limit)} (wraparound at 2,147,483,648)",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(WRAPAROUND_HINT)
def test_postgres_wraparound_below_warning(postgres, pg):
    _wraparound(pg, postgres.wraparound_warn_age, "warning")


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(WRAPAROUND_HINT)
def test_postgres_wraparound_below_critical(postgres, pg):
    _wraparound(pg, postgres.wraparound_crit_age, "critical")


SEQUENCES_SQL = """
SELECT format('%I.%I', schemaname, sequencename) AS name, last_value, min_value, max_value,
       increment_by, has_sequence_privilege(format('%I.%I', schemaname, sequencename), 'SELECT') AS readable
FROM pg_sequences
"""
SEQUENCE_HINT = (
    "A sequence is close to its maximum: inserts will fail with 'nextval: reached maximum "
    "value'. Migrate the column and sequence to bigint before it runs out."
)


def _sequences(pg, limit_pct: float, level: str):
    rows = pg.query(SEQUENCES_SQL)
    unreadable = [r["name"] for r in rows if not r["readable"]]
    expect(
        not unreadable,
        f"{pg.shown}: cannot read {len(unreadable)} sequence(s) ({', '.join(unreadable[:5])}): "
        "grant SELECT ON ALL SEQUENCES IN SCHEMA ... TO this role",
    )
    used = []
    for r in rows:
        if r["last_value"] is None:
            continue  # never used
        span = r["max_value"] - r["min_value"]
        done = r["last_value"] - r["min_value"] if r["increment_by"] > 0 else r["max_value"] - r["last_value"]
        used.append((pct(done, span), r))
    over = sorted((u for u in used if u[0] >= limit_pct), key=lambda u: -u[0])
    expect(
        not over,
        f"{pg.shown}: sequence(s) at >= {level} {limit_pct:g}% of their range: "
        + ", ".join(f"{r['name']} {p:.1f}% ({fmt(r['last_value'])} of {fmt(r['max_value'])})" for p, r in over[:5]),
    )


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.runbook(SEQUENCE_HINT)
def test_postgres_sequences_below_warning(postgres, pg):
    _sequences(pg, postgres.sequence_warn_pct, "warning")


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(SEQUENCE_HINT)
def test_postgres_sequences_below_critical(postgres, pg):
    _sequences(pg, postgres.sequence_crit_pct, "critical")


# --- maintenance: vacuum/analyze, invalid indexes, triggers --------------------------------

# Over the autovacuum threshold (threshold + scale_factor * reltuples) AND not (auto)vacuumed
# for N days. A small static table stays under the threshold and is never vacuumed, by design.
MAINTENANCE_SQL = """
SELECT format('%%I.%%I', s.schemaname, s.relname) AS name, s.{count} AS pending,
       current_setting('autovacuum_{kind}_threshold')::float
         + current_setting('autovacuum_{kind}_scale_factor')::float * greatest(c.reltuples, 0) AS threshold,
       greatest(s.last_{kind}, s.last_auto{kind}) AS last
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.{count} > current_setting('autovacuum_{kind}_threshold')::float
        + current_setting('autovacuum_{kind}_scale_factor')::float * greatest(c.reltuples, 0)
  AND coalesce(greatest(s.last_{kind}, s.last_auto{kind}), '-infinity') < now() - make_interval(days => %s)
ORDER BY s.{count} DESC
"""


def _maintenance(pg, kind: str, count: str, days: float):
    n, rows = pg.rows(MAINTENANCE_SQL.format(kind=kind, count=count), [int(days)])
    done = {"vacuum": "vacuumed", "analyze": "analyzed"}[kind]
    expect(
        n == 0,
        f"{pg.shown}: {n} table(s) over the autovacuum {kind} threshold and not {done} for "
        f"{days:g} days: "
        + ", ".join(
            f"{r['name']} ({fmt(r['pending'])} {count} > {fmt(r['threshold'])}, last {kind} {r['last'] or 'never'})"
            for r in rows
        ),
    )


VACUUM_HINT = (
    "Autovacuum has not processed a table that needs it: dead rows pile up (bloat, slower "
    "scans) or the planner works from stale statistics. Is autovacuum on, disabled for the "
    "table (reloptions), or blocked by a long transaction? Look at pg_stat_progress_vacuum."
)


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.runbook(VACUUM_HINT)
def test_postgres_tables_vacuumed(postgres, pg):
    _maintenance(pg, "vacuum", "n_dead_tup", postgres.vacuum_max_age_days)


@pytest.mark.p3
@pytest.mark.weekly
@pytest.mark.runbook(VACUUM_HINT)
def test_postgres_tables_analyzed(postgres, pg):
    _maintenance(pg, "analyze", "n_mod_since_analyze", postgres.vacuum_max_age_days)


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.runbook(
    "An index is INVALID (a CREATE INDEX CONCURRENTLY that failed): it costs "
    "writes but is never used. Rebuild it (REINDEX CONCURRENTLY) or drop it."
)
def test_postgres_no_invalid_indexes(postgres, pg):
    n, rows = pg.rows("SELECT indexrelid::regclass::text AS name FROM pg_index WHERE NOT indisvalid")
    expect(n == 0, f"{pg.shown}: {n} invalid index(es): {', '.join(r['name'] for r in rows)}")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A trigger is disabled (ALTER TABLE ... DISABLE TRIGGER): whatever it "
    "did (notifications, audit rows) silently stopped. Was it a maintenance "
    "step that was never undone?"
)
def test_postgres_no_disabled_triggers(postgres, pg):
    n, rows = pg.rows(
        "SELECT tgname, tgrelid::regclass::text AS tbl FROM pg_trigger "
        "WHERE NOT tgisinternal AND tgenabled = 'D' ORDER BY 2, 1"
    )
    expect(n == 0, f"{pg.shown}: {n} disabled trigger(s): " + ", ".join(f"{r['tgname']} on {r['tbl']}" for r in rows))


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "A trigger the application depends on is missing or disabled (runbook: "
    "`SELECT tgname, tgenabled FROM pg_trigger WHERE tgname = 'notify_new_event_trigger'`). "
    "Without it the event pipeline stops silently: no NOTIFY, nothing processed. Re-run the "
    "migration that creates it; check that nobody disabled it."
)
def test_postgres_required_trigger_enabled(pg_trigger, pg):
    trigger = pg_trigger.value
    rows = pg.query(
        "SELECT tgenabled FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = %s",
        [trigger.table, trigger.name],
    )
    expect(bool(rows), f"{pg.shown}: trigger {trigger.name} does not exist on table {trigger.table}")
    mode = rows[0]["tgenabled"]
    expect(
        mode in ("O", "A"),
        f"{pg.shown}: trigger {trigger.name} on {trigger.table} is "
        + {"D": "DISABLED", "R": "enabled in replica mode only (does not fire on a primary)"}.get(mode, mode),
    )


# --- schema revision, slow statements, sizes, cache, TLS --------------------------------------


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "The schema is not at the expected migration head: the deploy's migrations did not run or "
    "a wrong image was deployed (runbook: `alembic current` / `alembic heads`). Run the "
    "migrations through the deploy pipeline; never `alembic stamp`."
)
def test_postgres_migrations_at_head(pg_migrations, pg):
    expected = expected_heads(pg_migrations.migrations)
    recorded = recorded_revisions(pg, pg_migrations.migrations)
    expect(
        recorded == expected,
        f"{pg.shown}: schema at revision {sorted(recorded) or 'none recorded'}, "
        f"expected head {sorted(expected)} ({pg_migrations.migrations.tool})",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "Statements are slow on average (pg_stat_statements: mean_exec_time, the PostgreSQL 13+ name "
    "of mean_time). EXPLAIN (ANALYZE, BUFFERS) the worst one; look for sequential scans on big "
    "tables, missing indexes, lock waits."
)
def test_postgres_no_slow_statements(pg_statements, pg):
    column = "mean_exec_time" if int(pg.scalar("SHOW server_version_num")) >= 130000 else "mean_time"
    n, rows = pg.rows(
        f"SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query, calls, {column}::float AS mean_ms "
        f"FROM pg_stat_statements WHERE calls >= %s AND {column} > %s ORDER BY {column} DESC",
        [pg_statements.slow_statement_min_calls, pg_statements.slow_statement_max_ms],
        limit=3,
    )
    expect(
        n == 0,
        f"{pg.shown}: {n} statement(s) with mean time > {pg_statements.slow_statement_max_ms:g} ms "
        f"over >= {pg_statements.slow_statement_min_calls} calls: "
        + "; ".join(f"{fmt(r['mean_ms'])} ms x {r['calls']}: {r['query']}" for r in rows),
    )


SIZE_HINT = (
    "The database or a table grew past its limit (runbook: table sizes, storage). Look "
    "at the largest relations, bloat, retention of event/log tables, and free storage."
)


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.runbook(SIZE_HINT)
def test_postgres_database_size_below_limit(pg_database_size, pg):
    size = float(pg.scalar("SELECT pg_database_size(current_database())")) / 1024**3
    expect(
        size < pg_database_size.database_max_gb,
        f"{pg.shown}: database size {size:.2f} GB >= limit {pg_database_size.database_max_gb:g} GB",
    )


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.runbook(SIZE_HINT)
def test_postgres_table_sizes_below_limit(pg_table_size, pg):
    limit = pg_table_size.table_max_gb
    n, rows = pg.rows(
        "SELECT format('%%I.%%I', n.nspname, c.relname) AS name, "
        "pg_total_relation_size(c.oid)::float / 1024^3 AS gb FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND pg_total_relation_size(c.oid) >= %s * 1024^3 ORDER BY 2 DESC",
        [limit],
    )
    expect(
        n == 0, f"{pg.shown}: {n} table(s) >= {limit:g} GB: " + ", ".join(f"{r['name']} {r['gb']:.2f} GB" for r in rows)
    )


@pytest.mark.p3
@pytest.mark.weekly
@pytest.mark.runbook(
    "The buffer cache hit ratio is low: reads go to disk. shared_buffers may be "
    "too small for the working set, or a query scans large tables repeatedly."
)
def test_postgres_cache_hit_ratio(postgres, pg):
    row = pg.query(
        "SELECT blks_hit::float AS hit, blks_read::float AS read FROM pg_stat_database "
        "WHERE datname = current_database()"
    )[0]
    total = row["hit"] + row["read"]
    if total < postgres.cache_hit_min_blocks:
        return  # too few block accesses since the statistics reset for a ratio to mean anything
    ratio = pct(row["hit"], total)
    expect(
        ratio >= postgres.cache_hit_min_pct,
        f"{pg.shown}: cache hit ratio {ratio:.2f}% ({fmt(row['hit'])} hits, {fmt(row['read'])} reads) "
        f"< limit {postgres.cache_hit_min_pct:g}%",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.tls
@pytest.mark.runbook(
    "The inventory requires TLS to PostgreSQL, but a connection is not encrypted or not verified "
    "(runbook: `SHOW ssl`, pg_stat_ssl). Use sslmode=verify-full with the CA file in the DSN, "
    "and hostssl lines in pg_hba.conf so that the server refuses plain connections."
)
def test_postgres_connections_use_tls(pg_tls, pg):
    conn = pg.connection()
    sslmode = conn.info.get_parameters().get("sslmode", "")
    own = pg.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0]
    expect(
        own["ssl"] and sslmode == "verify-full",
        f"{pg.shown}: opscheck's own connection: ssl={own['ssl']} sslmode={sslmode or 'unset'} "
        "(expected TLS with sslmode=verify-full)",
    )
    pg.require_stats_visibility()
    n, rows = pg.rows(
        "SELECT a.pid, a.usename, a.application_name FROM pg_stat_ssl s JOIN pg_stat_activity a "
        "USING (pid) WHERE a.backend_type = 'client backend' AND a.datname = current_database() "
        "AND NOT s.ssl"
    )
    expect(
        n == 0,
        f"{pg.shown}: {n} client connection(s) without TLS: "
        + ", ".join(f"pid {r['pid']} {r['usename']} ({r['application_name'] or 'no app name'})" for r in rows),
    )


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.security
@pytest.mark.runbook(
    "opscheck connects with more rights than it needs. Create the least-privilege role of the "
    "README (pg_monitor and SELECT only) and put it in the DSN: a check role that can write "
    "turns a pasted runbook line into an outage."
)
def test_postgres_role_least_privilege(postgres, pg):
    row = pg.query(
        "SELECT current_user AS role, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, "
        "(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        " AND (pg_has_role(c.relowner, 'USAGE') "
        "      OR has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))) AS writable "
        "FROM pg_roles r WHERE r.rolname = current_user"
    )[0]
    rights = [name for name in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication") if row[name]]
    if row["writable"]:
        rights.append(f"can write {row['writable']} table(s) in {pg.scalar('SELECT current_database()')}")
    expect(not rights, f"{pg.shown}: role {row['role']} has {', '.join(rights)}: a check role needs none")
