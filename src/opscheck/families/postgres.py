"""PostgreSQL connections (psycopg 3), read-only by construction.

Every query runs in its own `BEGIN READ ONLY` transaction with `SET LOCAL
statement_timeout`, over the extended protocol (one statement per query, so
`SELECT 1; DELETE ...` is refused by the server). A session-level SET is not enough:
any user can undo it, and PgBouncer rejects startup options.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator

from opscheck.core.errors import OpscheckError, Unreachable, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import Condition, InventoryCheck, Item, Model, Name, Param, Target, check_marks
from opscheck.core.redact import mask_url

if TYPE_CHECKING:
    import psycopg
    from psycopg import rows as psycopg_rows
    from psycopg import sql
else:
    psycopg = optional("psycopg", "postgres")
    psycopg_rows = optional("psycopg.rows", "postgres")
    sql = optional("psycopg.sql", "postgres")

# Functions a read-only transaction still lets through: they act on other sessions or
# on statistics. A check never calls them (runbook lines with them are remediations).
FORBIDDEN_SQL = re.compile(
    r"\b(pg_terminate_backend|pg_cancel_backend|pg_stat_reset\w*|pg_reload_conf|pg_rotate_logfile|"
    r"pg_advisory\w*lock\w*|pg_notify|dblink\w*|lo_\w+|copy)\b",
    re.IGNORECASE,
)


PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SqlAssertion(InventoryCheck, Condition):
    """A read-only query whose first column of the first row must meet a condition.

    A `{name}` in the query is an incident-time value (`--param name=...`): it is sent as a
    query parameter, never written into the SQL, so a quote in the value stays a quote.
    """

    name: str = Name
    query: str = Field(description="one read-only statement; {name} placeholders are bound from --param (adhoc)")

    @model_validator(mode="after")
    def _no_side_effects(self):
        found = FORBIDDEN_SQL.search(self.query)
        if found:
            raise ValueError(
                f"query calls {found.group(1)}, which acts on the server even in a "
                "read-only transaction: checks never do"
            )
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

    dsn: SecretStr = Field(description="libpq URL or key=value string; use ${VAR} for secrets")
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

    @property
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
                    )
                except psycopg.Error as exc:
                    self.unreachable.fail(f"{self.shown}: cannot connect: {one_line(exc, 500)}")
                self._conn.read_only = True
            return self._conn

    def query(self, sql: Any, params: Any = None) -> list[dict]:
        """Run one read-only statement and return its rows (at most MAX_ROWS)."""
        conn = self.connection()
        timeout_ms = self.target.statement_timeout_ms
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
        except psycopg.OperationalError as exc:
            self.unreachable.fail(f"{self.shown}: connection lost: {one_line(exc, 500)}")
        except psycopg.Error as exc:
            raise OpscheckError(f"{self.shown}: query failed: {one_line(exc, 500)}") from None

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
