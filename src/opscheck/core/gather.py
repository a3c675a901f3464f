"""Gathering: every selected target's shared reads, started at once right after collection.

A check judges what its target's client has read; clients read through
`TargetReader.once`, so a gathered read is only an early call of the same method. The plugin
asks every family (the `pytest_opscheck_gather` hook, implemented in fixtures/<stem>.py)
for the read jobs of its selected targets and runs them on one bounded pool. A check whose
data is not ready yet waits on its own read (the Memo entry's lock), not on other targets';
a dead target costs its one timeout, in parallel with every other target.

An error met while gathering is kept, not shown: the first check that reads it reports it
as its own failure, the later ones say "blocked: <it>" (errors.reading_early).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest

from opscheck.core.errors import reading_early

DEFAULT_WORKERS = 32


class LoggerTable(dict):
    """logging's table of named loggers, whose views are copies (one C call, atomic under the
    GIL). pytest's log capture walks the table's values on the main thread as every check
    phase starts, while a gather thread's import (requests, redis, botocore) or redis-py's
    connect adds loggers to it: "dictionary changed size during iteration" failed a healthy
    check in CI (tests/test_gather_order.py reproduces it)."""

    def values(self):
        return list(super().values())

    def keys(self):
        return list(super().keys())

    def items(self):
        return list(super().items())


def guard_logger_table() -> None:
    """Swap logging's table for a LoggerTable: before the gather's threads start."""
    manager = logging.Logger.manager
    if not isinstance(manager.loggerDict, LoggerTable):
        manager.loggerDict = LoggerTable(manager.loggerDict)


@dataclass(frozen=True)
class Job:
    """One shared read of one target: `read()` is what a check would call first."""

    target: Any
    read: Callable[[], object]
    what: str = ""


def client_jobs(cache: Any, targets: Iterable[Any], what: str = "gather") -> list[Job]:
    """A job per target that calls its client's `gather()` (the client is made in the job)."""
    return [Job(t, functools.partial(_gather, cache, t), what) for t in targets]


def _gather(cache: Any, target: Any) -> object:
    return cache.get(target).gather()


@dataclass
class Selection:
    """The run's final selection, by family: which targets, and which checks on each.

    Targets are keyed by identity (an inventory's targets are unique objects, and a
    pydantic model holding lists is not hashable).
    """

    checks: dict[str, dict[int, tuple[Any, set[str]]]] = field(default_factory=dict)  # stem -> id -> (target, names)

    def add(self, stem: str, target: Any, check: str) -> None:
        self.checks.setdefault(stem, {}).setdefault(id(target), (target, set()))[1].add(check)

    def targets(self, stem: str) -> list[Any]:
        """The targets of a family that have a selected check, in the order of the checks."""
        return [target for target, _ in self.checks.get(stem, {}).values()]

    def names(self, stem: str, target: Any) -> set[str]:
        """The selected checks of a target."""
        return self.checks.get(stem, {}).get(id(target), (None, set()))[1]

    def wants(self, stem: str, target: Any, *names: str) -> bool:
        """Whether any of these checks is selected on the target (a read only they need)."""
        _, chosen = self.checks.get(stem, {}).get(id(target), (None, set()))
        return any(name in chosen for name in names)

    def __bool__(self) -> bool:
        return bool(self.checks)


class GatherSpec:
    """The hook each family's fixture module implements (registered by the plugin)."""

    @pytest.hookspec
    def pytest_opscheck_gather(self, config: pytest.Config, selection: Selection) -> list[Job] | None:
        """The read jobs of this family's selected targets (clients from config.stash)."""


class DaemonPool:
    """ThreadPoolExecutor's submit and shutdown, on daemon threads: a read still running when
    the session ends (a server that keeps sending) does not hold the process, as the
    executor's workers would (they are joined at interpreter exit, cancel or not)."""

    def __init__(self, workers: int, name: str):
        self.workers, self.name = workers, name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.put((future, fn, args))
            if len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - kept in the future, as the executor does
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self) -> None:
        """Cancel what has not started; the workers end once their job does."""
        with self._lock:
            self._closed = True
            threads = len(self._threads)
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in range(threads):
            self._jobs.put(None)


