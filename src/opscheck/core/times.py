"""Times, durations and periods: one parser each, shared by every family.

- `parse_time`: RFC 3339 / ISO 8601 as Docker, Prometheus, Alertmanager and the record files
  write them (nanoseconds, `Z`, offsets; Go's zero time means "never"); no zone means UTC.
- `parse_duration`: `500ms`, `15s`, `1m30s`, `1h`, `7d`, `2w` (Prometheus' units); an
  unknown unit is an error, never silently seconds. `Duration` is the pydantic field type.
- `PERIODS`: how old a daily, weekly or monthly result may be (26 h, 8 days, 32 days).
"""

import re
import shlex
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator

PERIODS = {
    "smoke": timedelta(hours=26),
    "daily": timedelta(hours=26),
    "weekly": timedelta(days=8),
    "monthly": timedelta(days=32),
}

_FRACTION = re.compile(r"(\.\d{1,6})\d*")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time (None for empty text or Go's zero time); ValueError if malformed."""
    if not text or text.startswith("0001-01-01"):
        return None
    text = _FRACTION.sub(r"\1", text.strip().replace("Z", "+00:00").replace("z", "+00:00"), count=1)
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """'1m30s' -> 90 s. A bare number is seconds; anything else is a ValueError."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return timedelta(seconds=float(text))
    if not text or _DURATION.sub("", text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 7d; units {', '.join(UNITS)})")
    return timedelta(seconds=sum(float(n) * UNITS[unit] for n, unit in _DURATION.findall(text)))


def duration_seconds(text: str) -> float:
    """'1m30s' -> 90.0 (Prometheus' scrape and evaluation intervals)."""
    return parse_duration(text).total_seconds()


def _valid_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_valid_duration)]
"""An inventory field holding a duration such as `30m` (validated where it is declared)."""


def last_run(state: dict) -> datetime | None:
    """When the previous completed run started (state.json), or None on a first run."""
    try:
        found = parse_time(state.get("last_run"))
    except (ValueError, TypeError, AttributeError):  # a damaged state.json: a number, a list ...
        return None
    return found if found is None or found <= datetime.now(UTC) else None  # a wrong clock's future


def since_last_run(state: dict) -> datetime:
    """The start of a window "since the last run": the last run, else one hour ago."""
    return last_run(state) or datetime.now(UTC) - timedelta(hours=1)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """'42 s ago', '3.5 h ago', 'never'."""
    if when is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def bounded_shell(script: str, seconds: float) -> list[str]:
    """`sh -c script` under coreutils' `timeout` where the container has it (busybox and
    distroless images may not): a read-only script run inside a container ends on its own."""
    quoted = shlex.quote(script)
    limit = max(1, round(seconds))
    return [
        "sh",
        "-c",
        f"if command -v timeout >/dev/null 2>&1; then exec timeout {limit} sh -c {quoted}; "
        f"else exec sh -c {quoted}; fi",
    ]
