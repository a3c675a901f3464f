"""Log windows: container logs through the Docker SDK (stdout AND stderr), pod logs through the
Kubernetes API (every pod of a label selector or Deployment, every container), and log files on
hosts through the host transport (testinfra: local://, ssh://, docker://).

A window is read once per log source per session and bounded in bytes:
- containers: `since` alone makes the engine scan the whole json log file, so `since` is
  combined with `tail` (the engine reads the file backwards) and the stream is cut at a byte
  cap; only the newest `max_bytes` are kept. A window cut short says so in every result.
- files: read from the offset the previous run reached (same inode, not shrunk: incremental),
  else the last `max_bytes` of the file; at most `max_bytes` per run.
- pods: the API server cuts each container's log itself (sinceSeconds, limitBytes, tailLines);
  the pods come from the kubernetes family's shared pod list, matched here.

Windows: `last_run` (since the previous completed run, else the last hour), `start` (since the
container's latest start: the default for smoke patterns, e.g. after a deploy), or a duration
(`30m`, `1h`, `24h`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
from pydantic import Field, field_validator, model_validator

from opscheck.core.cache import Memo
from opscheck.core.checking import holds
from opscheck.core.errors import OpscheckError, TargetUnreachable, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import (
    Condition,
    InventoryCheck,
    Item,
    Model,
    Name,
    Param,
    Severity,
    Target,
    check_marks,
)
from opscheck.core.redact import clip
from opscheck.core.times import Duration, parse_duration, parse_time, since_last_run
from opscheck.families.docker import Container
from opscheck.families.hosts import command_seconds, run_script
from opscheck.families.kubernetes import log_pods, pods_started, read_pod_logs, valid_selector

if TYPE_CHECKING:
    import croniter
else:
    croniter = optional("croniter", "all")

START_SLACK = timedelta(seconds=2)


def _valid_window(value: str | None) -> str | None:
    if value is None or value in ("last_run", "start"):
        return value
    try:
        parse_duration(value)
    except ValueError:
        raise ValueError("window: 'last_run', 'start' or a duration like 30m, 1h, 24h") from None
    return value


def _valid_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _valid_jmespath(value: str) -> str:
    try:
        jmespath.compile(value)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression: {one_line(exc, 200)}") from None
    return value


class FieldCondition(Condition):
    """A condition on a field of a JSON log line: `level == "error"`, `active_tasks > 100`."""

    path: str = Field(description="JMESPath into the line's JSON object, e.g. level or fields.active_tasks")

    _check_path = field_validator("path")(_valid_jmespath)


class LogPattern(InventoryCheck):
    """A regular expression (Python syntax: `a|b` is alternation, no grep -E `\\|` trap),
    and/or conditions on the fields of JSON lines (`fields`), all of which must hold."""

    name: str = Name
    pattern: str = Field(default="", description="regex; with `fields`, a cheap filter before JSON parsing")
    fields: list[FieldCondition] = Field(
        default_factory=list, description="conditions on a JSON line's fields (JMESPath), e.g. level == error"
    )
    ignore_case: bool = False
    window: str | None = Field(
        default=None, description="last_run | start | 30m/1h/24h (default: start for smoke patterns, else last_run)"
    )
    severity: Severity = "p1"

    _check_pattern = field_validator("pattern")(_valid_regex)
    _check_window = field_validator("window")(_valid_window)

    @property
    def placeholders(self) -> list[str]:
        """`{trigger_id}` in a pattern: an incident-time value (`--param trigger_id=42`); makes it adhoc."""
        return PLACEHOLDER.findall(self.pattern)

    def regex(self, params: dict[str, str] | None = None) -> re.Pattern:
        """The pattern, with each {placeholder} replaced by its --param value, taken literally."""
        text = PLACEHOLDER.sub(lambda m: re.escape((params or {}).get(m.group(1), m.group(0))), self.pattern)
        return re.compile(text, re.IGNORECASE if self.ignore_case else 0)

    @model_validator(mode="after")
    def _placeholders_are_adhoc(self):
        if self.placeholders and "adhoc" not in self.schedule:
            raise ValueError(
                f"a pattern with {{{self.placeholders[0]}}} needs schedule [adhoc] "
                "(its value comes from --param at incident time)"
            )
        if not self.pattern and not self.fields:
            raise ValueError("give a pattern, or fields (conditions on JSON lines), or both")
        return self

    def window_kind(self) -> str:
        return self.window or ("start" if "smoke" in self.schedule else "last_run")

    def matcher(self, params: dict[str, str] | None = None) -> LineMatcher:
        """The pattern and the field conditions, as one test of a line."""
        return LineMatcher(self.regex(params) if self.pattern else None, self.fields)


class Forbidden(LogPattern):
    """A signature that must not appear (more than `max` times) in the window."""

    max: int = Field(default=0, ge=0, description="matches allowed in the window")
    show_lines: bool = Field(
        default=True, description="false: a failure gives the count only (lines that may hold secrets)"
    )


class Required(LogPattern):
    """A line that must appear in the window: a listener started, a scheduler is alive."""

    min: int = Field(default=1, ge=1, description="matches needed in the window")


class ErrorRate(LogPattern):
    """Lines matching an error pattern per hour over the window, under a limit."""

    name: str = Field(default="errors", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=100)
    pattern: str = "(?i)\\b(error|exception|traceback|fatal|panic)\\b"
    max_per_hour: float = Field(default=10, ge=0)
    severity: Severity = "p2"


# --- correlation: patterns judged against each other in the window ------------------------


class LineMatch(Model):
    """Which lines count: a regex (`pattern`), and/or conditions on a JSON line's fields.

    Written as a plain string, it is the pattern: `first: "CreateTask"`.
    """

    pattern: str = Field(default="", description="regex; with `fields`, a cheap filter before JSON parsing")
    ignore_case: bool = False
    fields: list[FieldCondition] = Field(default_factory=list, description="conditions on a JSON line's fields")

    _check_pattern = field_validator("pattern")(_valid_regex)

    @model_validator(mode="before")
    @classmethod
    def _string_is_a_pattern(cls, value):
        return {"pattern": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _something_to_match(self):
        if not self.pattern and not self.fields:
            raise ValueError("give a pattern, or fields (conditions on JSON lines), or both")
        return self

    @property
    def placeholders(self) -> list[str]:
        return PLACEHOLDER.findall(self.pattern)

    def matcher(self, params: dict[str, str] | None = None) -> LineMatcher:
        regex = None
        if self.pattern:
            text = PLACEHOLDER.sub(lambda m: re.escape((params or {}).get(m.group(1), m.group(0))), self.pattern)
            regex = re.compile(text, re.IGNORECASE if self.ignore_case else 0)
        return LineMatcher(regex, self.fields)


class Correlation(InventoryCheck):
    """A check that judges lines against each other (or against the clock) in a window."""

    name: str = Name
    window: str | None = Field(
        default=None, description="last_run | start | 30m/1h/24h (default: start for smoke, else last_run)"
    )
    severity: Severity = "p2"

    _check_window = field_validator("window")(_valid_window)

    def matches(self) -> list[LineMatch]:
        return []

    def texts(self) -> list[str]:
        """Inventory text that may hold {placeholders}, beside the patterns."""
        return []

    @property
    def placeholders(self) -> list[str]:
        found = [p for m in self.matches() for p in m.placeholders]
        found += [p for text in self.texts() for p in PLACEHOLDER.findall(text)]
        return list(dict.fromkeys(found))

    @model_validator(mode="after")
    def _placeholders_are_adhoc(self):
        if self.placeholders and "adhoc" not in self.schedule:
            raise ValueError(
                f"{{{self.placeholders[0]}}} needs schedule [adhoc] (its value comes from --param at incident time)"
            )
        return self

    def window_kind(self) -> str:
        return self.window or ("start" if "smoke" in self.schedule else "last_run")


class Sequence(Correlation):
    """Every line matching `first` is followed by a line matching `then` within `within`
    (a CreateTask by its "completed successfully", a circuit breaker OPEN by HALF_OPEN)."""

    first: LineMatch
    then: LineMatch
    within: Duration = Field(default="60s", description="how soon `then` must follow")
    key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$",
        description="pair lines by this value: a named group (?P<key>...) of both patterns, else a JSON field",
    )

    def matches(self) -> list[LineMatch]:
        return [self.first, self.then]


class Ratio(Correlation):
    """Lines matching `matching` as a percentage of the lines matching `of` (default: every
    line) in the window: caddy's 5xx share of access-log lines, completed over ExecuteTask."""

    matching: LineMatch
    of: LineMatch | None = Field(default=None, description="the lines counted as the whole (default: every line)")
    max_pct: float | None = Field(default=None, ge=0, le=100, description="fail above this share")
    min_pct: float | None = Field(default=None, ge=0, le=100, description="fail below this share")
    min_total: int = Field(
        default=1, ge=0, description="fewer lines than this in the whole fail: a share of nothing says nothing"
    )

    @model_validator(mode="after")
    def _one_limit(self):
        if (self.max_pct is None) == (self.min_pct is None):
            raise ValueError("give max_pct or min_pct (two limits are two checks)")
        return self

    def matches(self) -> list[LineMatch]:
        return [self.matching, *([self.of] if self.of else [])]


