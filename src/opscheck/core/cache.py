"""Read once, share with every check: the value, or the error that blocks.

Every family reads its target once per run and lets each check judge what was read. Two
pieces carry that: `Memo` keeps each read's value or explained failure per key, and
`TargetReader` adds the target's first connection error (errors.Unreachable), so one
dead target costs one timeout, once, and later checks say "blocked: <first error>".
"""

import copy
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import pytest

from opscheck.core.errors import OpscheckError, TargetUnreachable, Unreachable, blocked, early
from opscheck.core.model import INVENTORY_KEY

T = TypeVar("T")


class _Entry:
    __slots__ = ("lock", "done", "value", "error", "unshown")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.value: Any = None
        self.error: OpscheckError | None = None
        self.unshown = False  # the error was met while gathering: no check has shown it yet


class Memo:
    """Per key: read once, then hand every caller the value or re-raise the failure.

    Readers of one key wait for the first; readers of other keys do not. The first reader
    sees a failure as it was raised; later readers of a connection error (TargetUnreachable)
    see "blocked: <that error>", so one outage reads as one cause.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
        with entry.lock:
            if not entry.done:
                try:
                    entry.value = read()
                except OpscheckError as exc:
                    entry.error = exc
                    entry.unshown = early()
                    raise
                finally:
                    entry.done = True
            first = entry.unshown and not early()
            if first:
                entry.unshown = False
        if entry.error is not None:
            if first:
                raise copy.copy(entry.error) from None
            if isinstance(entry.error, TargetUnreachable):
                raise TargetUnreachable(blocked(str(entry.error))) from None
            raise copy.copy(entry.error) from None  # a fresh traceback per check
        return entry.value

    def done(self, key: Hashable) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.done


class TargetReader:
    """Base of a family's client: `once(key, read)` under the target's Unreachable."""

    def __init__(self) -> None:
        self.unreachable = Unreachable()
        self.memo = Memo()
        self.lock = threading.RLock()

    def once(self, key: Hashable, read: Callable[[], T]) -> T:
        def guarded() -> T:
            with self.lock:
                self.unreachable.check()
            return read()

        self.unreachable.check()
        try:
            return self.memo.get(key, guarded)
        except TargetUnreachable:
            self.unreachable.shown()  # shown now, by this check: the next one says "blocked"
            raise


class ClientCache(Generic[T]):
    """Clients per target, created on first use and closed at the end of the session."""

    def __init__(self, factory: Callable[[Any], T]):
        self.factory = factory
        self.clients: dict[str, T] = {}
        self.lock = threading.Lock()

    def get(self, target: Any) -> T:
        with self.lock:
            if target.name not in self.clients:
                self.clients[target.name] = self.factory(target)
            return self.clients[target.name]

    def close(self) -> None:
        for client in self.clients.values():
            close = getattr(client, "close", None)
            if close:
                close()


def stashed_clients(config: Any, family: str, make: Callable[[Any, Any], T]) -> ClientCache[T]:
    """The run's clients of one family, kept in config.stash: the gather phase, the fixtures
    and other families (logs reads through docker's engines) share them. `make(inventory,
    target)` builds one client; the first caller's `make` is the one used."""
    key = _STASH_KEYS.setdefault(family, pytest.StashKey[ClientCache]())
    with _STASH_LOCK:
        if key not in config.stash:
            inventory = config.stash[INVENTORY_KEY]
            config.stash[key] = ClientCache(lambda target: make(inventory, target))
    return config.stash[key]


_STASH_KEYS: dict[str, pytest.StashKey] = {}
_STASH_LOCK = threading.Lock()
