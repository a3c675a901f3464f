"""Small helpers that checks use to compare and to fail with a readable message."""

import re
from typing import Any

import pytest

OPERATORS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a is not None and a < b,
    "<=": lambda a, b: a is not None and a <= b,
    ">": lambda a, b: a is not None and a > b,
    ">=": lambda a, b: a is not None and a >= b,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
    "matches": lambda a, b: a is not None and re.search(str(b), str(a)) is not None,
    "exists": lambda a, b: (a is not None) == (True if b is None else bool(b)),
}


def holds(actual: Any, op: str, expected: Any) -> bool:
    """Whether `actual op expected` is true; a type mismatch counts as false, not a crash."""
    try:
        return bool(OPERATORS[op](_number(actual, expected), expected))
    except TypeError:
        return False


def _number(actual: Any, expected: Any) -> Any:
    """Compare '42' (from SQL or JSON text) with 42 as numbers."""
    if isinstance(expected, int | float) and not isinstance(expected, bool) and isinstance(actual, str):
        try:
            return float(actual)
        except ValueError:
            return actual
    if type(actual).__name__ == "Decimal":
        return float(actual)
    return actual


def expect(condition: bool, message: str) -> None:
    """Fail the check with `message` (no traceback) unless condition holds."""
    __tracebackhide__ = True
    if not condition:
        pytest.fail(message, pytrace=False)


LIST_MAX = 8


def listed(lines: list[str], limit: int = LIST_MAX) -> str:
    """The first `limit` lines joined, and how many more there are."""
    more = f"; ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


def fmt(number: float) -> str:
    """1234567 → '1,234,567'; 12.345 → '12.3'."""
    if float(number).is_integer():
        return f"{int(number):,}"
    return f"{number:,.1f}"


def growth_since_last_run(state: dict, remember, key: str, current: float) -> tuple[float, float | None]:
    """(how much a counter grew since the last run, its last reading); keeps `current` for the
    next run. A counter below its last reading was reset (a restart, pg_stat_reset), so all
    of it is new; a first run has nothing to compare with."""
    remember(key, current)
    previous = state.get(key)
    if previous is None:
        return 0, None
    return (current if current < previous else current - previous), previous