CRON_EXPECTED_MAX = 10_000


def _valid_cron(value: str) -> str:
    if not PLACEHOLDER.fullmatch(value) and not croniter.croniter.is_valid(value):
        raise ValueError("not a cron expression (5 fields, e.g. '*/15 * * * *'), nor a {placeholder}")
    return value


def _valid_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
    return value


class ExpectedAt(Correlation):
    """A line matching `matching` within `tolerance` after each time a cron schedule fires
    in the window (runbook: "cron-triggered workflows not running at expected times")."""

    cron: str = Field(description="cron expression, or a {placeholder} given with --param at incident time")
    matching: LineMatch
    tolerance: Duration = Field(default="5m", description="how late the line may come after each expected time")
    timezone: str = Field(default="UTC", description="the zone the schedule is written in")
    not_before: str | None = Field(
        default=None, description="RFC 3339 time or {placeholder}: no expected time before it (a workflow's startAt)"
    )

    _check_cron = field_validator("cron")(_valid_cron)
    _check_zone = field_validator("timezone")(_valid_zone)

    @field_validator("not_before")
    @classmethod
    def _valid_not_before(cls, value: str | None) -> str | None:
        if value is not None and not PLACEHOLDER.fullmatch(value):
            try:
                parse_time(value)
            except ValueError:
                raise ValueError("not_before: an RFC 3339 time or a {placeholder}") from None
        return value

    def matches(self) -> list[LineMatch]:
        return [self.matching]

    def texts(self) -> list[str]:
        return [self.cron, self.not_before or ""]


