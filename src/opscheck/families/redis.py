"""Redis connections (redis-py), limited to read-only commands."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError
from opscheck.core.lazy import optional
from opscheck.core.model import Item, Model, Param, Target
from opscheck.core.redact import clip_line, mask_url
from opscheck.core.values import LocalFile, RedisUrl

if TYPE_CHECKING:
    import redis
    from redis import backoff as redis_backoff
    from redis import retry as redis_retry
else:
    redis = optional("redis", "redis")
    redis_backoff = optional("redis.backoff", "redis")
    redis_retry = optional("redis.retry", "redis")


class RedisQueue(Model):
    """A queue kept in one key (list, stream, sorted set or set), with depth thresholds."""

    key: str = Field(min_length=1)
    warn: int = Field(default=10_000, ge=0, description="runbook: '> 10,000' is a warning")
    crit: int = Field(default=50_000, ge=0, description="runbook: CRITICAL_QUEUE_DEPTH 50,000")
    may_be_absent: bool = Field(
        default=False, description="an empty queue may have no key; otherwise a missing key fails (a typo)"
    )


class Redis(Target):
    """A Redis server, reached with redis-py; read-only commands only."""

    url: RedisUrl = Field(description="redis:// or rediss:// URL; use ${VAR} for the password")
    max_latency_ms: float = Field(
        default=10, gt=0, description="limit on the average PING round trip (runbook: 'If > 10ms')"
    )
    latency_samples: int = Field(default=10, ge=1, le=1000)
    memory_max_pct: float = Field(default=90, gt=0, le=100, description="of maxmemory")
    queues: list[RedisQueue] = Field(default_factory=list)
    eviction_policy: str | None = Field(default=None, description="expected maxmemory_policy, e.g. noeviction")
    clients_max_pct: float = Field(default=90, gt=0, le=100, description="connected_clients of maxclients")
    blocked_clients_max: int | None = Field(
        default=None, ge=0, description="workers blocked in BLPOP count here: set only if none should be"
    )
    persistence: Literal["rdb", "aof", "rdb+aof"] | None = Field(
        default=None, description="how the server persists; enables the last-save age check for rdb"
    )
    last_save_max_age_h: float = Field(default=48, gt=0)
    role: Literal["master", "replica"] | None = Field(default=None, description="expected replication role")
    replica_lag_max_s: float = Field(default=10, gt=0, description="master_last_io_seconds_ago on a replica")
    tls_ca_file: LocalFile | None = Field(default=None, description="CA bundle for rediss:// URLs")

    def secrets(self) -> list[str]:
        return [self.url.get_secret_value()]


READ_ONLY_COMMANDS = frozenset(
    ["PING", "INFO", "LLEN", "XLEN", "ZCARD", "SCARD", "HLEN", "TYPE", "EXISTS", "TTL", "DBSIZE"]
)
# Commands whose subcommands differ: LATENCY RESET and SLOWLOG RESET change the server's state.
READ_ONLY_SUBCOMMANDS = frozenset(
    [("LATENCY", "LATEST"), ("LATENCY", "HISTORY"), ("SLOWLOG", "GET"), ("SLOWLOG", "LEN")]
)


class RedisClient(TargetReader):
    """One connection pool per target per session; no retries (one timeout, once).

    INFO sections and the depths of all the target's queues are read once per run (the
    depths in two pipelines, however many queues) and shared by the checks.
    """

    def __init__(self, target: Redis, timeout: float):
        super().__init__()
        self.target = target
        self.timeout = timeout
        self._redis: redis.Redis | None = None
        self._deadlines: dict[int, float] = {}  # thread -> when its command must have its reply
        self._watchdog: threading.Thread | None = None
        self._cut = False  # the watchdog closed the connections: a reply ran past its deadline

    def _client(self) -> redis.Redis:
        """The connection pool, made on the first command (redis-py is imported then)."""
        with self.lock:
            if self._redis is None:
                self._redis = redis.Redis.from_url(
                    self.target.url.get_secret_value(),
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=redis_retry.Retry(redis_backoff.NoBackoff(), 0),
                    retry_on_timeout=False,
                    client_name="opscheck",
                    decode_responses=True,
                    **({"ssl_ca_certs": self.target.tls_ca_file} if self.target.tls_ca_file else {}),
                )
            return self._redis

    @functools.cached_property
    def shown(self) -> str:
        return f'redis "{self.target.name}" ({mask_url(self.target.url.get_secret_value())})'

    def _allowed(self, args: tuple) -> str:
        name = str(args[0]).upper()
        sub = str(args[1]).upper() if len(args) > 1 else ""
        if name not in READ_ONLY_COMMANDS and (name, sub) not in READ_ONLY_SUBCOMMANDS:
            raise OpscheckError(f"{self.shown}: {f'{name} {sub}'.strip()} is not a read-only command")
        return name

    def command(self, *args: Any) -> Any:
        """Run one read-only command; anything else is refused before it leaves the client."""
        return self.pipeline([args])[0]

    def pipeline(self, calls: list[tuple]) -> list[Any]:
        """Run read-only commands in one round trip (not a transaction); a failed one raises."""
        names = [self._allowed(args) for args in calls]
        with self.lock:
            self.unreachable.check()
        try:
            with self._within_deadline():
                if len(calls) == 1:
                    results = [self._client().execute_command(*calls[0])]
                else:
                    pipe = self._client().pipeline(transaction=False)
                    for args in calls:
                        pipe.execute_command(*args)
                    results = pipe.execute(raise_on_error=False)
        except redis.AuthenticationError as exc:  # a subclass of ConnectionError: first
            with self.lock:
                self.unreachable.fail(f"{self.shown}: authentication failed: {exc}")
        except redis.TimeoutError as exc:
            with self.lock:  # connected (or not) but no answer: a frozen server is not a refused one
                if self._cut:
                    self.unreachable.fail(
                        f"{self.shown}: no complete reply within {2 * self.timeout:g} s (it keeps sending)"
                    )
                if "connect" in str(exc).lower():
                    self.unreachable.fail(f"{self.shown}: cannot connect: connect timed out after {self.timeout:g} s")
                self.unreachable.fail(
                    f"{self.shown}: not answering: no reply within {self.timeout:g} s (it accepted the connection)"
                )
        except redis.ConnectionError as exc:
            with self.lock:
                self.unreachable.fail(f"{self.shown}: cannot connect: {exc}")
        except redis.ResponseError as exc:
            raise OpscheckError(f"{self.shown}: {names[0]} failed: {exc}") from None
        except (redis.RedisError, UnicodeDecodeError) as exc:  # InvalidResponse, a reply that is not UTF-8 ...
            with self.lock:  # something answered, but not as a Redis server does
                self.unreachable.fail(f"{self.shown}: not a Redis reply ({type(exc).__name__}): {clip_line(exc, 200)}")
        for name, result in zip(names, results, strict=True):
            if isinstance(result, redis.ResponseError):
                raise OpscheckError(f"{self.shown}: {name} failed: {result}")
        return results

    @contextlib.contextmanager
    def _within_deadline(self) -> Iterator[None]:
        """A reply within twice the timeout, however it arrives: redis-py's timeout is per
        read, so a reply that never ends (a byte a second) would never time out. A watchdog
        closes the target's connections when a command runs past its deadline."""
        me = threading.get_ident()
        self._ensure_watchdog()
        with self.lock:
            self._deadlines[me] = time.monotonic() + 2 * self.timeout
        try:
            yield
        except Exception as exc:
            if self._cut:  # the watchdog closed the connection under this command (whatever redis-py raised)
                raise redis.TimeoutError("reply not complete in time") from exc
            raise
        finally:
            with self.lock:
                self._deadlines.pop(me, None)

    def _ensure_watchdog(self) -> None:
        with self.lock:
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="opscheck-redis-deadline", daemon=True)
                self._watchdog.start()

    def _watch(self) -> None:
        """Every quarter of the timeout: cut a command past its deadline. It ends after 5 s
        with nothing to watch (the next command starts another)."""
        idle_since = time.monotonic()
        while True:
            time.sleep(min(0.25, self.timeout / 4))
            now = time.monotonic()
            with self.lock:
                if self._deadlines:
                    idle_since = now
                elif now - idle_since > 5:
                    self._watchdog = None
                    return
                overdue = bool(self._deadlines) and min(self._deadlines.values()) < now
                if overdue:
                    self._cut = True
            if overdue and self._redis is not None:
                self._redis.connection_pool.disconnect(inuse_connections=True)

    def info(self, section: str = "all") -> dict:
        """An INFO section, read once per run."""
        return self.once(("info", section), lambda: self.command("INFO", section))

    def depth(self, key: str) -> tuple[str, int]:
        """(type, number of entries) of a queue key; type 'none' when the key does not exist."""
        kind, count = self.once("depths", self._depths).get(key) or self._depth(key)
        if kind not in ("none", *COUNTERS):
            raise OpscheckError(f"{self.shown}: key {key} is a {kind}, not a queue (list, stream, zset, set)")
        return kind, count

    def _depths(self) -> dict[str, tuple[str, int]]:
        """Every queue of the target: TYPE in one pipeline, then the counts in another."""
        keys = [q.key for q in self.target.queues]
        if not keys:
            return {}
        kinds = self.pipeline([("TYPE", key) for key in keys])
        counted = [(key, kind) for key, kind in zip(keys, kinds, strict=True) if kind in COUNTERS]
        counts = self.pipeline([(COUNTERS[kind], key) for key, kind in counted]) if counted else []
        found = {key: (kind, 0) for key, kind in zip(keys, kinds, strict=True)}
        found.update({key: (kind, int(n)) for (key, kind), n in zip(counted, counts, strict=True)})
        return found

    def _depth(self, key: str) -> tuple[str, int]:
        kind = self.command("TYPE", key)
        return (kind, int(self.command(COUNTERS[kind], key))) if kind in COUNTERS else (kind, 0)

    def ping_ms(self) -> float:
        self._ensure_watchdog()  # started before the clock: a sample times the round trip alone
        start = time.perf_counter()
        self.command("PING")
        return (time.perf_counter() - start) * 1000

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


COUNTERS = {"list": "LLEN", "stream": "XLEN", "zset": "ZCARD", "set": "SCARD", "hash": "HLEN"}


SECTION = list[Redis]  # the inventory's `redis:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the redis family."""
    targets = inventory.redis
    return {
        "redis": [Param(r, r.name, r) for r in targets],
        "redis_queue": [Param(Item(r, q), f"{r.name}:{q.key}", r) for r in targets for q in r.queues],
        "redis_rdb": [Param(r, r.name, r) for r in targets if r.persistence in ("rdb", "rdb+aof")],
        "redis_replication": [Param(r, r.name, r) for r in targets if r.role],
        "redis_blocked_limit": [Param(r, r.name, r) for r in targets if r.blocked_clients_max is not None],
        "redis_eviction_policy": [Param(r, r.name, r) for r in targets if r.eviction_policy],
    }
