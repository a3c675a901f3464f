"""Logs family: forbidden signatures, required lines, error rates, over bounded log windows.

Container logs are read with both streams (the runbooks' `docker logs NAME | grep` misses
stderr without 2>&1) and patterns are Python regular expressions (the runbook's
`grep -E "CreateTask\\|ExecuteTask"` matches nothing: under -E, `\\|` is a literal bar).
"""

from datetime import UTC, datetime

import pytest

from opscheck.core.checking import expect, fmt, listed
from opscheck.core.redact import clip
from opscheck.core.times import parse_duration, parse_time
from opscheck.families.logs import expected_times, fill, follow, line_time, on_time, share

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
    match = pattern.matcher(incident_params)
    matches = [line for line in log_window.select(start) if match(line)]
    shown = f"last: {_last(matches, source.shown_matches)}" if pattern.show_lines else "lines not shown"
    expect(
        len(matches) <= pattern.max,
        f"{source.shown}: {fmt(len(matches))} line(s) matching {match} "
        f"{_window_text(log_window, start)} > limit {pattern.max}; {shown}" + log_window.suffix(),
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
    match = pattern.matcher(incident_params)
    found = sum(1 for line in log_window.select(start) if match(line))
    expect(
        found >= pattern.min,
        f"{source.shown}: {found} line(s) matching {match} {_window_text(log_window, start)}, "
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
    match = rate.matcher()
    matches = [line for line in log_window.select(start) if match(line)]
    hours = max(1.0, ((_now() - start).total_seconds() / 3600) if start else 1.0)
    per_hour = len(matches) / hours
    expect(
        per_hour <= rate.max_per_hour,
        f"{source.shown}: {fmt(per_hour)} error line(s) per hour ({len(matches)} matching {match} "
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


def _start(source, entry, log_reader, log_window):
    """Where a check's part of the window begins (None: a file's new lines, all of them)."""
    return log_reader.start_of(entry.window_kind(), window_started(log_window)) if not source.file else None


def _stamped(when, text: str) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S} UTC {clip(text.strip(), 200)}" if when else clip(text.strip(), 200)


@pytest.mark.runbook(
    'A line that must be followed by another was not (runbook: CreateTask, then "✅ ... completed '
    'successfully" within 60 s; "Circuit breaker OPEN", then "transitioned to HALF_OPEN" after its '
    "60 s timeout). The failure lists the lines left alone with their times: read around them with "
    "`docker logs --since TIME --until TIME+5m NAME 2>&1`. A task that never completes points at the "
    "operator or a failing dependency; a breaker that stays open at the trigger's target."
)
def test_log_sequence_completed(log_sequence, read_log, log_reader, incident_params):
    log_window = read_log()
    source, sequence = log_sequence.target, log_sequence.value
    start = _start(source, sequence, log_reader, log_window)
    first, then = sequence.first.matcher(incident_params), sequence.then.matcher(incident_params)
    found = follow(
        log_window.entries(start),
        first,
        then,
        parse_duration(sequence.within),
        _now(),
        sequence.key,
        source.shown_matches,
    )
    expect(
        not found.untimed,
        f"{source.shown}: {found.untimed} line(s) matching {first} carry no time, so whether they were "
        f"followed cannot be judged (times come from Docker or journald, a leading RFC 3339 time, or a "
        f"JSON ts/time/timestamp field)" + log_window.suffix(),
    )
    paired = f" with the same {sequence.key}" if sequence.key else ""
    expect(
        not found.count,
        f"{source.shown}: {found.count} of {found.firsts} line(s) matching {first} "
        f"{_window_text(log_window, start)} not followed by a line matching {then}{paired} within "
        f"{sequence.within}; last: " + " | ".join(_stamped(t, text) for t, text in found.shown) + log_window.suffix(),
    )


@pytest.mark.runbook(
    "The share of matching lines is outside its limit (runbook: caddy 5xx <= 1 % of the access-log "
    "lines; ExecuteTask completed >= 95 %). A high error share points at the upstream behind the proxy "
    "(`docker-compose logs api`), a low completion share at failing tasks: read the last matching "
    "lines shown, then the logs around them."
)
def test_log_ratio_within_limit(log_ratio, read_log, log_reader, incident_params):
    log_window = read_log()
    source, ratio = log_ratio.target, log_ratio.value
    start = _start(source, ratio, log_reader, log_window)
    part = ratio.matching.matcher(incident_params)
    whole = ratio.of.matcher(incident_params) if ratio.of else None
    found = share(log_window.entries(start), part, whole, source.shown_matches)
    where = _window_text(log_window, start)
    whole_text = f"line(s) matching {whole}" if whole else "line(s)"
    expect(
        found.whole >= ratio.min_total,
        f"{source.shown}: {found.whole} {whole_text} {where}, fewer than min_total {ratio.min_total}: "
        "no share to judge" + log_window.suffix(),
    )
    measured = (
        f"{source.shown}: {fmt(found.pct)} % of {fmt(found.whole)} {whole_text} {where} match {part} "
        f"({fmt(found.part)})"
    )
    if ratio.max_pct is not None:
        expect(
            found.pct <= ratio.max_pct,
            f"{measured} > limit {ratio.max_pct:g} %; last: {_last(list(found.shown), source.shown_matches)}"
            + log_window.suffix(),
        )
    else:
        expect(found.pct >= ratio.min_pct, f"{measured} < minimum {ratio.min_pct:g} %" + log_window.suffix())


@pytest.mark.runbook(
    'A scheduled run left no line at its expected time (runbook: "Cron-triggered workflows not running '
    "at expected times\"). Is the scheduler alive (scheduler/cron lines in the aggregator's log), is the "
    "operator connected to the aggregator on :2206, and are the workflow's cron string and startAt what "
    "was intended (`yarn start --avs-target=base examineWorkflow WORKFLOW_ID`)?"
)
def test_log_lines_at_expected_times(log_expected_at, read_log, log_reader, incident_params):
    log_window = read_log()
    source, entry = log_expected_at.target, log_expected_at.value
    cron = fill(entry.cron, incident_params)
    tolerance = parse_duration(entry.tolerance)
    now = _now()
    begin = log_reader.start_of(entry.window_kind(), window_started(log_window))
    if entry.not_before:
        text = fill(entry.not_before, incident_params)
        try:
            not_before = parse_time(text)
        except ValueError:
            not_before = None
        expect(not_before is not None, f"{source.shown}: not_before {text!r} is not an RFC 3339 time")
        begin = max(begin, not_before)
    if source.file or log_window.truncated:  # the lines before the first one read are not in this window
        first = next((line_time(ts, text) for ts, text in log_window.lines), None)
        begin = max(begin, first) if first else begin
    expected = expected_times(cron, entry.timezone, begin, now - tolerance)
    match = entry.matching.matcher(incident_params)
    found = on_time(log_window.entries(None), match, expected, tolerance)
    last = f"{found.last_seen:%Y-%m-%d %H:%M:%S} UTC" if found.last_seen else "none"
    expect(
        not found.missed,
        f"{source.shown}: {len(found.missed)} of {len(expected)} expected time(s) of cron {cron!r} "
        f"({entry.timezone}) since {begin:%Y-%m-%d %H:%M:%S} UTC without a line matching {match} within "
        f"{entry.tolerance}: "
        + listed([f"{t:%Y-%m-%d %H:%M} UTC" for t in found.missed])
        + f"; {found.matching} matching line(s), the last at {last}"
        + (f", {found.untimed} without a time" if found.untimed else "")
        + log_window.suffix(),
    )


def window_started(window):
    return window.started_at


def _now():
    return datetime.now(UTC)