class LogSource(Target):
    """Where a log comes from: a container on a docker target, or a file on a hosts target."""

    docker: str | None = Field(default=None, description="name of a docker target (the engine)")
    container: str | None = Field(default=None, description="container name")
    service: str | None = Field(default=None, description="Compose service (of the docker target's project)")
    host: str | None = Field(default=None, description="name of a hosts target (for a log file)")
    file: str | None = Field(default=None, description="log file path on that host")
    unit: str | None = Field(default=None, description="systemd unit whose journal to read on that host")
    journal_dir: str | None = Field(
        default=None, pattern=r"^/", description="a journal directory (journalctl -D); default: the system journal"
    )
    kubernetes: str | None = Field(default=None, description="name of a kubernetes target (the cluster)")
    namespace: str | None = Field(default=None, description="the pods' namespace (with kubernetes)")
    selector: str | None = Field(default=None, description="pods matching this label selector (default: every pod)")
    deployment: str | None = Field(default=None, description="or: the pods of this Deployment")
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="bytes kept per window")
    tail_lines: int = Field(default=100_000, ge=1, description="lines asked of the engine (bounds its scan)")
    forbidden: list[Forbidden] = Field(default_factory=list)
    required: list[Required] = Field(default_factory=list)
    error_rate: ErrorRate | None = None
    sequences: list[Sequence] = Field(default_factory=list, description="A followed by B within a time")
    ratios: list[Ratio] = Field(default_factory=list, description="matches of A over matches of B, in %")
    expected_at: list[ExpectedAt] = Field(default_factory=list, description="a line after each cron time")
    shown_matches: int = Field(default=5, ge=1, le=50, description="matching lines a failure shows")

    _check_selector = field_validator("selector")(valid_selector)

    @model_validator(mode="after")
    def _one_source(self):
        is_docker = bool(self.docker and (self.container or self.service))
        is_host = bool(self.host and (self.file or self.unit))
        is_pods = bool(self.kubernetes and self.namespace)
        if is_docker + is_host + is_pods != 1 or (self.file and self.unit) or (self.selector and self.deployment):
            raise ValueError(
                "give either docker + container (or service), or host + file, or host + unit, "
                "or kubernetes + namespace (+ selector or deployment)"
            )
        names = [p.name for p in (*self.forbidden, *self.required)]
        if len(names) != len(set(names)):
            raise ValueError("duplicate pattern names")
        if is_host and any(p.window_kind() == "start" for p in (*self.forbidden, *self.required)):
            raise ValueError("window 'start' needs a container (a file or a journal has no start)")
        return self

    @model_validator(mode="after")
    def _correlations_named_once(self):
        for kind in ("sequences", "ratios", "expected_at"):
            names = [c.name for c in getattr(self, kind)]
            if len(names) != len(set(names)):
                raise ValueError(f"duplicate {kind} names")
        if self.host and any(c.window_kind() == "start" for c in correlations(self)):
            raise ValueError("window 'start' needs a container (a file or a journal has no start)")
        return self

    @property
    def shown(self) -> str:
        pods = f"deployment {self.deployment}" if self.deployment else f"pods {self.selector or '(all)'}"
        where = (
            f"{self.docker}/{self.service or self.container}"
            if self.docker
            else f"{self.kubernetes}/{self.namespace}: {pods}"
            + (f", container {self.container}" if self.container else "")
            if self.kubernetes
            else f"{self.host}:{self.file}"
            if self.file
            else f"{self.host}: journal of {self.unit}"
        )
        return f'log "{self.name}" ({where})'


