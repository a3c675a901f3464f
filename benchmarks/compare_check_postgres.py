"""Compare opscheck's PostgreSQL verdicts with check_postgres (Debian check-postgres) on
the same real server, healthy and then broken, as the same least-privilege role.

    .venv/bin/python benchmarks/compare_check_postgres.py

Prints one row per (state, check): check_postgres's Nagios state and opscheck's outcome.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import run_suite  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

PASSWORD = "compare-Pw-2210"
# check_postgres action and its thresholds -> the opscheck check with the same meaning
PAIRS = [
    ("backends", ["--warning=80%", "--critical=90%"], "connections_below_warning"),
    ("query_time", ["--warning=1s", "--critical=2s"], "long_queries_below_warning"),
    ("txn_idle", ["--warning=1s", "--critical=2s"], "no_idle_in_transaction"),
    ("txn_time", ["--warning=1s", "--critical=2s"], "no_old_transactions"),
    ("locks", ["--warning=waiting=1", "--critical=waiting=2"], "lock_waits_below_warning"),
    ("txn_wraparound", ["--warning=1300000000", "--critical=1400000000"], "wraparound_below_warning"),
    ("sequence", ["--warning=85%", "--critical=95%"], "sequences_below_warning"),
    ("disabled_triggers", ["--warning=1", "--critical=1"], "no_disabled_triggers"),
]
LIMITS = {
    "long_query_warn_s": 1,
    "long_query_crit_s": 2,
    "idle_in_transaction_max_s": 1,
    "transaction_max_s": 1,
    "lock_wait_warn_s": 1,
    "lock_wait_crit_s": 2,
}


def check_postgres(server, action, thresholds) -> str:
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    proc = subprocess.run(
        [
            "check_postgres",
            f"--action={action}",
            "-H",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-u",
            "opscheck",
            "-db",
            "app",
            *thresholds,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    return proc.stdout.split(":")[0].replace("POSTGRES_", "").split()[-1] if proc.stdout else proc.stderr[:60]


def opscheck(server, workdir) -> dict:
    inventory = {
        "environment": "compare",
        "postgres": [{"name": "app", "dsn": server.dsn("opscheck", PASSWORD, "app"), **LIMITS}],
    }
    result = run_suite(inventory, Path(tempfile.mkdtemp(dir=workdir)))
    return {cid.split("[")[0].removeprefix("test_postgres_"): c["outcome"] for cid, c in result.checks.items()}


def broken_state(server):
    conninfo = f"host={server.dir} port={server.port} user=postgres dbname=app"
    server.psql(
        "CREATE SEQUENCE nearly MAXVALUE 100; SELECT setval('nearly', 90); "
        "GRANT SELECT ON SEQUENCE nearly TO opscheck; "
        "ALTER TABLE t DISABLE TRIGGER t_touch",
        dbname="app",
    )
    idle = psycopg.connect(conninfo)
    idle.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    sleeper = psycopg.connect(conninfo, autocommit=True)
    waiter = psycopg.connect(conninfo, autocommit=True)
    for conn, sql in ((sleeper, "SELECT pg_sleep(20)"), (waiter, "SELECT count(*) FROM t")):
        threading.Thread(target=lambda c=conn, q=sql: _quiet(c, q), daemon=True).start()
    time.sleep(2.5)
    return [idle, sleeper, waiter]


def _quiet(conn, sql):
    with contextlib.suppress(psycopg.Error):
        conn.execute(sql)


def main():
    workdir = tempfile.mkdtemp(prefix="compare-")
    with PostgresServer() as server:
        server.create_monitor_role("opscheck", PASSWORD)
        server.psql("CREATE DATABASE app")
        server.psql(
            "CREATE TABLE t (n int); CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RETURN NEW; END $$; CREATE TRIGGER t_touch BEFORE INSERT ON t "
            "FOR EACH ROW EXECUTE FUNCTION touch(); GRANT SELECT ON ALL TABLES IN SCHEMA public "
            "TO opscheck",
            dbname="app",
        )
        print(f"{'state':8} {'check_postgres action':20} {'check_postgres':14} {'opscheck check':28} opscheck")
        for state in ("healthy", "broken"):
            held = broken_state(server) if state == "broken" else []
            ours = opscheck(server, workdir)
            for action, thresholds, check in PAIRS:
                theirs = check_postgres(server, action, thresholds)
                print(f"{state:8} {action:20} {theirs:14} {check:28} {ours.get(check, 'not run')}")
            for conn in held:
                conn.cancel()
                conn.close()


if __name__ == "__main__":
    main()
