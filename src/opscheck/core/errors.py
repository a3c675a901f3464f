"""Exceptions that become readable check failures instead of tracebacks."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from opscheck.core.redact import clip_line

_early = threading.local()


@contextmanager
def reading_early() -> Iterator[None]:
    """Reads made ahead of the checks (the gather phase): an error they meet is kept unshown,
    so the first check that reads it reports it as its own failure, not as "blocked"."""
    _early.on = True
    try:
        yield
    finally:
        _early.on = False


def early() -> bool:
    """Whether this thread reads ahead of the checks (see reading_early)."""
    return getattr(_early, "on", False)


class OpscheckError(Exception):
    """A check failed for a reason we can explain in one message (no traceback needed)."""


class TargetUnreachable(OpscheckError):
    """The target could not be reached; later checks on it fail at once as 'blocked'."""


class MissingExtra(OpscheckError):
    """A family's client library is not installed: the message gives the pip line."""


class Unreachable:
    """A target's first connection error, kept for the session: later checks on the target
    fail at once ("blocked: <that error>") instead of paying the timeout again.

    An error found outside a check (a collection-time probe) is kept as not yet reported,
    so the first check to meet it shows it as its own failure.
    """

    def __init__(self) -> None:
        self.error: str | None = None
        self._reported = True

    def check(self) -> None:
        """Raise TargetUnreachable if the target already failed to connect."""
        if self.error is not None:
            if early():
                raise TargetUnreachable(self.error)
            reported, self._reported = self._reported, True
            raise TargetUnreachable(blocked(self.error) if reported else self.error)

    def shown(self) -> None:
        """A check has shown the error (it came to it through a read's cached failure)."""
        if not early():
            self._reported = True

    def fail(self, message: str) -> NoReturn:
        """Keep `message` as the target's connection error and raise it."""
        self.keep(message, reported=not early())
        raise TargetUnreachable(message)

    def keep(self, message: str, reported: bool = False) -> None:
        self.error, self._reported = message, reported


def blocked(message: str) -> str:
    """'blocked: <first error>', said once however many layers pass it on."""
    return message if message.startswith("blocked: ") else f"blocked: {message}"


class ConfigError(Exception):
    """The inventory (or another input file) is invalid: stops the run with exit code 4."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception's text on one line, masked (core.redact), then cut to `limit` characters."""
    return clip_line(exc, limit) or type(exc).__name__