# --- windows ----------------------------------------------------------------------------------


@dataclass
class Window:
    """The lines read for one log source (newest kept), with what was cut."""

    source: LogSource
    lines: deque = field(default_factory=deque)  # (timestamp or None, text)
    since: datetime | None = None  # where reading began (None: a file's offset)
    started_at: datetime | None = None  # the container's latest start
    truncated: str = ""  # why the window is incomplete ("" if complete)
    bytes_read: int = 0
    remember: dict = field(default_factory=dict)  # state for the next run (file offsets)
    note: str = ""

    def select(self, start: datetime | None) -> list[str]:
        if start is None:
            return [text for _, text in self.lines]
        return [text for ts, text in self.lines if ts is None or ts >= start]

    def entries(self, start: datetime | None) -> Iterator[tuple[datetime | None, str]]:
        """(time or None, text) of the lines from `start` on, oldest first, without a copy."""
        for ts, text in self.lines:
            if start is None or ts is None or ts >= start:
                yield ts, text

    def describe(self) -> str:
        where = f"since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else (self.note or "file")
        return f"{where}: {len(self.lines):,} lines kept, {self.bytes_read:,} bytes read" + (
            f"; truncated: {self.truncated}" if self.truncated else ""
        )

    def suffix(self) -> str:
        return f" [window truncated: {self.truncated}]" if self.truncated else ""


class Keeper:
    """Keeps the newest lines whose bytes sum to at most `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.lines: deque = deque()
        self.size = 0
        self.dropped = 0
        self.first_dropped_ts = None

    def add(self, ts, text: str) -> None:
        self.lines.append((ts, text))
        self.size += len(text) + 1
        while self.size > self.max_bytes and self.lines:
            old_ts, old = self.lines.popleft()
            self.size -= len(old) + 1
            self.dropped += 1


def container_spec(source: LogSource) -> Container:
    """The docker family's description of the container a log source reads."""
    return Container(name=source.service or source.container or "", service=source.service, container=source.container)


def split_timestamp(line: str):
    """'2026-11-25T11:31:30.107839104Z text' (docker logs --timestamps) -> (datetime, text)."""
    stamp, _, text = line.partition(" ")
    try:
        return parse_time(stamp), text
    except ValueError:
        return None, line


def _stream(api, container_id: str, since: datetime, tail: int, max_bytes: int, hard_cap: int):
    """Stream a container's log (both streams, timestamps) into a Keeper; stop at hard_cap bytes."""
    keeper, count, read, hit = Keeper(max_bytes), 0, 0, False
    pending = b""
    stream = api.logs(
        container_id, stdout=True, stderr=True, stream=True, follow=False, timestamps=True, since=since, tail=tail
    )
    try:
        for chunk in stream:
            read += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                keeper.add(*split_timestamp(raw.decode(errors="replace")))
                count += 1
            if read > hard_cap:
                hit = True
                break
        if pending and not hit:
            keeper.add(*split_timestamp(pending.decode(errors="replace")))
            count += 1
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
    return keeper, count, read, hit


PROBE_LINES = 1000


def read_container(source: LogSource, engine, since: datetime) -> Window:
    """Read a container's log window: since + tail + a byte cap, both streams.

    The engine sends a window oldest first, and `since` alone makes it scan the whole json
    file. So the newest PROBE_LINES lines are read first; if the window holds more, their
    length sizes a second request's `tail` to about max_bytes. Reading also stops at 4 x
    max_bytes whatever happens, and the Keeper holds only the newest max_bytes.
    """
    spec = container_spec(source)
    container = engine.require(spec)[0]
    window = Window(source, since=since, started_at=parse_time(container["State"].get("StartedAt", "")))
    api = engine.client()
    hard_cap = 4 * source.max_bytes  # a container with gigabytes of logs must not stall the run
    tail = min(source.tail_lines, PROBE_LINES)
    try:
        keeper, count, read, hit = _stream(api, container["Id"], since, tail, source.max_bytes, hard_cap)
        window.bytes_read = read
        if count >= tail and tail < source.tail_lines and not hit:  # the window holds more: size the tail
            tail = max(tail, min(source.tail_lines, int(source.max_bytes / (read / max(count, 1)))))
            keeper, count, read, hit = _stream(api, container["Id"], since, tail, source.max_bytes, hard_cap)
            window.bytes_read += read
    except OpscheckError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise OpscheckError(f"{source.shown}: reading logs failed: {one_line(exc, 300)}") from None
    window.lines = keeper.lines
    first = keeper.lines[0][0] if keeper.lines else None
    since_text = f", from {first:%Y-%m-%d %H:%M:%S} UTC" if first else ""
    if keeper.dropped or hit or (count >= tail and tail < source.tail_lines):
        window.truncated = (
            f"more than max_bytes {source.max_bytes:,} in the window: kept the newest "
            f"{len(keeper.lines):,} lines{since_text}"
        )
    elif count >= source.tail_lines:
        window.truncated = (
            f"the window holds more than tail_lines {source.tail_lines:,} lines: kept the newest{since_text}"
        )
    return window


