"""PgBouncer's admin console (SHOW POOLS / STATS / DATABASES / LISTS / CONFIG), read-only.

The console speaks only the simple query protocol, accepts no transactions, and its
column sets change between versions: rows are read by column name, never by position.
Connect as a `stats_users` account: it may run SHOW commands and nothing else.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import Param, Target
from opscheck.core.redact import mask_url
from opscheck.core.values import PostgresDsn

if TYPE_CHECKING:
    import psycopg
    from psycopg import rows as psycopg_rows
else:
    psycopg = optional("psycopg", "postgres")
    psycopg_rows = optional("psycopg.rows", "postgres")

SHOW_COMMANDS = frozenset(["POOLS", "STATS", "DATABASES", "LISTS", "CONFIG", "VERSION", "CLIENTS", "SERVERS"])


class Pgbouncer(Target):
    """A PgBouncer, reached on its admin console database `pgbouncer`."""

    dsn: PostgresDsn = Field(description="postgresql://STATS_USER:${PASSWORD}@host:6432/pgbouncer")
    databases: list[str] | None = Field(default=None, description="pools to judge (default: all but pgbouncer)")
    clients_waiting_max: int = Field(default=0, ge=0, description="cl_waiting per pool (catalog: 0)")
    maxwait_warn_s: float = Field(default=1, gt=0)
    maxwait_crit_s: float = Field(default=15, gt=0)
    server_pool_warn_pct: float = Field(default=80, gt=0, le=100)
    server_pool_crit_pct: float = Field(default=90, gt=0, le=100)
    client_connections_max_pct: float = Field(default=90, gt=0, le=100, description="of max_client_conn")

    def secrets(self) -> list[str]:
        return [self.dsn.get_secret_value()]

    @model_validator(mode="after")
    def _warn_below_crit(self):
        if self.maxwait_warn_s > self.maxwait_crit_s or self.server_pool_warn_pct > self.server_pool_crit_pct:
            raise ValueError("warning thresholds must not be above critical ones")
        return self


class PgbouncerClient(TargetReader):
    """One console connection per target per session; SHOW results cached for the session."""

    def __init__(self, target: Pgbouncer, timeout: float):
        super().__init__()
        self.target = target
        self.timeout = timeout
        self._conn: psycopg.Connection[Any] | None = None

    @functools.cached_property
    def shown(self) -> str:
        return f'pgbouncer "{self.target.name}" ({mask_url(self.target.dsn.get_secret_value())})'

    def show(self, what: str) -> list[dict]:
        """SHOW <what> on the console, as rows keyed by column name (once per session)."""
        what = what.upper()
        if what not in SHOW_COMMANDS:
            raise OpscheckError(f"{self.shown}: SHOW {what} is not allowed")
        return self.once(what, lambda: self._fetch(what))

    def _fetch(self, what: str) -> list[dict]:
        with self.lock:  # one console connection: one command at a time
            return self._show(what)

    def _show(self, what: str) -> list[dict]:
        try:
            if self._conn is None:
                # autocommit: the console refuses BEGIN, so no read-only transaction here;
                # a stats_users account can run SHOW and nothing else.
                self._conn = psycopg.connect(
                    self.target.dsn.get_secret_value(),
                    autocommit=True,
                    connect_timeout=max(1, round(self.timeout)),
                    row_factory=psycopg_rows.dict_row,
                    tcp_user_timeout=int(self.timeout * 1000) + 5000,
                )
            with self._conn.cursor() as cur:
                cur.execute(f"SHOW {what}")
                return cur.fetchall()
        except psycopg.OperationalError as exc:
            self.unreachable.fail(f"{self.shown}: cannot connect: {one_line(exc)}")
        except psycopg.Error as exc:
            raise OpscheckError(f"{self.shown}: SHOW {what} failed: {one_line(exc, 300)}") from None

    def pools(self) -> list[dict]:
        """The pools the inventory asks about (all client pools by default)."""
        wanted = self.target.databases
        return [p for p in self.show("POOLS") if (p["database"] in wanted if wanted else p["database"] != "pgbouncer")]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


SECTION = list[Pgbouncer]  # the inventory's `pgbouncer:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the pgbouncer family."""
    return {"pgbouncer": [Param(p, p.name, p) for p in inventory.pgbouncer]}
