"""PostgreSQL in depth, against real servers: activity, maintenance, schema, statements, sizes.

Every check runs as the least-privilege role (pg_monitor + SELECT) on a healthy database
and on a database broken for real. Where the only realistic broken case is a tiny
threshold (wraparound age, database size), the test says so; the measurement is real.
"""

import contextlib
import threading
import time

import psycopg
import pytest

from tests.conftest import run_suite
from tests.servers import PostgresServer

PASSWORD = "opscheck-Depth-9931"
MONITOR_GRANTS = (
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO opscheck; "
    "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO opscheck"
)

HEALTHY_SCHEMA = """
CREATE EXTENSION pg_stat_statements;
CREATE TABLE events (id serial PRIMARY KEY, payload text);
CREATE FUNCTION notify_new_event() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_notify('new_event', NEW.id::text); RETURN NEW; END $$;
CREATE TRIGGER notify_new_event_trigger AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION notify_new_event();
INSERT INTO events (payload) SELECT 'e' || g FROM generate_series(1, 10) g;
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('c3');
"""

BROKEN_SCHEMA = """
CREATE TABLE events (id serial PRIMARY KEY, payload text);
CREATE FUNCTION notify_new_event() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_notify('new_event', NEW.id::text); RETURN NEW; END $$;
CREATE TRIGGER notify_new_event_trigger AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION notify_new_event();
ALTER TABLE events DISABLE TRIGGER notify_new_event_trigger;
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('b2');
CREATE SEQUENCE almost_full MAXVALUE 100;
SELECT setval('almost_full', 90);
CREATE TABLE dupes (n int);
INSERT INTO dupes VALUES (1), (1);
CREATE TABLE churn (n int) WITH (autovacuum_enabled = false);
INSERT INTO churn SELECT generate_series(1, 2000);
DELETE FROM churn;
CREATE TABLE big (n int, pad text);
INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 60000) g;
"""


def alembic_folder(path, head: str):
    """An application's Alembic versions folder: a1 <- b2 <- c3 (head c3)."""
    path.mkdir()
    parent = "None"
    for rev in ("a1", "b2", head):
        (path / f"{rev}_step.py").write_text(f'revision = "{rev}"\ndown_revision = {parent}\n')
        parent = f'"{rev}"'
    return str(path)


@pytest.fixture(scope="module")
def server():
    conf = {"shared_preload_libraries": "'pg_stat_statements'", "shared_buffers": "'16MB'", "max_connections": 30}
    with PostgresServer(extra_conf=conf) as pg:
        pg.create_monitor_role("opscheck", PASSWORD)
        pg.psql("CREATE ROLE blind LOGIN PASSWORD 'blind-pw-1234'")  # no pg_monitor
        pg.psql("CREATE DATABASE app")
        pg.psql("CREATE DATABASE broken")
        pg.psql(HEALTHY_SCHEMA, dbname="app")
        pg.psql(BROKEN_SCHEMA, dbname="broken")
        # a CREATE UNIQUE INDEX CONCURRENTLY that fails leaves an INVALID index behind
        with contextlib.suppress(RuntimeError):
            pg.psql("CREATE UNIQUE INDEX CONCURRENTLY dupes_n ON dupes (n)", dbname="broken")
        for db in ("app", "broken"):
            pg.psql(MONITOR_GRANTS, dbname=db)
        pg.psql("CREATE SEQUENCE hidden", dbname="broken")  # created after the grants: unreadable
        for _ in range(3):  # cold reads through a small ring buffer: a real cache-miss ratio
            pg.psql("SELECT count(*) FROM big", dbname="broken")
        yield pg


def dsn(server, db="app", user="opscheck", password=PASSWORD):
    return server.dsn(user, password, db)