FILE_READ = """f={path}
set -- $(stat -L -c '%i %s' "$f" 2>/dev/null) || true
[ -n "$1" ] || {{ echo "@@missing"; exit 0; }}
echo "@@stat $1 $2"
inode=$1; size=$2
if [ "$inode" = {inode} ] && [ "$size" -ge {offset} ] && [ $((size - {offset})) -le {max} ]; then
  echo "@@from {offset}"; tail -c +$(({offset} + 1)) "$f" | head -c $((size - {offset}))
elif [ "$inode" = {inode} ] && [ "$size" -ge {offset} ]; then
  echo "@@cut $((size - {max}))"; tail -c +$((size - {max} + 1)) "$f" | head -c {max}
elif [ "$size" -le {max} ]; then
  echo "@@from 0"; head -c "$size" "$f"
else
  echo "@@cut $((size - {max}))"; tail -c +$((size - {max} + 1)) "$f" | head -c {max}
fi
"""


def read_file(source: LogSource, host, previous: dict | None, timeout: float) -> Window:
    """Read a log file on a host incrementally: from the last run's offset, at most max_bytes."""
    previous = previous or {}
    inode, offset = str(previous.get("inode", "none")), int(previous.get("offset", 0))
    fresh = not previous
    script = FILE_READ.format(
        path=shlex.quote(source.file or ""), inode=shlex.quote(inode), offset=offset, max=source.max_bytes
    )
    try:
        result = run_script(host.spec, script, command_seconds(timeout))
    except Exception as exc:  # noqa: BLE001
        raise TargetUnreachable(
            f"{source.shown}: cannot read through host {host.name} ({host.spec}): {one_line(exc, 300)}"
        ) from None
    text = result.stdout
    if result.rc != 0 and "@@stat" not in text:
        raise OpscheckError(
            f"{source.shown}: reading the file failed (exit {result.rc}): {clip(result.stderr.strip(), 300)}"
        )
    if text.startswith("@@missing"):
        raise OpscheckError(f"{source.shown}: {source.file} does not exist on host {host.name}")
    head, _, rest = text.partition("\n")
    _, new_inode, size = head.split()
    how, _, body = rest.partition("\n")
    kind, start = how.split()
    window = Window(source)
    window.bytes_read = len(body)
    keeper = Keeper(source.max_bytes)
    lines = body.split("\n")
    if kind == "@@cut" and lines:
        lines = lines[1:]  # the first line was cut in the middle
    for line in lines:
        if line:
            keeper.add(None, line)
    window.lines = keeper.lines
    if kind == "@@cut":
        base = offset if new_inode == inode and int(size) >= offset else 0
        window.truncated = (
            f"{int(start) - base:,} bytes of {source.file} not read: kept the last max_bytes {source.max_bytes:,}"
        )
    window.note = (
        "first run: the last part of the file"
        if fresh and kind == "@@cut"
        else "first run: the whole file"
        if fresh
        else f"bytes {int(start):,}..{int(size):,} (new since the last run)"
    )
    window.remember = {"inode": new_inode, "offset": int(size)}
    return window


