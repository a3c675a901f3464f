"""`opscheck restore-drill BACKUP --into DSN`: restore the newest dump into a scratch database.

A command, never a check: it writes. It refuses any database that is a target of the
inventory, and a database that already holds tables.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from opscheck.cli.common import USAGE_ERROR, add_inventory_options, inventory_of
from opscheck.core import redact
from opscheck.core.errors import ConfigError, OpscheckError, one_line
from opscheck.core.lazy import optional
from opscheck.core.redact import clip
from opscheck.families.backups import BackupReader
from opscheck.inventory import Inventory, load

if TYPE_CHECKING:
    import psycopg
    from psycopg import conninfo
else:
    psycopg = optional("psycopg", "postgres")
    conninfo = optional("psycopg.conninfo", "postgres")

DRILL_QUERY = "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"


def _endpoint(dsn: str) -> tuple[str, int, str]:
    """(host, port, dbname) of a libpq DSN's first host, as the drill reports it."""
    parts = {k: str(v) for k, v in conninfo.conninfo_to_dict(dsn).items()}
    host = (parts.get("host") or "localhost").split(",")[0]
    port = (parts.get("port") or "5432").split(",")[0]
    return host, int(port) if port.isdigit() else 5432, parts.get("dbname") or parts.get("user") or ""


def _destinations(dsn: str) -> set[tuple[str, str, str]]:
    """Where a DSN's connections go: (address, port, dbname) for each of its hosts, by the
    address libpq connects to (hostaddr over host; a name resolved; every loopback address
    and a local socket one place), so another spelling of a watched database is caught."""
    given = {k: str(v) for k, v in conninfo.conninfo_to_dict(dsn).items() if v is not None}
    parts = {**_libpq_defaults(), **given}  # PGHOST, PGPORT, PGDATABASE ... fill what the DSN leaves out
    hosts = (parts.get("host") or "localhost").split(",")
    hostaddrs = (parts.get("hostaddr") or "").split(",")
    ports = (parts.get("port") or "5432").split(",")
    dbname = parts.get("dbname") or parts.get("user") or ""
    found = set()
    for i, host in enumerate(hosts):
        address = hostaddrs[i] if i < len(hostaddrs) and hostaddrs[i].strip() else host  # hostaddr wins
        port = ports[i] if i < len(ports) else ports[-1]
        for resolved in _addresses(address.strip()):
            found.add((resolved, port.strip() or "5432", dbname))
    return found


def _libpq_defaults() -> dict[str, str]:
    """libpq's defaults for what a DSN leaves out, the PG* environment variables among them."""
    return {o.keyword.decode(): o.val.decode() for o in psycopg.pq.Conninfo.get_defaults() if o.val is not None}


def _addresses(host: str) -> set[str]:
    if not host or host.startswith("/") or host.startswith("@"):
        return {"loopback"}  # a local socket: this machine's server
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return {host.lower()}
    addresses = {str(info[4][0]) for info in infos}
    return {"loopback" if ipaddress.ip_address(a.split("%")[0]).is_loopback else a for a in addresses}


def _count(row) -> int:
    return int(row[0]) if row else 0


def restore_drill(inventory: Inventory, backup_name: str, into: str, query: str = DRILL_QUERY) -> list[str]:
    """Restore the newest backup of `backup_name` into the scratch database `into` and run a
    read-only sanity query there. Refuses any database that is a target of the inventory,
    and a database that already holds tables. Returns the report lines; raises OpscheckError."""
    backups = {b.name: b for b in inventory.backups}
    if backup_name not in backups:
        raise ConfigError([f"{backup_name!r} is not a backup of the inventory ({', '.join(backups) or 'none'})"])
    backup = backups[backup_name]
    if backup.s3:
        raise ConfigError([f"backup {backup_name!r} is in S3: the drill restores files on this machine only"])
    spec = next((h.spec for h in inventory.hosts if h.name == backup.host), backup.spec) if backup.host else backup.spec
    if spec != "local://":
        raise ConfigError([f"backup {backup_name!r} is on {spec}: the drill restores files on this machine only"])
    redact.register(into)  # its password, before any message could carry it
    try:
        scratch, goes_to = _endpoint(into), _destinations(into)
    except (psycopg.ProgrammingError, ValueError):  # libpq's text quotes the DSN, password and all
        raise ConfigError(["--into: not a valid DSN (libpq's key=value form or a postgresql:// URL)"]) from None
    for pg in inventory.postgres:
        if _destinations(pg.dsn.get_secret_value()) & goes_to:
            raise ConfigError(
                [
                    f"--into is postgres target {pg.name!r} of the inventory: a drill never restores "
                    "into a database the checks watch; name a scratch database"
                ]
            )
    newest = BackupReader(backup, spec, inventory.timeout(backup)).newest()
    if newest is None:
        raise OpscheckError(f"backup {backup_name!r}: no file matches {backup.path}")
    with psycopg.connect(into, connect_timeout=10, autocommit=True) as conn:
        tables = _count(conn.execute(DRILL_QUERY).fetchone())
    if tables:
        raise ConfigError([f"--into {scratch[2]!r} already holds {tables} table(s): not a scratch database"])
    with open(newest.path, "rb") as f:
        custom = f.read(5) == b"PGDMP"
    command = (
        ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "-d", into, newest.path]
        if custom
        else ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", into, "-f", newest.path]
    )
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise OpscheckError(
            f"restore of {newest.path} failed ({command[0]} exit {proc.returncode}): {clip(proc.stderr.strip(), 500)}"
        )
    with psycopg.connect(into, connect_timeout=10) as conn:
        conn.execute("BEGIN READ ONLY")
        conn.execute("SET LOCAL statement_timeout = 30000")
        row = conn.execute(query).fetchone()
        restored = _count(conn.execute(DRILL_QUERY).fetchone())
    return [
        f"restored {newest.path} ({newest.size:,} bytes, {newest.age().total_seconds() / 3600:.1f} h old, "
        f"{'custom-format' if custom else 'plain SQL'}) into {scratch[2]!r} on {scratch[0]}:{scratch[1]} "
        f"in {seconds:.1f} s",
        f"tables restored: {restored}",
        f"sanity query: {row[0] if row else None!r}",
    ]


def add_command(commands) -> None:
    """Register `opscheck restore-drill BACKUP --into DSN` on the CLI."""
    cmd = commands.add_parser(
        "restore-drill",
        help="restore the newest backup into a scratch database and sanity-check it (writes!)",
        description="Restore the newest dump of a backup target into a scratch PostgreSQL database named "
        "on the command line, run a read-only sanity query there and report. Refuses any "
        "database that is a target of the inventory, and any database that holds tables.",
    )
    cmd.add_argument("backup", help="backup target name (the inventory's backups section)")
    cmd.add_argument("--into", required=True, metavar="DSN", help="the scratch database (it must exist, empty)")
    add_inventory_options(cmd)
    cmd.add_argument("--query", default=DRILL_QUERY, help="read-only sanity query (default: count user tables)")
    cmd.set_defaults(func=run)


def run(args) -> int:
    try:
        lines = restore_drill(load(inventory_of(args)), args.backup, args.into, args.query)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"opscheck restore-drill: refused: {problem}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as exc:  # noqa: BLE001 - a failed drill is a result, reported in one line
        print(f"opscheck restore-drill: FAILED: {one_line(exc, 800)}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0
