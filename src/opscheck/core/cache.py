"""Read once, share with every check: the value, or the error that blocks.

Every family reads its target once per run and lets each check judge what was read. Two
pieces carry that: `Memo` keeps each read's value or explained failure per key, and
`TargetReader` adds the target's first connection error (errors.Unreachable), so one
dead target costs one timeout, once, and later checks say "blocked: <first error>".
"""

import contextlib
import copy
import hashlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from opscheck.core.errors import OpscheckError, TargetUnreachable, Unreachable, blocked, early, one_line
from opscheck.core.model import INVENTORY_KEY, running_check, target_of

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
                except Exception as exc:  # a library's surprise too: the later readers fail with it, not with None
                    unexpected = OpscheckError(f"reading failed: {type(exc).__name__}: {one_line(exc)}")
                    entry.error = exc if isinstance(exc, OpscheckError) else unexpected
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


class SelectedReads(TargetReader):
    """A client whose reads depend on which checks are selected (aws, cloudflare): `gather()`
    performs every read they need at once, and each error stays in the memo for the check that
    needs that read. A subclass says which reads a check needs (`reads`) and every check its
    section configures (`all_needs`); collection may set `needs` to the selected ones."""

    gather_workers = 8
    thread_name = "opscheck-gather"

    def __init__(self) -> None:
        super().__init__()
        self.needs: list[tuple[str, Any]] | None = None  # (argname, value) of the selected checks
        self._gathering = threading.local()  # set in gather's threads: a Denied met there is kept quiet
        self._gathered = False

    def reads(self, argname: str, value: Any) -> list[Callable[[], Any]]:
        raise NotImplementedError

    def all_needs(self) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def gather(self, needs: Iterable[tuple[str, Any]] | None = None, workers: int | None = None) -> None:
        """Perform every read the selected checks need, concurrently; keep values and errors.

        `needs` are (argname, value) pairs of the selected checks (default: what collection
        recorded in `self.needs`, else every check the target's section configures).
        """
        given = needs if needs is not None else self.needs if self.needs is not None else self.all_needs()
        pairs = list({(argname, id(value)): (argname, value) for argname, value in given}.values())  # one per row
        reads = [read for argname, value in pairs for read in self.reads(argname, value)]
        before = self.unreachable.error

        def run(read: Callable[[], Any]) -> None:
            self._gathering.active = True
            with contextlib.suppress(OpscheckError):  # kept by the memo: the check that needs it fails with it
                read()

        with self.lock:
            self._gathered = True
        with ThreadPoolExecutor(
            max_workers=workers or self.gather_workers, thread_name_prefix=self.thread_name
        ) as pool:
            list(pool.map(run, reads))
        if before is None and self.unreachable.error is not None:
            self.unreachable.keep(self.unreachable.error, reported=False)  # the first check shows it as its own

    def gather_once(self) -> None:
        """gather(), the first time only (later calls return at once)."""
        with self.lock:
            if self._gathered:
                return
            self._gathered = True
        self.gather()


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
        with self.lock:  # a gather read still running past the session's end may add one
            clients = list(self.clients.values())
        for client in clients:
            close = getattr(client, "close", None)
            if close:
                close()


def stashed_clients(config: Any, family: str, make: Callable[[Any, Any], T]) -> ClientCache[T]:
    """The run's clients of one family, kept in config.stash: the gather phase, the fixtures
    and other families (logs reads through docker's engines) share them. `make(inventory,
    target)` builds one client; the first caller's `make` is the one used."""
    key = _STASH_KEYS.get(family)
    if key is not None and key in config.stash:  # every check asks: no lock once it exists
        return config.stash[key]
    with _STASH_LOCK:
        key = _STASH_KEYS.setdefault(family, pytest.StashKey[ClientCache]())
        if key not in config.stash:
            inventory = config.stash[INVENTORY_KEY]
            config.stash[key] = cache = ClientCache(lambda target: make(inventory, target))
            # closed when the run ends: a check's fixture need not depend on a session fixture for it
            config.add_cleanup(cache.close)
    return config.stash[key]


def target_client(clients: Callable[[Any], ClientCache[T]]) -> T:
    """The client of the running check's target, from a family's `clients(config)`."""
    check = running_check()
    return clients(check.config).get(target_of(check))


_STASH_KEYS: dict[str, pytest.StashKey] = {}
_STASH_LOCK = threading.Lock()


# --- a probe made once per run, however many xdist workers need its answer ---------------


def once_across_workers(config: Any, key: str, probe: Callable[[], str], seen_error: Callable[[str], None]) -> str:
    """`probe()` once per run: under xdist the first worker probes under a file lock and the
    others read what it wrote; an "error: ..." it met is handed to `seen_error` (seeded into
    the asking worker's client), so no worker tries a dead target again."""
    folder = _workers_dir(config)
    if folder is None:
        return probe()
    from filelock import FileLock  # under xdist only

    path = folder / hashlib.sha256(key.encode()).hexdigest()[:16]
    with FileLock(f"{path}.lock", timeout=300):
        if path.exists():
            found = path.read_text()
            if found.startswith("error: "):
                seen_error(found.removeprefix("error: "))
            return found
        found = probe()
        path.write_text(found)
        return found


def forget_across_workers(config: Any) -> None:
    """At the end of a run (worker gw0 only): remove what the workers shared."""
    if getattr(config, "workerinput", {}).get("workerid") == "gw0":
        folder = _workers_dir(config)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _workers_dir(config: Any) -> Path | None:
    """Where the xdist workers of this run share probe results (None when not under xdist)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    folder = Path(tempfile.gettempdir()) / f"opscheck-{workerinput['testrunuid']}"
    folder.mkdir(exist_ok=True)
    return folder