def read_journal(source: LogSource, host, since: datetime, timeout: float) -> Window:
    """Read a unit's journal on a host from `since`: journalctl seeks by time itself, `-n`
    bounds the lines and `tail -c` the bytes that travel back."""
    directory = f"-D {shlex.quote(source.journal_dir)} " if source.journal_dir else ""
    command = (
        f"journalctl {directory}-u {shlex.quote(source.unit or '')} --since @{int(since.timestamp())} "
        f"-n {source.tail_lines} -o short-unix --no-pager -q | tail -c {source.max_bytes}"
    )
    try:
        result = run_script(host.spec, command, command_seconds(timeout))
    except Exception as exc:  # noqa: BLE001
        raise TargetUnreachable(
            f"{source.shown}: cannot read through host {host.name} ({host.spec}): {one_line(exc, 300)}"
        ) from None
    body = result.stdout
    if result.stderr.strip() and not body.strip():
        raise OpscheckError(f"{source.shown}: journalctl failed: {clip(result.stderr.strip(), 300)}")
    window = Window(source, since=since)
    window.bytes_read = len(body)
    keeper = Keeper(source.max_bytes)
    lines = body.split("\n")
    if len(body) >= source.max_bytes and lines:
        lines = lines[1:]  # cut in the middle by tail -c
        window.truncated = f"more than max_bytes {source.max_bytes:,} in the window: kept the newest"
    for line in lines:
        stamp, _, text = line.partition(" ")
        try:
            keeper.add(datetime.fromtimestamp(float(stamp), UTC), text)
        except ValueError:
            if line.strip():
                keeper.add(None, line)
    window.lines = keeper.lines
    if len(window.lines) >= source.tail_lines and not window.truncated:
        window.truncated = f"the window holds more than tail_lines {source.tail_lines:,} lines: kept the newest"
    return window


class LogReader:
    """Reads each log source's window once per session (the widest window its patterns need)."""

    def __init__(
        self,
        inventory: Any,
        state: dict,
        engine_for: Callable[[Any], Any],
        kube_for: Callable[[Any], Any] | None = None,
    ):
        self.inventory = inventory
        self.state = state
        self.engine_for = engine_for  # docker target -> its DockerEngine (shared with the docker family)
        self.kube_for = kube_for  # kubernetes target -> its KubeClient (shared with the kubernetes family)
        self._windows = Memo()

    def start_of(self, kind: str, started_at: datetime | None) -> datetime:
        now = datetime.now(UTC)
        if kind == "start":
            # StartedAt is recorded just after the process starts: its first lines can be older
            return started_at - START_SLACK if started_at else now - timedelta(hours=1)
        if kind == "last_run":
            return since_last_run(self.state)
        return now - parse_duration(kind)

    def window(self, source: LogSource) -> Window:
        """The source's window, read once; a failure to read is every later check's failure."""
        return self._windows.get(source.name, lambda: self._read(source))

    def _read(self, source: LogSource) -> Window:
        if source.kubernetes:
            return self._read_pods(source)
        if source.docker:
            target = next((d for d in self.inventory.docker if d.name == source.docker), None)
            if target is None:
                raise OpscheckError(f"{source.shown}: no docker target named {source.docker!r} in the inventory")
            engine = self.engine_for(target)
            started_at = None
            kinds = {p.window_kind() for p in patterns(source)} or {"last_run"}
            if "start" in kinds:
                started_at = parse_time(engine.require(container_spec(source))[0]["State"].get("StartedAt", ""))
            since = min(self.start_of(k, started_at) for k in kinds)
            return read_container(source, engine, since)
        host = next((h for h in self.inventory.hosts if h.name == source.host), None)
        if host is None:
            raise OpscheckError(f"{source.shown}: no hosts target named {source.host!r} in the inventory")
        if source.unit:
            kinds = {p.window_kind() for p in patterns(source)} or {"last_run"}
            since = min(self.start_of(k, None) for k in kinds)
            return read_journal(source, host, since, self.inventory.timeout(source))
        return read_file(source, host, self.state.get(state_key(source)), self.inventory.timeout(source))

    def _read_pods(self, source: LogSource) -> Window:
        target = next((k for k in self.inventory.kubernetes if k.name == source.kubernetes), None)
        if target is None or self.kube_for is None:
            raise OpscheckError(f"{source.shown}: no kubernetes target named {source.kubernetes!r} in the inventory")
        kube = self.kube_for(target)
        pods = log_pods(kube, source.shown, source.namespace or "", source.selector, source.deployment)
        started_at = pods_started(pods)
        since = min(self.start_of(k, started_at) for k in {p.window_kind() for p in patterns(source)} or {"last_run"})
        window = Window(source, since=since, started_at=started_at)
        bodies = read_pod_logs(kube, source.shown, source, pods, since)
        keeper, lines, cut = Keeper(source.max_bytes), [], []
        for where, body, why in bodies:
            window.bytes_read += len(body)
            text = [line for line in body.decode(errors="replace").split("\n") if line]
            cut += [f"{where}: {why}"] if why else []
            lines += [(ts or since, f"{where}: {line}") for ts, line in map(split_timestamp, text)]
        for ts, line in sorted(lines, key=lambda x: x[0]):  # the pods' lines, merged by time
            keeper.add(ts, line)
        window.lines = keeper.lines
        if cut or keeper.dropped:
            kept = [f"kept the newest max_bytes {source.max_bytes:,}"] if keeper.dropped else []
            window.truncated = "; ".join(cut + kept)
        return window


