"""PostgreSQL connections (psycopg 3), read-only by construction.

Every query runs in its own `BEGIN READ ONLY` transaction with `SET LOCAL
statement_timeout`, over the extended protocol (one statement per query, so
`SELECT 1; DELETE ...` is refused by the server). A session-level SET is not enough:
any user can undo it, and PgBouncer rejects startup options.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from opscheck.core.errors import OpscheckError, Unreachable, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import Condition, InventoryCheck, Item, Model, Name, Param, Target, check_marks
from opscheck.core.redact import mask_url
from opscheck.core.values import PostgresDsn

if TYPE_CHECKING:
    import psycopg
    from psycopg import rows as psycopg_rows
    from psycopg import sql
else:
    psycopg = optional("psycopg", "postgres")
    psycopg_rows = optional("psycopg.rows", "postgres")
    sql = optional("psycopg.sql", "postgres")

# --- the SQL guard: an inventory's assertion is parsed as the server would parse it --------

# Functions a read-only transaction still lets through, or that run SQL given as text: they
# act on other sessions, on replication, on the WAL, on files or on sequences. A check never
# calls them (runbook lines with them are remediations). The one list; names as the server
# resolves them (lower case unless quoted, unicode escapes decoded), schema ignored.
DENIED_FUNCTIONS = frozenset(
    [
        # signalling other backends and the server
        "pg_terminate_backend", "pg_cancel_backend", "pg_signal_backend", "pg_reload_conf",
        "pg_rotate_logfile", "pg_promote", "pg_log_backend_memory_contexts",
        # replication slots and origins
        "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
        "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot", "pg_replication_slot_advance",
        "pg_logical_slot_get_changes", "pg_logical_slot_get_binary_changes", "pg_logical_emit_message",
        "pg_sync_replication_slots",
        # WAL and backup control
        "pg_switch_wal", "pg_switch_xlog", "pg_create_restore_point", "pg_start_backup", "pg_stop_backup",
        "pg_backup_start", "pg_backup_stop", "pg_wal_replay_pause", "pg_wal_replay_resume",
        "pg_xlog_replay_pause", "pg_xlog_replay_resume",
        # configuration and statistics
        "set_config", "pg_stat_reset", "pg_stat_statements_reset",
        # sequences
        "nextval", "setval",
        # notifications, server files, SQL run from text
        "pg_notify", "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_file_write", "pg_file_unlink",
        "pg_file_rename", "pg_import_system_collations", "query_to_xml", "query_to_xmlschema",
        "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema", "ts_stat",
    ]
)  # fmt: skip
DENIED_PREFIXES = ("pg_advisory_", "pg_try_advisory_", "pg_stat_reset_", "pg_replication_origin_", "dblink", "lo_")
DENIED_LARGE_OBJECT = frozenset(["loread", "lowrite"])
WRITES = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}


def denied(name: str) -> bool:
    """Whether a function name (as the server resolves it) is on the deny-list."""
    return name in DENIED_FUNCTIONS or name in DENIED_LARGE_OBJECT or name.startswith(DENIED_PREFIXES)


def sql_problem(query: str) -> str | None:
    """Why `query` is not one side-effect-free SELECT, or None. Parsed with libpg_query (pglast),
    the server's own grammar, so quoting, unicode escapes and schema names cannot hide a call.

    The main defence stays the least-privilege role (README): a parser cannot see inside
    a user-defined function or an operator.
    """
    try:
        from pglast.parser import ParseError, parse_sql_json
    except ImportError:
        return "SQL assertions are parsed with pglast: pip install 'opscheck[postgres]'"
    try:
        tree = json.loads(parse_sql_json(query))
    except ParseError as exc:
        return f"not valid SQL: {str(exc).split(' at or near ')[0]} (at character {getattr(exc, 'location', '?')})"
    statements = tree.get("stmts", [])
    if len(statements) != 1:
        return f"an SQL assertion is one statement, this has {len(statements)}"
    kind, select = next(iter(statements[0]["stmt"].items()))
    if kind != "SelectStmt":
        return f"an SQL assertion is one SELECT (or WITH ... SELECT) statement, not {kind.removesuffix('Stmt')}"
    if select.get("intoClause"):
        return "SELECT ... INTO creates a table: checks are read-only"
    found: list[str] = []
    _walk(tree, found)
    return found[0] if found else None


def _walk(node: Any, found: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, found)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in WRITES:
            found.append(f"the query runs {WRITES[key]} (a data-modifying WITH): checks are read-only")
        elif key == "LockingClause":
            found.append("SELECT ... FOR UPDATE/SHARE takes row locks: checks never do")
        elif key == "FuncCall":
            name = value["funcname"][-1]["String"]["sval"]
            if denied(name):
                found.append(
                    f"query calls {name}, which acts on the server even in a read-only transaction: checks never do"
                )
        _walk(value, found)


PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SqlAssertion(InventoryCheck, Condition):
    """A read-only query whose first column of the first row must meet a condition.

    A `{name}` in the query is an incident-time value (`--param name=...`): it is sent as a
    query parameter, never written into the SQL, so a quote in the value stays a quote.
    """

    name: str = Name
    query: str = Field(
        description="one SELECT (or WITH ... SELECT), parsed at load, deny-listed functions refused; "
        "{name} placeholders are bound from --param (adhoc)"
    )

    @model_validator(mode="after")
    def _no_side_effects(self):
        # a {placeholder} is a bound parameter: the parser sees it as one ($1)
        problem = sql_problem(PLACEHOLDER.sub("$1", self.query))
        if problem:
            raise ValueError(problem)
        if self.placeholders and "adhoc" not in self.schedule:
            raise ValueError(
                f"a query with {{{self.placeholders[0]}}} needs schedule [adhoc] "
                "(its value comes from --param at incident time)"
            )
        return self

    @property
    def placeholders(self) -> list[str]:
        return list(dict.fromkeys(PLACEHOLDER.findall(self.query)))

    def bound(self, params: dict[str, str]) -> tuple[str, dict[str, str] | None]:
        """(the query with each {name} as a psycopg named parameter, their values)."""
        if not self.placeholders:
            return self.query, None
        text = PLACEHOLDER.sub(lambda m: f"%({m.group(1)})s", self.query.replace("%", "%%"))
        return text, {name: params[name] for name in self.placeholders}


class RequiredTrigger(Model):
    """A trigger that must exist and fire (an event pipeline can die silently without it)."""

    table: str = Field(description="table the trigger is on, optionally schema-qualified")
    name: str


class Migrations(Model):
    """Where the application records its schema revision, and which revision is expected."""

    tool: Literal["alembic", "sqlx", "custom"] = "alembic"
    table: str | None = Field(default=None, description="default: alembic_version / _sqlx_migrations")
    column: str | None = Field(default=None, description="default: version_num / version")
    expected: str | None = Field(default=None, description="the head revision (or ${VAR})")
    folder: str | None = Field(
        default=None, description="the application's migrations folder: the head is read from it"
    )

    @model_validator(mode="after")
    def _expected_from_somewhere(self):
        if not self.expected and not self.folder:
            raise ValueError("give the expected head revision (expected) or the migrations folder")
        return self


class Postgres(Target):
    """A PostgreSQL server (or a database behind PgBouncer), reached with psycopg 3.

    Every threshold has the runbooks' value, or check_postgres's, as its default.
    """

    dsn: PostgresDsn = Field(description="libpq URL or key=value string; use ${VAR} for secrets")
    statement_timeout_ms: int = Field(default=5000, gt=0)
    connections_warn_pct: float = Field(default=80, gt=0, le=100)
    connections_crit_pct: float = Field(default=90, gt=0, le=100)
    long_query_warn_s: float = Field(default=60, gt=0, description="runbook: '> 1 minute'")
    long_query_crit_s: float = Field(default=300, gt=0, description="runbook: '> 5 minutes'")
    transaction_max_s: float = Field(default=900, gt=0, description="longest open transaction")
    idle_in_transaction_max_s: float = Field(default=300, gt=0)
    lock_wait_warn_s: float = Field(default=60, gt=0)
    lock_wait_crit_s: float = Field(default=120, gt=0)
    deadlocks_max: int = Field(default=0, ge=0, description="new deadlocks since the last run")
    role: Literal["primary", "replica"] | None = Field(
        default=None, description="expected role; replication checks run when set"
    )
    replication_lag_warn_s: float = Field(default=5, gt=0)
    replication_lag_crit_s: float = Field(default=30, gt=0)
    replication_lag_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    slot_retained_wal_max_bytes: int = Field(default=1024**3, gt=0)
    wraparound_warn_age: int = Field(default=1_300_000_000, gt=0, description="check_postgres default")
    wraparound_crit_age: int = Field(default=1_400_000_000, gt=0, description="check_postgres default")
    sequence_warn_pct: float = Field(default=85, gt=0, le=100)
    sequence_crit_pct: float = Field(default=95, gt=0, le=100)
    vacuum_max_age_days: float = Field(
        default=7, gt=0, description="a table over its autovacuum threshold unvacuumed this long fails"
    )
    required_triggers: list[RequiredTrigger] = Field(default_factory=list)
    migrations: Migrations | None = None
    slow_statement_max_ms: float = Field(default=1000, gt=0, description="pg_stat_statements mean")
    slow_statement_min_calls: int = Field(default=10, ge=1)
    database_max_gb: float | None = Field(default=None, gt=0)
    table_max_gb: float | None = Field(default=None, gt=0)
    cache_hit_min_pct: float = Field(default=98, ge=0, le=100)
    cache_hit_min_blocks: int = Field(
        default=100_000, ge=0, description="judge the ratio only after this many block accesses"
    )
    require_tls: bool = Field(default=False, description="the connection and every client use TLS")
    assertions: list[SqlAssertion] = Field(default_factory=list)

    def secrets(self) -> list[str]:
        return [self.dsn.get_secret_value()]

    @model_validator(mode="after")
    def _warn_below_crit(self):
        pairs = [
            ("connections_warn_pct", "connections_crit_pct"),
            ("long_query_warn_s", "long_query_crit_s"),
            ("lock_wait_warn_s", "lock_wait_crit_s"),
            ("replication_lag_warn_s", "replication_lag_crit_s"),
            ("wraparound_warn_age", "wraparound_crit_age"),
            ("sequence_warn_pct", "sequence_crit_pct"),
        ]
        for warn, crit in pairs:
            if getattr(self, warn) > getattr(self, crit):
                raise ValueError(f"{warn} must not be above {crit}")
        return self


MAX_ROWS = 10_000


class PostgresClient:
    """One connection per target per session; a failed connect is remembered, not retried."""

    def __init__(self, target: Postgres, timeout: float):
        self.target = target
        self.timeout = timeout
        self._conn: psycopg.Connection[Any] | None = None
        self.unreachable = Unreachable()
        self._sees_all: bool | None = None
        self._lock = threading.Lock()

    @functools.cached_property
    def shown(self) -> str:
        return f'postgres "{self.target.name}" ({mask_url(self.target.dsn.get_secret_value())})'

    def connection(self) -> psycopg.Connection[Any]:
        with self._lock:
            self.unreachable.check()
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = psycopg.connect(
                        self.target.dsn.get_secret_value(),
                        connect_timeout=max(1, round(self.timeout)),
                        application_name="opscheck",
                        # a server that stops answering mid-query: libpq gives up after the
                        # timeout instead of waiting for pytest-timeout (statement_timeout is
                        # the server's, and cannot help when the server is gone)
                        tcp_user_timeout=int(self.timeout * 1000) + 5000,
                        keepalives=1,
                        keepalives_idle=max(1, round(self.timeout)),
                        autocommit=True,
                        row_factory=psycopg_rows.dict_row,
                        # no named prepared statements: through PgBouncer's transaction pooling a
                        # later run meets the server connections an earlier one prepared on
                        # ("prepared statement _pg3_0 already exists")
                        prepare_threshold=None,
                    )
                except psycopg.Error as exc:
                    self.unreachable.fail(f"{self.shown}: cannot connect: {one_line(exc, 500)}")
                self._conn.read_only = True
            return self._conn

    def deadline(self) -> float:
        """Seconds a query may take on the client: the server's statement_timeout plus one
        network timeout. A server that stops answering (SIGSTOP, a hung host) still ACKs at
        the kernel level, so no TCP timeout fires: this clock is the only limit."""
        return self.target.statement_timeout_ms / 1000 + self.timeout

    def _abandon(self, conn: psycopg.Connection[Any], expired: threading.Event) -> None:
        """Give up on a connection whose server stopped answering: shut its socket down so
        libpq's blocked read returns now (closing would wait to drain the results)."""
        expired.set()
        with contextlib.suppress(OSError, ValueError, psycopg.Error):
            socket.socket(fileno=os.dup(conn.pgconn.socket)).shutdown(socket.SHUT_RDWR)

    def query(self, sql: Any, params: Any = None) -> list[dict]:
        """Run one read-only statement and return its rows (at most MAX_ROWS), within deadline()."""
        conn = self.connection()
        timeout_ms = self.target.statement_timeout_ms
        expired = threading.Event()
        watchdog = threading.Timer(self.deadline(), self._abandon, (conn, expired))
        watchdog.daemon = True
        watchdog.start()
        try:
            return self._query(conn, sql, params, timeout_ms)
        except OpscheckError:
            raise
        except psycopg.Error as exc:
            if expired.is_set():
                with contextlib.suppress(Exception):
                    conn.close()
                self.unreachable.fail(
                    f"{self.shown}: no answer within {self.deadline():g} s (statement_timeout {timeout_ms} ms "
                    f"+ timeout {self.timeout:g} s): the server took the query and stopped answering"
                )
            if isinstance(exc, psycopg.OperationalError) and (conn.closed or conn.broken):
                self.unreachable.fail(f"{self.shown}: connection lost: {one_line(exc, 500)}")
            raise OpscheckError(f"{self.shown}: query failed: {one_line(exc, 500)}") from None
        except BaseException:
            # pytest-timeout (or Ctrl-C) interrupted a query: the connection is mid-result and
            # would say "another command is already in progress" to the next check
            self._abandon(conn, threading.Event())
            with contextlib.suppress(Exception):
                conn.close()
            raise
        finally:
            watchdog.cancel()

    def _query(self, conn: psycopg.Connection[Any], sql: Any, params: Any, timeout_ms: int) -> list[dict]:
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout_ms)])
                rows = []
                # stream() always uses the extended protocol: a second statement is refused.
                for row in cur.stream(sql, params):
                    rows.append(row)
                    if len(rows) >= MAX_ROWS:
                        break
                return rows
        except psycopg.errors.QueryCanceled:
            raise OpscheckError(f"{self.shown}: query cancelled after statement_timeout {timeout_ms} ms") from None
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise OpscheckError(
                f"{self.shown}: refused: the query tries to write, and checks are read-only ({one_line(exc, 500)})"
            ) from None

    def scalar(self, sql: Any, params: Any = None) -> Any:
        rows = self.query(sql, params)
        if not rows:
            raise OpscheckError(f"{self.shown}: the query returned no rows")
        return next(iter(rows[0].values()))

    def rows(self, sql: Any, params: Any = None, limit: int = 5) -> tuple[int, list[dict]]:
        """(how many rows the query returned, the first `limit` of them) for failure messages."""
        found = self.query(sql, params)
        return len(found), found[:limit]

    def require_stats_visibility(self) -> None:
        """Fail unless this role sees other sessions' state and query (pg_read_all_stats).

        Without it pg_stat_activity shows other sessions' state as NULL, and every
        activity check would pass on anything.
        """
        if self._sees_all is None:
            self._sees_all = bool(
                self.scalar(
                    "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') "
                    "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
                )
            )
        if not self._sees_all:
            raise OpscheckError(
                f"{self.shown}: cannot see other sessions: grant pg_monitor to this role "
                "(GRANT pg_monitor TO opscheck); without it their state reads as NULL"
            )

    def has_extension(self, name: str) -> bool:
        return bool(self.scalar("SELECT count(*) FROM pg_extension WHERE extname = %s", [name]))

    def probe_extension(self, name: str) -> str:
        """'present', 'absent' or the connection error, for deciding what to collect.

        A probe's connection error is kept (no second attempt later) but not counted as
        shown: the first check on this target reports it as its own failure.
        """
        try:
            return "present" if self.has_extension(name) else "absent"
        except OpscheckError:
            error = self.unreachable.error
            if error is None:
                return "error"
            self.unreachable.keep(error, reported=False)
            return f"error: {error}"

    def seed_error(self, error: str) -> None:
        """Take over a connection error found elsewhere (the xdist controller's probe)."""
        self.unreachable.keep(error, reported=False)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


