"""`opscheck restore-drill`: restores the newest dump into a scratch database of a REAL
PostgreSQL, runs a read-only sanity query, and refuses a database the inventory watches
or one that already holds tables."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.servers import PostgresServer

PASSWORD = "drill-Pw-81"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with PostgresServer() as pg:
        pg.psql(f"CREATE ROLE drill LOGIN PASSWORD '{PASSWORD}'")
        pg.psql("CREATE DATABASE app OWNER drill")
        pg.psql("CREATE DATABASE scratch OWNER drill")
        pg.psql("CREATE DATABASE busy OWNER drill")
        pg.psql("CREATE TABLE keep_me (id int)", dbname="busy")
        pg.psql(
            "CREATE TABLE orders (id int PRIMARY KEY, total numeric); "
            "INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g; "
            "CREATE TABLE customers (id int)",
            dbname="app",
        )
        pg.psql("ALTER TABLE orders OWNER TO drill; ALTER TABLE customers OWNER TO drill", dbname="app")
        folder = Path(pg.dir) / "dumps"  # pytest's tmp dirs are private to root; pg_dump runs as postgres
        folder.mkdir()
        shutil.chown(folder, "postgres")
        old = folder / "app-1.dump"
        pg._as_postgres(f"{pg.bindir}/pg_dump", "-Fc", "-h", pg.dir, "-p", str(pg.port), "-d", "app", "-f", str(old))
        os.utime(old, (time.time() - 3 * 86400,) * 2)
        pg.psql("CREATE TABLE newest_only (id int)", dbname="app")
        pg._as_postgres(
            f"{pg.bindir}/pg_dump",
            "-Fc",
            "-h",
            pg.dir,
            "-p",
            str(pg.port),
            "-d",
            "app",
            "-f",
            str(folder / "app-2.dump"),
        )
        inventory = tmp_path_factory.mktemp("drill") / "inventory.yml"
        inventory.write_text(
            yaml.safe_dump(
                {
                    "environment": "selftest-drill",
                    "postgres": [{"name": "app-db", "dsn": pg.dsn("drill", PASSWORD, "app")}],
                    "backups": [{"name": "app-dump", "path": f"{folder}/*.dump"}],
                }
            )
        )
        yield pg, inventory


def _drill(inventory, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "opscheck.cli", "restore-drill", *args, f"--inventory={inventory}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_refuses_a_target_of_the_inventory(setup):
    pg, inventory = setup
    target = f"postgresql://drill:{PASSWORD}@localhost:{pg.port}/app"  # same database, other spelling
    proc = _drill(inventory, "app-dump", "--into", target)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "postgres target 'app-db'" in proc.stderr and PASSWORD not in proc.stderr
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", dbname="app").strip() == "3"


def test_refuses_a_watched_database_named_by_libpqs_environment(setup):
    """PGHOST and PGPORT fill what the DSN leaves out, for libpq and for the guard alike."""
    pg, inventory = setup
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(pg.port)}
    proc = _drill(inventory, "app-dump", "--into", f"dbname=app user=drill password={PASSWORD}", env=env)
    assert proc.returncode == 4 and "postgres target 'app-db'" in proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("spelling", ["host=watched-alias hostaddr=127.0.0.1", "host=127.0.0.2,localhost"])
def test_refuses_a_watched_database_under_another_address(setup, spelling):
    """hostaddr wins over host, and every host of a multi-host DSN counts: libpq's reading."""
    pg, inventory = setup
    proc = _drill(
        inventory, "app-dump", "--into", f"{spelling} port={pg.port} dbname=app user=drill password={PASSWORD}"
    )
    assert proc.returncode == 4 and "postgres target 'app-db'" in proc.stderr, proc.stdout + proc.stderr
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", dbname="app").strip() == "3"


@pytest.mark.parametrize(
    "into", ["host=127.0.0.1 user=drill password=Drill Pw99xSecr3t", "postgresql://drill:DrillPw%zzSecr3t@h/x"]
)
def test_a_malformed_dsn_is_refused_without_its_password(setup, into):
    _, inventory = setup
    proc = _drill(inventory, "app-dump", "--into", into)
    assert proc.returncode == 4 and "not a valid DSN" in proc.stderr, proc.stdout + proc.stderr
    assert "Secr3t" not in proc.stdout + proc.stderr, proc.stderr


def test_restores_the_newest_dump_and_reports(setup):
    pg, inventory = setup
    proc = _drill(
        inventory,
        "app-dump",
        "--into",
        pg.dsn("drill", PASSWORD, "scratch"),
        "--query",
        "SELECT sum(total) FROM orders",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "app-2.dump" in proc.stdout and "custom-format" in proc.stdout
    assert "tables restored: 3" in proc.stdout  # newest_only is only in the newest dump
    assert "sanity query: Decimal('187875.0')" in proc.stdout


def test_refuses_a_database_that_holds_tables(setup):
    pg, inventory = setup
    proc = _drill(inventory, "app-dump", "--into", pg.dsn("drill", PASSWORD, "busy"))
    assert proc.returncode == 4 and "not a scratch database" in proc.stderr, proc.stderr
