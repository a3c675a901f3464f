"""Logs family: forbidden signatures, required lines, error rates, over bounded log windows.

Container logs are read with both streams (the runbooks' `docker logs NAME | grep` misses
stderr without 2>&1) and patterns are Python regular expressions (the runbook's
`grep -E "CreateTask\\|ExecuteTask"` matches nothing: under -E, `\\|` is a literal bar).
"""

from datetime import UTC, datetime

import pytest

from opscheck.core.checking import expect, fmt
from opscheck.core.redact import clip

pytestmark = [pytest.mark.logs]


def _window_text(window, start) -> str:
    if start is None:
        return window.note or "the file's new lines"
    return f"since {start:%Y-%m-%d %H:%M:%S} UTC"


def _last(lines: list[str], n: int) -> str:
    return " | ".join(clip(line.strip(), 300) for line in lines[-n:])


@pytest.mark.runbook(
    "A forbidden signature appeared in the logs (runbook: TASK_PANIC, "
    "POLLING_FALLBACK_BATCH_ABORTED, CIRCUIT_BREAKER_PERSIST_FAILED, ...). The failure shows "
    "the last matching lines; read around them with `docker logs --since ... NAME 2>&1`."
)
def test_log_forbidden_pattern_absent(log_forbidden, read_log, log_reader, incident_params):
    log_window = read_log()
    source, pattern = log_forbidden.target, log_forbidden.value
    start = log_reader.start_of(pattern.window_kind(), window_started(log_window)) if not source.file else None
    regex = pattern.regex(incident_params)
    matches = [line for line in log_window.select(start) if regex.search(line)]
    expect(
        len(matches) <= pattern.max,
        f"{source.shown}: {fmt(len(matches))} line(s) matching {regex.pattern!r} "
        f"{_window_text(log_window, start)} > limit {pattern.max}; last: {_last(matches, source.shown_matches)}"
        + log_window.suffix(),
    )


@pytest.mark.runbook(
    "A line that must appear is missing from the logs: a listener did not start (runbook: "
    "\"Listening for PostgreSQL NOTIFY events on channel 'new_event'\") or a scheduler stopped "
    "logging. The process may be hung, or the log driver drops output (`docker logs` needs "
    "json-file, local or journald)."
)
def test_log_required_pattern_present(log_required, read_log, log_reader, incident_params):
    log_window = read_log()
    source, pattern = log_required.target, log_required.value
    start = log_reader.start_of(pattern.window_kind(), window_started(log_window)) if not source.file else None
    regex = pattern.regex(incident_params)
    found = sum(1 for line in log_window.select(start) if regex.search(line))
    expect(
        found >= pattern.min,
        f"{source.shown}: {found} line(s) matching {regex.pattern!r} {_window_text(log_window, start)}, "
        f"expected at least {pattern.min}" + log_window.suffix(),
    )


@pytest.mark.runbook(
    "The logs show more errors per hour than the limit (runbook: `docker logs NAME 2>&1 | grep "
    "-i error | tail -20`). The failure shows the last matching lines; a burst after a deploy "
    "points at the release, a steady rate at a failing dependency."
)
def test_log_error_rate_below_limit(log_error_rate, read_log, log_reader):
    log_window = read_log()
    source, rate = log_error_rate.target, log_error_rate.value
    start = log_reader.start_of(rate.window_kind(), window_started(log_window)) if not source.file else None
    regex = rate.regex()
    matches = [line for line in log_window.select(start) if regex.search(line)]
    hours = max(1.0, ((_now() - start).total_seconds() / 3600) if start else 1.0)
    per_hour = len(matches) / hours
    expect(
        per_hour <= rate.max_per_hour,
        f"{source.shown}: {fmt(per_hour)} error line(s) per hour ({len(matches)} matching {rate.pattern!r} "
        f"{_window_text(log_window, start)}) > limit {rate.max_per_hour:g}/h; last: "
        f"{_last(matches, source.shown_matches)}" + log_window.suffix(),
    )


@pytest.mark.p3
@pytest.mark.daily
@pytest.mark.runbook(
    "The log window was larger than the byte cap (max_bytes) or the line cap (tail_lines): "
    "the pattern checks saw only its newest part. A container that logs this much may be in "
    "an error loop; otherwise raise max_bytes, or rotate logs (json-file max-size)."
)
def test_log_window_complete(log_source, read_log):
    log_window = read_log()
    expect(
        not log_window.truncated,
        f"{log_source.shown}: {log_window.truncated} ({fmt(log_window.bytes_read)} bytes read)",
    )


def window_started(window):
    return window.started_at


def _now():
    return datetime.now(UTC)