class Gatherer:
    """One bounded pool for the run's gather jobs; each job runs once."""

    def __init__(self, workers: int = DEFAULT_WORKERS):
        self.workers = max(1, workers)
        self._pool: DaemonPool | None = None
        self._lock = threading.Lock()
        self.futures: dict[int, list[Future]] = {}  # id(target) -> its jobs' futures
        self.spans: dict[int, list] = {}  # id(target) -> [target, first start, last end]

    def start(self, jobs: Iterable[Job], since: float | None = None) -> int:
        """Submit jobs; returns how many. A target's first job leads: the others follow once it
        is done, so a dead target is tried once (they then fail at once, "blocked"). A target's
        reads count as started `since` (the monotonic clock; default now)."""
        by_target: dict[int, list[Job]] = {}
        for job in jobs:
            by_target.setdefault(id(job.target), []).append(job)
        with self._lock:
            if self._pool is None and by_target:
                self._pool = DaemonPool(self.workers, "opscheck-gather")
            for lead, *rest in by_target.values():
                self._submit(lead, rest, since)
        return sum(len(group) for group in by_target.values())

    def _submit(self, job: Job, followers: list[Job], since: float | None = None) -> None:
        assert self._pool is not None
        future = self._pool.submit(self._lead, job, followers)
        self.futures.setdefault(id(job.target), []).append(future)
        self.spans.setdefault(id(job.target), [job.target, since or time.monotonic(), None])

    def _lead(self, job: Job, followers: list[Job]) -> None:
        _run(job)
        with self._lock:  # before this future is done: a waiter then sees the followers too
            span = self.spans[id(job.target)]
            span[2] = max(span[2] or 0.0, time.monotonic())
            for follower in followers:
                try:
                    self._submit(follower, [])
                except RuntimeError:  # the pool was shut down: the session is over
                    return

    def deadline(self, target: Any, seconds: float) -> float:
        """`seconds` after the target's reads started (the monotonic clock)."""
        with self._lock:
            span = self.spans.get(id(target))
        return (span[1] if span else time.monotonic()) + seconds

    def wait(self, target: Any, seconds: float) -> bool:
        """Wait until the target's jobs are done, at most until `seconds` after they started;
        False if they are not."""
        self.wait_any([target], self.deadline(target, seconds))
        return self.done(target)

    def done(self, target: Any) -> bool:
        """Whether the target's jobs are done (without waiting)."""
        with self._lock:
            return all(f.done() for f in self.futures.get(id(target), []))

    def wait_any(self, targets: list[Any], deadline: float) -> None:
        """Wait until one of the targets' jobs are all done, at most until `deadline`."""
        while True:
            with self._lock:
                pending = [[f for f in self.futures.get(id(t), []) if not f.done()] for t in targets]
            remaining = deadline - time.monotonic()
            if not all(pending) or remaining <= 0:
                return
            concurrent.futures.wait([f for fs in pending for f in fs], timeout=remaining, return_when="FIRST_COMPLETED")

    def slowest(self) -> tuple[Any, float, float] | None:
        """(slowest target, its gather seconds, all targets' gather seconds), once all are done."""
        with self._lock:
            done = [(t, end - start, start, end) for t, start, end in self.spans.values() if end is not None]
        if not done:
            return None
        target, seconds, _, _ = max(done, key=lambda d: d[1])
        return target, seconds, max(d[3] for d in done) - min(d[2] for d in done)

    def close(self) -> None:
        """Stop at the end of the session: a hung read must not hold the process."""
        if self._pool is not None:
            self._pool.shutdown()


def _run(job: Job) -> None:
    """Run a job; whatever it meets stays in the client (its Memo) for the checks."""
    with reading_early(), contextlib.suppress(Exception):  # the check that reads it reports it
        job.read()


def reads(target: Any, *calls: Callable[[], object], what: str = "") -> Job:
    """One job that makes several reads of a target in turn (each error stays in its client:
    after a connection error the later reads fail at once, "blocked")."""

    def run() -> None:
        for call in calls:
            try:
                call()
            except Exception:  # noqa: BLE001, S112 - kept for the check that reads it
                continue

    return Job(target, run, what)