@pytest.fixture(scope="module")
def healthy(server, tmp_path_factory):
    folder = alembic_folder(tmp_path_factory.mktemp("alembic") / "versions", "c3")
    inventory = {
        "environment": "selftest-pg-depth",
        "postgres": [
            {
                "name": "app",
                "dsn": dsn(server),
                "required_triggers": [{"table": "events", "name": "notify_new_event_trigger"}],
                "migrations": {"tool": "alembic", "folder": folder},
                "database_max_gb": 10,
                "table_max_gb": 1,
            }
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("healthy"))


@pytest.fixture(scope="module")
def broken(server, tmp_path_factory):
    folder = alembic_folder(tmp_path_factory.mktemp("alembic") / "versions", "c3")
    for _ in range(12):  # slow statements for pg_stat_statements to count
        server.psql("SELECT pg_sleep(0.02)", dbname="app")
    inventory = {
        "environment": "selftest-pg-depth-broken",
        "postgres": [
            {
                "name": "broken",
                "dsn": dsn(server, "broken"),
                "required_triggers": [
                    {"table": "events", "name": "notify_new_event_trigger"},
                    {"table": "events", "name": "no_such_trigger"},
                ],
                "migrations": {"tool": "alembic", "folder": folder},
                # tiny limits, real measurements: a fresh cluster is far from 2^31 and from 1 GB
                "wraparound_warn_age": 1,
                "wraparound_crit_age": 2,
                "database_max_gb": 0.001,
                "table_max_gb": 0.001,
                "cache_hit_min_blocks": 1000,
            },  # a fresh cluster: judge the ratio on fewer accesses
            {"name": "slow", "dsn": dsn(server), "slow_statement_max_ms": 10, "slow_statement_min_calls": 10},
            {"name": "plain", "dsn": dsn(server), "require_tls": True},
            {"name": "blind", "dsn": dsn(server, user="blind", password="blind-pw-1234")},
            {"name": "superuser", "dsn": f"host={server.dir} port={server.port} user=postgres dbname=app"},
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("broken"))


def test_healthy_database_passes_every_check(healthy):
    assert healthy.rc == 0, healthy.output
    ids = set(healthy.checks)
    for check in (
        "long_queries_below_warning",
        "no_old_transactions",
        "no_idle_in_transaction",
        "lock_waits_below_critical",
        "no_new_deadlocks",
        "wraparound_below_critical",
        "sequences_below_warning",
        "tables_vacuumed",
        "tables_analyzed",
        "no_invalid_indexes",
        "no_disabled_triggers",
        "no_slow_statements",
        "cache_hit_ratio",
        "database_size_below_limit",
        "table_sizes_below_limit",
        "migrations_at_head",
    ):
        assert f"test_postgres_{check}[app]" in ids, check
    healthy.assert_passed("test_postgres_required_trigger_enabled[app:notify_new_event_trigger]")


def test_disabled_and_missing_triggers_fail(broken):
    broken.assert_failed("test_postgres_required_trigger_enabled[broken:notify_new_event_trigger]", "DISABLED")
    broken.assert_failed("test_postgres_required_trigger_enabled[broken:no_such_trigger]", "does not exist")
    broken.assert_failed("test_postgres_no_disabled_triggers[broken]", "notify_new_event_trigger on events")


def test_migration_behind_head_fails(broken):
    broken.assert_failed("test_postgres_migrations_at_head[broken]", "['b2']", "expected head ['c3']")


def test_sequence_near_max_fails_warning_not_critical(broken, server):
    # "hidden" was created after the grants: the check says it cannot read it, not that all is well
    broken.assert_failed("test_postgres_sequences_below_warning[broken]", "cannot read 1 sequence", "hidden")
    server.psql("GRANT SELECT ON SEQUENCE hidden TO opscheck", dbname="broken")


def test_sequence_percentages(server, tmp_path):
    server.psql("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO opscheck", dbname="broken")
    inventory = {"environment": "selftest-pg-seq", "postgres": [{"name": "broken", "dsn": dsn(server, "broken")}]}
    result = run_suite(inventory, tmp_path, "-k", "sequences")
    result.assert_failed("test_postgres_sequences_below_warning[broken]", "public.almost_full 89.9%", "85%")
    result.assert_passed("test_postgres_sequences_below_critical[broken]")


def test_invalid_index_and_unvacuumed_table_fail(broken):
    broken.assert_failed("test_postgres_no_invalid_indexes[broken]", "dupes_n")
    broken.assert_failed("test_postgres_tables_vacuumed[broken]", "public.churn", "last vacuum never")
    broken.assert_failed("test_postgres_tables_analyzed[broken]", "public.churn")


def test_wraparound_and_sizes_fail_on_tiny_limits(broken):
    broken.assert_failed("test_postgres_wraparound_below_warning[broken]", "datfrozenxid age", ">= warning 1")
    broken.assert_failed("test_postgres_wraparound_below_critical[broken]", ">= critical 2")
    broken.assert_failed("test_postgres_database_size_below_limit[broken]", ">= limit 0.001 GB")
    broken.assert_failed("test_postgres_table_sizes_below_limit[broken]", "public.big")


def test_cold_reads_fail_cache_hit_ratio(broken):
    broken.assert_failed("test_postgres_cache_hit_ratio[broken]", "cache hit ratio", "< limit 98%")


def test_slow_statements_fail_and_absent_extension_is_deselected(broken):
    broken.assert_failed("test_postgres_no_slow_statements[slow]", "pg_sleep", "> 10 ms")
    assert "test_postgres_no_slow_statements[broken]" not in broken.checks
    assert "pg_stat_statements is not installed on postgres" in broken.output
    assert "broken" in broken.output.split("pg_stat_statements is not installed on postgres")[1].split("\n")[0]


def test_plain_connection_fails_required_tls(broken):
    broken.assert_failed("test_postgres_connections_use_tls[plain]", "ssl=False", "sslmode=")


def test_check_role_with_rights_fails_least_privilege(broken, healthy):
    healthy.assert_passed("test_postgres_role_least_privilege[app]")
    broken.assert_failed("test_postgres_role_least_privilege[superuser]", "role postgres has rolsuper", "can write")


def test_role_without_pg_monitor_cannot_pass_activity_checks(broken):
    for check in ("long_queries_below_warning", "no_idle_in_transaction", "lock_waits_below_warning"):
        broken.assert_failed(f"test_postgres_{check}[blind]", "cannot see other sessions: grant pg_monitor")


# --- live sessions: long queries, idle transactions, lock waits, deadlocks ----------------


@contextlib.contextmanager
def troubled_sessions(server):
    """A query sleeping, a transaction left idle, and a session blocked on its lock."""
    conninfo = f"host={server.dir} port={server.port} user=postgres dbname=app"
    idle = psycopg.connect(conninfo)
    idle.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # opens a transaction, then idles
    threads = []
    for sql in ("SELECT pg_sleep(30)", "SELECT count(*) FROM events"):
        conn = psycopg.connect(conninfo, autocommit=True)
        thread = threading.Thread(target=_run, args=(conn, sql), daemon=True)
        thread.start()
        threads.append((thread, conn))
    try:
        time.sleep(2.5)
        yield
    finally:
        idle.close()
        for _, conn in threads:
            conn.cancel()
        for thread, conn in threads:
            thread.join(10)
            conn.close()


def _run(conn, sql):
    with contextlib.suppress(psycopg.Error):
        conn.execute(sql)


def test_long_query_idle_transaction_and_lock_wait_fail(server, tmp_path):
    inventory = {
        "environment": "selftest-pg-activity",
        "postgres": [
            {
                "name": "app",
                "dsn": dsn(server),
                "long_query_warn_s": 1,
                "long_query_crit_s": 2,
                "transaction_max_s": 1,
                "idle_in_transaction_max_s": 1,
                "lock_wait_warn_s": 1,
                "lock_wait_crit_s": 2,
            }
        ],
    }
    with troubled_sessions(server):
        result = run_suite(inventory, tmp_path, "-k", "long_queries or transaction or lock_waits")
    result.assert_failed("test_postgres_long_queries_below_warning[app]", "pg_sleep(30)", "warning 1 s")
    result.assert_failed("test_postgres_long_queries_below_critical[app]", "pg_sleep(30)", "critical 2 s")
    result.assert_failed("test_postgres_no_idle_in_transaction[app]", "idle in transaction", "LOCK TABLE")
    result.assert_failed("test_postgres_no_old_transactions[app]", "LOCK TABLE")
    result.assert_failed("test_postgres_lock_waits_below_warning[app]", "count(*) FROM events")
    result.assert_failed("test_postgres_lock_waits_below_critical[app]", "count(*) FROM events")


def _deadlock(server):
    conninfo = f"host={server.dir} port={server.port} user=postgres dbname=broken"
    server.psql(
        "CREATE TABLE IF NOT EXISTS lockpair (id int PRIMARY KEY); "
        "INSERT INTO lockpair VALUES (1), (2) ON CONFLICT DO NOTHING",
        dbname="broken",
    )
    a, b = psycopg.connect(conninfo), psycopg.connect(conninfo)
    a.execute("UPDATE lockpair SET id = id WHERE id = 1")
    b.execute("UPDATE lockpair SET id = id WHERE id = 2")
    thread = threading.Thread(target=_run, args=(a, "UPDATE lockpair SET id = id WHERE id = 2"))
    thread.start()
    time.sleep(0.3)
    _run(b, "UPDATE lockpair SET id = id WHERE id = 1")  # one of the two is the deadlock victim
    thread.join(10)
    a.close()
    b.close()


def test_new_deadlock_since_last_run_fails(server, tmp_path):
    inventory = {"environment": "selftest-pg-deadlock", "postgres": [{"name": "app", "dsn": dsn(server)}]}
    first = run_suite(inventory, tmp_path, "-k", "deadlocks")
    first.assert_passed("test_postgres_no_new_deadlocks[app]")
    _deadlock(server)
    time.sleep(1.2)  # statistics reach pg_stat_database within a second
    second = run_suite(inventory, tmp_path, "-k", "deadlocks")
    second.assert_failed("test_postgres_no_new_deadlocks[app]", "1 new deadlock(s) since the last run")
    third = run_suite(inventory, tmp_path, "-k", "deadlocks")
    third.assert_passed("test_postgres_no_new_deadlocks[app]")


# --- replication: a real primary and a streaming replica made with pg_basebackup ----------


@pytest.fixture(scope="module")
def pair():
    with PostgresServer() as primary:
        primary.create_monitor_role("opscheck", PASSWORD)
        primary.psql("CREATE TABLE ticks (n int)")
        with PostgresServer(primary=primary) as replica:
            primary.psql("INSERT INTO ticks VALUES (1)")
            yield primary, replica


def replication_inventory(primary, replica, **limits):
    return {
        "environment": "selftest-pg-replication",
        "postgres": [
            {"name": "primary", "dsn": dsn(primary, "postgres"), "role": "primary", **limits},
            {"name": "replica", "dsn": dsn(replica, "postgres"), "role": "replica", **limits},
        ],
    }


def test_replication_healthy_then_paused(pair, tmp_path):
    primary, replica = pair
    time.sleep(1.2)  # the walsender has now been "active" longer than the 1 s query limit below
    limits = {"replication_lag_warn_s": 1, "replication_lag_crit_s": 2, "long_query_warn_s": 1}
    healthy = run_suite(
        replication_inventory(primary, replica, **limits),
        tmp_path / "healthy",
        "-k",
        "replication or replay or role or slot or long_queries",
    )
    assert healthy.rc == 0, healthy.output
    healthy.assert_passed(
        "test_postgres_long_queries_below_warning[primary]",  # walsender ignored
        "test_postgres_replication_lag_below_warning[replica]",
        "test_postgres_replication_slots_active[primary]",
    )

    # wrong expectations: the inventory says the replica is a primary
    swapped = run_suite(replication_inventory(replica, primary), tmp_path / "swapped", "-k", "role")
    swapped.assert_failed("test_postgres_role_as_expected[primary]", "is a replica, expected primary")

    # paused replay while the primary keeps writing: the replica falls behind for real
    replica.psql("SELECT pg_wal_replay_pause()")
    primary.psql("SELECT pg_create_physical_replication_slot('abandoned')")
    try:
        for _ in range(3):
            primary.psql("INSERT INTO ticks SELECT generate_series(1, 1000)")
            time.sleep(0.5)
        time.sleep(1)
        broken = run_suite(
            replication_inventory(primary, replica, **limits),
            tmp_path / "paused",
            "-k",
            "replication or replay or slot",
        )
    finally:
        replica.psql("SELECT pg_wal_replay_resume()")
        primary.psql("SELECT pg_drop_replication_slot('abandoned')")
    broken.assert_failed("test_postgres_replay_not_paused[replica]", "WAL replay is paused")
    broken.assert_failed("test_postgres_replication_lag_below_warning[replica]", "replay is PAUSED", ">= warning 1 s")
    broken.assert_failed("test_postgres_replication_lag_below_critical[replica]", ">= critical 2 s")
    broken.assert_failed("test_postgres_replication_slots_active[primary]", "abandoned")


# --- TLS: sslmode=verify-full against a server with a certificate from a test CA ---------


@pytest.fixture(scope="module")
def tls_server():
    import os
    import shutil
    import tempfile

    import trustme

    ca = trustme.CA()
    certs = tempfile.mkdtemp(prefix="opscheck-pgtls-", dir="/tmp")
    ca.cert_pem.write_to_path(f"{certs}/ca.pem")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(f"{certs}/server.crt")
    leaf.private_key_pem.write_to_path(f"{certs}/server.key")
    for name in ("server.crt", "server.key", "ca.pem"):
        shutil.chown(f"{certs}/{name}", "postgres", "postgres")
    os.chmod(f"{certs}/server.key", 0o600)
    os.chmod(certs, 0o755)
    conf = {"ssl": "on", "ssl_cert_file": f"'{certs}/server.crt'", "ssl_key_file": f"'{certs}/server.key'"}
    with PostgresServer(extra_conf=conf) as pg:
        pg.create_monitor_role("opscheck", PASSWORD)
        yield pg, f"{certs}/ca.pem"
    shutil.rmtree(certs, ignore_errors=True)


def test_tls_verified_connection_passes_until_a_plain_client_connects(tls_server, tmp_path):
    server, ca_file = tls_server
    verified = dsn(server).replace("/app", "/postgres") + f"?sslmode=verify-full&sslrootcert={ca_file}"
    inventory = {"environment": "selftest-pg-tls", "postgres": [{"name": "db", "dsn": verified, "require_tls": True}]}
    good = run_suite(inventory, tmp_path / "good", "-k", "tls")
    good.assert_passed("test_postgres_connections_use_tls[db]")
    plain = dsn(server).replace("/app", "/postgres") + "?sslmode=disable&application_name=legacy-worker"
    with psycopg.connect(plain):
        bad = run_suite(inventory, tmp_path / "bad", "-k", "tls")
    bad.assert_failed("test_postgres_connections_use_tls[db]", "1 client connection(s) without TLS", "legacy-worker")


def test_sqlx_and_custom_migration_tables(server, tmp_path):
    server.psql(
        "CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, success boolean NOT NULL); "
        "INSERT INTO _sqlx_migrations VALUES (20240101000000, true), (20240201000000, false); "
        "CREATE TABLE schema_info (release text); INSERT INTO schema_info VALUES ('2.4.1'); "
        "GRANT SELECT ON _sqlx_migrations, schema_info TO opscheck",
        dbname="app",
    )
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name in ("20240101000000_init.sql", "20240201000000_add_jobs.sql"):
        (folder / name).write_text("-- a migration\n")
    inventory = {
        "environment": "selftest-pg-sqlx",
        "postgres": [
            # the newest migration failed (success = false): the schema is one behind the folder
            {"name": "sqlx", "dsn": dsn(server), "migrations": {"tool": "sqlx", "folder": str(folder)}},
            {
                "name": "custom",
                "dsn": dsn(server),
                "migrations": {"tool": "custom", "table": "schema_info", "column": "release", "expected": "2.4.1"},
            },
        ],
    }
    result = run_suite(inventory, tmp_path / "run", "-k", "migrations")
    result.assert_failed("test_postgres_migrations_at_head[sqlx]", "['20240101000000']", "['20240201000000']")
    result.assert_passed("test_postgres_migrations_at_head[custom]")