# --- correlation: judging lines against each other, in one pass with bounded state --------

_JSON = json.JSONDecoder()


def json_object(text: str) -> dict | None:
    """The JSON object a log line holds (from its first `{`: a prefix such as a level is
    allowed), or None."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = _JSON.raw_decode(text, start)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
        return None
    return value if isinstance(value, dict) else None


class LineMatcher:
    """A compiled test of a line: the regex first (cheap), then the JSON field conditions."""

    def __init__(self, regex: re.Pattern | None, fields: list[FieldCondition]):
        self.regex = regex
        self.fields = [(jmespath.compile(f.path), f) for f in fields]

    def __call__(self, text: str) -> bool:
        if self.regex is not None and self.regex.search(text) is None:
            return False
        if not self.fields:
            return True
        found = json_object(text)
        return found is not None and all(holds(path.search(found), f.op, f.value) for path, f in self.fields)

    def key(self, text: str, name: str) -> str | None:
        """The value that pairs lines: the regex's named group `name`, else the JSON field."""
        if self.regex is not None and name in self.regex.groupindex:
            match = self.regex.search(text)
            return match.group(name) if match else None
        found = json_object(text)
        value = jmespath.search(name, found) if found is not None else None
        return None if value is None else str(value)

    def __str__(self) -> str:
        """'TASK_PANIC', or 'active_tasks' and active_tasks > 100, for failure messages."""
        shown = [repr(self.regex.pattern)] if self.regex is not None else []
        shown += [f"{f.path} exists" if f.op == "exists" else f"{f.path} {f.op} {f.value!r}" for _, f in self.fields]
        return " and ".join(shown)


LEADING_TIME = re.compile(r"^\s*\[?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)")
TIME_FIELDS = ("ts", "time", "timestamp", "@timestamp")


def line_time(ts: datetime | None, text: str) -> datetime | None:
    """When a line was written: the source's timestamp (Docker, journald), else a leading
    RFC 3339 time of the text, else a JSON line's ts/time/timestamp field (epoch seconds,
    milliseconds, or RFC 3339)."""
    if ts is not None:
        return ts
    match = LEADING_TIME.match(text)
    if match:
        try:
            return parse_time(match.group(1).replace(",", "."))
        except ValueError:
            pass
    found = json_object(text) if "{" in text else None
    for name in TIME_FIELDS:
        value = found.get(name) if found is not None else None
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
            if isinstance(value, str):
                return parse_time(value)
        except (ValueError, OverflowError, OSError):
            continue
    return None


@dataclass
class Unmatched:
    """What a sequence check found: the `first` lines left without their `then`."""

    firsts: int = 0
    count: int = 0
    untimed: int = 0
    pending: int = 0  # too recent to judge: their time to be followed has not run out
    shown: deque = field(default_factory=lambda: deque(maxlen=5))  # (time, text), the newest


def follow(
    entries: Iterable[tuple[datetime | None, str]],
    first: LineMatcher,
    then: LineMatcher,
    within: timedelta,
    now: datetime,
    key: str | None = None,
    shown: int = 5,
) -> Unmatched:
    """Every line matching `first` must be followed by one matching `then` within `within`
    (with `key`: one carrying the same key value). One pass; state is only the `first`
    lines still waiting, so memory is bounded by the lines within `within`, not the window."""
    result = Unmatched(shown=deque(maxlen=shown))
    waiting: deque = deque()  # [time, key, text, done], oldest first
    by_key: dict = {}  # key -> deque of the same entries

    def expire(before: datetime) -> None:
        while waiting and waiting[0][0] + within < before:
            entry = waiting.popleft()
            if key is not None:
                queue = by_key.get(entry[1])
                if queue and queue[0] is entry:
                    queue.popleft()
                    if not queue:
                        del by_key[entry[1]]
            if not entry[3]:
                result.count += 1
                result.shown.append((entry[0], entry[2]))

    for ts, text in entries:
        when = line_time(ts, text)
        if when is not None:
            expire(when)
        if then(text):
            if key is None:
                for entry in waiting:
                    entry[3] = True
            else:
                for entry in by_key.pop(then.key(text, key), ()):
                    entry[3] = True
        if first(text):
            result.firsts += 1
            if when is None:
                result.untimed += 1
                continue
            entry = [when, first.key(text, key) if key else None, text, False]
            waiting.append(entry)
            if key is not None:
                by_key.setdefault(entry[1], deque()).append(entry)
    expire(now)
    result.pending = sum(1 for entry in waiting if not entry[3])
    return result