SECTION = list[Postgres]  # the inventory's `postgres:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the postgres family; SQL assertions carry the inventory's markers."""
    targets = inventory.postgres

    def each(condition) -> list[Param]:
        return [Param(p, p.name, p) for p in targets if condition(p)]

    return {
        "postgres": each(lambda p: True),
        "pg_statements": each(lambda p: True),  # deselected where pg_stat_statements is absent
        "pg_replication": each(lambda p: p.role),
        "pg_migrations": each(lambda p: p.migrations),
        "pg_database_size": each(lambda p: p.database_max_gb),
        "pg_table_size": each(lambda p: p.table_max_gb),
        "pg_tls": each(lambda p: p.require_tls),
        "pg_trigger": [Param(Item(p, t), f"{p.name}:{t.name}", p) for p in targets for t in p.required_triggers],
        "sql_assertion": [
            Param(Item(p, a), f"{p.name}:{a.name}", p, check_marks(a)) for p in targets for a in p.assertions
        ],
    }


# --- migrations: the head revision from the application's own folder ----------------------


def expected_heads(migrations: Migrations) -> set[str]:
    """The revision(s) the schema should be at: from the inventory, or read from the folder."""
    if migrations.expected:
        return {migrations.expected}
    folder = Path(migrations.folder or ".")
    if not folder.is_dir():
        raise OpscheckError(f"migrations folder {folder} does not exist (inventory: migrations.folder)")
    if migrations.tool == "sqlx":  # files named <version>_<name>.sql or .up.sql
        versions = [f.name.split("_", 1)[0] for f in folder.glob("*.sql") if f.name.split("_", 1)[0].isdigit()]
        if not versions:
            raise OpscheckError(f"no <version>_<name>.sql files in {folder}")
        return {max(versions, key=int)}
    revisions, parents = set(), set()
    for script in folder.rglob("*.py"):
        text = script.read_text(errors="replace")
        revision = re.search(r"^revision\s*(?::\s*\w+\s*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*(?::[^=]+)?=\s*(.+)$", text, re.M)
        if revision:
            revisions.add(revision.group(1))
            parents |= set(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1) if down else ""))
    heads = revisions - parents
    if not heads:
        raise OpscheckError(f"no Alembic revisions found in {folder}")
    return heads


def recorded_revisions(pg: PostgresClient, migrations: Migrations) -> set[str]:
    """What the database says it is at (alembic_version rows, sqlx's newest successful version)."""
    if migrations.tool == "sqlx":
        table = sql.Identifier(*(migrations.table or "_sqlx_migrations").split("."))
        query = sql.SQL("SELECT max(version)::text AS v FROM {} WHERE success").format(table)
    else:
        table = sql.Identifier(*(migrations.table or "alembic_version").split("."))
        column = sql.Identifier(migrations.column or ("version_num" if migrations.tool == "alembic" else "version"))
        query = sql.SQL("SELECT {}::text AS v FROM {}").format(column, table)
    return {row["v"] for row in pg.query(query) if row["v"] is not None}
