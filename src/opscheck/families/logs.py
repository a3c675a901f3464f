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

import re
import shlex
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, field_validator, model_validator

from opscheck.core.cache import Memo
from opscheck.core.errors import OpscheckError, TargetUnreachable, one_line
from opscheck.core.model import InventoryCheck, Item, Name, Param, Severity, Target, check_marks
from opscheck.core.times import parse_duration, parse_time, since_last_run
from opscheck.families.docker import Container
from opscheck.families.hosts import command_seconds, run_script
from opscheck.families.kubernetes import log_pods, pods_started, read_pod_logs, valid_selector

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


class LogPattern(InventoryCheck):
    """A regular expression (Python syntax: `a|b` is alternation, no grep -E `\\|` trap)."""

    name: str = Name
    pattern: str
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
        return self

    def window_kind(self) -> str:
        return self.window or ("start" if "smoke" in self.schedule else "last_run")


class Forbidden(LogPattern):
    """A signature that must not appear (more than `max` times) in the window."""

    max: int = Field(default=0, ge=0, description="matches allowed in the window")


class Required(LogPattern):
    """A line that must appear in the window: a listener started, a scheduler is alive."""

    min: int = Field(default=1, ge=1, description="matches needed in the window")


class ErrorRate(LogPattern):
    """Lines matching an error pattern per hour over the window, under a limit."""

    name: str = Field(default="errors", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=100)
    pattern: str = "(?i)\\b(error|exception|traceback|fatal|panic)\\b"
    max_per_hour: float = Field(default=10, ge=0)
    severity: Severity = "p2"


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
            f"{source.shown}: reading the file failed (exit {result.rc}): {result.stderr.strip()[:300]}"
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
        raise OpscheckError(f"{source.shown}: journalctl failed: {result.stderr.strip()[:300]}")
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


def patterns(source: LogSource) -> list[LogPattern]:
    return [*source.forbidden, *source.required, *([source.error_rate] if source.error_rate else [])]


def state_key(source: LogSource) -> str:
    return f"logs:{source.name}:file"


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
    }


def _marks(pattern: LogPattern) -> list:
    return check_marks(pattern)