@dataclass
class Share:
    """What a ratio check counted."""

    part: int = 0
    whole: int = 0
    shown: deque = field(default_factory=lambda: deque(maxlen=5))  # the newest `part` lines

    @property
    def pct(self) -> float:
        return 100.0 * self.part / self.whole if self.whole else 0.0


def share(entries: Iterable[tuple[Any, str]], part: LineMatcher, whole: LineMatcher | None, shown: int = 5) -> Share:
    """Lines matching `part` and lines matching `whole` (every line without one), in one pass."""
    result = Share(shown=deque(maxlen=shown))
    for _, text in entries:
        if whole is None or whole(text):
            result.whole += 1
        if part(text):
            result.part += 1
            result.shown.append(text)
    return result


def expected_times(cron: str, zone: str, begin: datetime, end: datetime) -> list[datetime]:
    """The times a cron schedule fires in (begin, end], in UTC; at most CRON_EXPECTED_MAX."""
    if not croniter.croniter.is_valid(cron):
        raise OpscheckError(f"{cron!r} is not a cron expression (5 fields, e.g. '*/15 * * * *')")
    schedule = croniter.croniter(cron, begin.astimezone(ZoneInfo(zone)))
    found: list[datetime] = []
    while True:
        when = schedule.get_next(datetime).astimezone(UTC)
        if when > end:
            return found
        found.append(when)
        if len(found) > CRON_EXPECTED_MAX:
            raise OpscheckError(
                f"cron {cron!r} fires more than {CRON_EXPECTED_MAX:,} times in the window: give a shorter window"
            )


@dataclass
class Missed:
    """What an expected-at check found."""

    expected: list[datetime]
    missed: list[datetime] = field(default_factory=list)
    matching: int = 0
    untimed: int = 0
    last_seen: datetime | None = None


def on_time(
    entries: Iterable[tuple[datetime | None, str]],
    matching: LineMatcher,
    expected: list[datetime],
    tolerance: timedelta,
) -> Missed:
    """For each expected time, whether a matching line came within `tolerance` after it.
    One pass over the lines (oldest first) and a pointer into the expected times."""
    result = Missed(expected)
    hit = bytearray(len(expected))
    low = 0
    for ts, text in entries:
        if not matching(text):
            continue
        result.matching += 1
        when = line_time(ts, text)
        if when is None:
            result.untimed += 1
            continue
        result.last_seen = when
        while low < len(expected) and expected[low] + tolerance < when:
            low += 1
        index = low
        while index < len(expected) and expected[index] <= when:
            hit[index] = 1
            index += 1
    result.missed = [t for t, h in zip(expected, hit, strict=True) if not h]
    return result


def correlations(source: LogSource) -> list[Correlation]:
    return [*source.sequences, *source.ratios, *source.expected_at]


def patterns(source: LogSource) -> list[Any]:
    """Everything judged on a source's window (the reader reads the widest window they need)."""
    return [
        *source.forbidden,
        *source.required,
        *([source.error_rate] if source.error_rate else []),
        *correlations(source),
    ]


def state_key(source: LogSource) -> str:
    return f"logs:{source.name}:file"


SECTION = list[LogSource]  # the inventory's `logs:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the logs family; patterns carry the inventory's markers."""
    sources = inventory.logs
    return {
        "log_source": [Param(s, s.name, s) for s in sources],
        "log_forbidden": [Param(Item(s, p), f"{s.name}:{p.name}", s, _marks(p)) for s in sources for p in s.forbidden],
        "log_required": [Param(Item(s, p), f"{s.name}:{p.name}", s, _marks(p)) for s in sources for p in s.required],
        "log_error_rate": [
            Param(Item(s, s.error_rate), f"{s.name}:{s.error_rate.name}", s, _marks(s.error_rate))
            for s in sources
            if s.error_rate
        ],
        "log_sequence": [Param(Item(s, c), f"{s.name}:{c.name}", s, _marks(c)) for s in sources for c in s.sequences],
        "log_ratio": [Param(Item(s, c), f"{s.name}:{c.name}", s, _marks(c)) for s in sources for c in s.ratios],
        "log_expected_at": [
            Param(Item(s, c), f"{s.name}:{c.name}", s, _marks(c)) for s in sources for c in s.expected_at
        ],
    }


def _marks(pattern: InventoryCheck) -> list:
    return check_marks(pattern)


def fill(text: str, params: dict[str, str]) -> str:
    """`{name}` replaced by the --param value of `name` (left as it is when not given)."""
    return PLACEHOLDER.sub(lambda m: params.get(m.group(1), m.group(0)), text)
