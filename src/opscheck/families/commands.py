"""Read-only commands (goss's and InSpec's `command` resources) and line-protocol sockets.

A command check runs what the inventory names, on a host (the host transport: testinfra,
local:// or ssh://) or in a container (the docker family's exec), bounded by a timeout
there, and judges its exit code and its output. opscheck cannot know whether a command
is read-only: the inventory is the trust boundary, like a cron file.

- `argv:` is run without a shell: each element is one argument (quoted for the host
  transport, passed as exec's argv in a container), so `$`, `*`, `|`, `;` stay literal;
- `shell:` is a script for `sh -c`, only where the inventory asks for one;
- `send:` is one line to a unix socket's line protocol (Ava's storage REPL), checked
  against the protocol's allow-list of read-only commands when the inventory loads.

A `{name}` placeholder is an incident-time value (`--param name=...`), substituted into
ONE argv element or the `send` line, never into a shell script. Output shown in a
failure is cut and scrubbed of credential-looking values.
"""

from __future__ import annotations

import re
import shlex
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from opscheck.core import jsondoc
from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError, one_line
from opscheck.core.lazy import optional
from opscheck.core.markers import DOMAINS
from opscheck.core.model import Condition, InventoryCheck, Item, Name, Param, Target, check_marks, mark
from opscheck.core.redact import clip, clip_line
from opscheck.families.docker import Container
from opscheck.families.hosts import run_script

if TYPE_CHECKING:
    import jmespath
else:
    jmespath = optional("jmespath", "all")

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
TIMED_OUT_CODES = (124, 137, 143)  # coreutils timeout; SIGKILL; busybox timeout (SIGTERM)


def _valid_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return value


# --- line protocols: an allow-list of read-only commands per protocol -----------------------


@dataclass(frozen=True)
class LineProtocol:
    """A REPL on a unix socket: one command per line, a prompt before each, `quit` to leave."""

    allowed: dict[str, str]  # verb -> what it reads
    refused: dict[str, str]  # verbs the server also knows, and why a check never sends them
    argument: dict[str, str]  # verb -> regex its one argument must match
    prompt: str = "> "
    quit: str = "exit"


PROTOCOLS: dict[str, LineProtocol] = {
    # Ava's aggregator storage REPL (aggregator/repl.go): BadgerDB behind /tmp/ap.sock
    "ava-storage": LineProtocol(
        allowed={"list": "lists the keys under a prefix", "get": "prints one key's value"},
        refused={
            "gc": "runs BadgerDB value-log garbage collection (a write; the runbook mislabels it a corruption check)",
            "rm": "deletes keys",
            "backup": "writes a backup to the server's disk",
            "set": "writes a key",
            "trigger": "acts on the server",
        },
        # `list *` scans the whole keyspace: a prefix is required
        argument={"list": r"^[^\s*][^\s]*\*?$", "get": r"^\S+$"},
    ),
}


def refusal(protocol: LineProtocol, line: str) -> str | None:
    """Why `line` may not be sent (None if the allow-list admits it)."""
    verb, _, argument = line.strip().partition(" ")
    verb = verb.lower()
    if verb in protocol.refused:
        return f"{verb!r} {protocol.refused[verb]}: checks only read"
    if verb not in protocol.allowed:
        return f"{verb!r} is not a read-only command of this protocol (allowed: {', '.join(protocol.allowed)})"
    checked = PLACEHOLDER.sub("x", argument.strip())
    if not re.match(protocol.argument[verb], checked):
        return f"{verb} needs one argument matching {protocol.argument[verb]!r} (e.g. `list t:a:*`, not `list *`)"
    return None


# --- the inventory ---------------------------------------------------------------------------


class OutputCondition(Condition):
    """A condition on a command's output: the whole text (stripped), a JSON path, the first
    match of a regex (its group 1, or the match; null when absent: `op: exists, value: false`
    means "never printed"), or the number of lines matching a regex."""

    stream: Literal["stdout", "stderr"] = "stdout"
    path: str | None = Field(default=None, description="JMESPath into the output parsed as JSON")
    capture: str | None = Field(default=None, description="regex (multiline); compares group 1, or the match")
    count: str | None = Field(default=None, description="regex: compares the number of matching lines")

    _regexes = field_validator("capture", "count")(_valid_regex)

    @model_validator(mode="after")
    def _one_selector(self):
        if sum(x is not None for x in (self.path, self.capture, self.count)) > 1:
            raise ValueError("give at most one of path, capture, count")
        return self

    def describe(self) -> str:
        if self.path is not None:
            return f"{self.stream} JSON {self.path}"
        if self.capture is not None:
            return f"{self.stream} /{self.capture}/"
        if self.count is not None:
            return f"{self.stream} lines matching /{self.count}/"
        return self.stream

    def actual(self, text: str) -> Any:
        if self.path is not None:
            try:
                data = jsondoc.loads(text)
            except ValueError:
                raise OpscheckError(f"{self.stream} is not JSON") from None
            return jmespath.search(self.path, data)
        if self.capture is not None:
            match = re.search(self.capture, text, re.M)
            if match is None:
                return None
            return match.group(1) if match.groups() else match.group(0)
        if self.count is not None:
            regex = re.compile(self.count)
            return sum(1 for line in text.splitlines() if regex.search(line))
        return text.strip()


class Command(InventoryCheck):
    """One command: exactly one of argv (no shell), shell (sh -c) or send (a socket line)."""

    name: str = Name
    argv: list[str] | None = Field(default=None, min_length=1, description="program and arguments; no shell")
    shell: str | None = Field(default=None, description="a script run with sh -c (only when a shell is needed)")
    send: str | None = Field(default=None, description="one line for the target's socket protocol")
    exit_codes: list[int] = Field(default_factory=lambda: [0], min_length=1)
    output: list[OutputCondition] = Field(default_factory=list)
    timeout_s: float = Field(default=10, gt=0, le=120, description="the command's time limit where it runs")
    show_output: bool = Field(default=True, description="false: a failure never shows the output")
    redact: list[str] = Field(default_factory=list, description="regexes scrubbed from output a failure shows")
    domain: str | None = Field(default=None, description="domain marker (default: host, or containers)")

    @field_validator("redact")
    @classmethod
    def _redact_regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _valid_regex(pattern)
        return value

    @model_validator(mode="after")
    def _one_form(self):
        if sum(x is not None for x in (self.argv, self.shell, self.send)) != 1:
            raise ValueError("give exactly one of argv, shell or send")
        if self.domain is not None and self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {', '.join(DOMAINS)}")
        if self.shell is not None and PLACEHOLDER.search(self.shell):
            raise ValueError(
                "a shell script cannot take {placeholders}: the shell would parse the value; "
                "use argv, where a value is one argument"
            )
        if self.placeholders and "adhoc" not in self.schedule:
            raise ValueError(
                f"a command with {{{self.placeholders[0]}}} needs schedule [adhoc] "
                "(its value comes from --param at incident time)"
            )
        return self

    @property
    def placeholders(self) -> list[str]:
        text = " ".join(self.argv or []) + " " + (self.send or "")
        return list(dict.fromkeys(PLACEHOLDER.findall(text)))

    @property
    def shown(self) -> str:
        if self.send is not None:
            return self.send
        return self.shell if self.shell is not None else shlex.join(self.argv or [])


class CommandTarget(Target):
    """Where commands run: a hosts target, a testinfra spec, or a container of a docker target;
    optionally a unix socket there that `send` commands talk to."""

    host: str | None = Field(default=None, description="a target of the hosts section (its spec)")
    spec: str | None = Field(default=None, description="testinfra host spec: local://, ssh://...")
    docker: str | None = Field(default=None, description="a docker target (the engine), with container or service")
    container: str | None = None
    service: str | None = Field(default=None, description="Compose service (of the docker target's project)")
    socket: str | None = Field(default=None, pattern=r"^/", description="unix socket path where the commands run")
    protocol: Literal["ava-storage"] | None = Field(default=None, description="the socket's line protocol")
    run: list[Command] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_place(self):
        places = [bool(self.host), bool(self.spec), bool(self.docker)]
        if sum(places) != 1 or (self.docker and not (self.container or self.service)):
            raise ValueError("give one place: host, spec, or docker with container (or service)")
        if (self.container or self.service) and not self.docker:
            raise ValueError("container and service need docker")
        if bool(self.socket) != bool(self.protocol):
            raise ValueError("socket and protocol go together")
        if self.socket and self.docker:
            raise ValueError("a socket is reached on a host (socat or nc -U there), not inside a container")
        names = [c.name for c in self.run]
        if len(names) != len(set(names)):
            raise ValueError("duplicate command names")
        for command in self.run:
            if command.send is not None:
                if not self.protocol:
                    raise ValueError(f"command {command.name!r}: send needs the target's socket and protocol")
                why = refusal(PROTOCOLS[self.protocol], command.send)
                if why:
                    raise ValueError(f"command {command.name!r}: refused: {why}")
        return self

    def secrets(self) -> list[str]:
        return [self.spec] if self.spec else []  # ssh://user:password@host

    @property
    def where(self) -> str:
        if self.docker:
            return f"{self.docker}/{self.container or self.service}"
        where = f"host {self.host}" if self.host else (self.spec or "")
        return f"{where} {self.socket}" if self.socket else where


# --- running --------------------------------------------------------------------------------

MAX_OUTPUT = 256 * 1024  # bytes kept per stream


@dataclass
class Ran:
    """What a command did: its exit code and output, or that it did not finish in time."""

    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


def substituted(command: Command, params: dict[str, str]) -> tuple[list[str] | None, str | None]:
    """(argv, send line) with each {name} replaced by its --param value, as data."""
    for name in command.placeholders:
        value = params[name]
        if command.send is not None and (not value or re.search(r"[\s\x00-\x1f]", value)):
            raise OpscheckError(f"refused: --param {name} must be one word without spaces or control characters")
        if command.argv is not None and any(a == f"{{{name}}}" for a in command.argv) and value.startswith("-"):
            raise OpscheckError(f"refused: --param {name} starts with '-' and would be read as an option")

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: params[m.group(1)], text)

    argv = [fill(a) for a in command.argv] if command.argv is not None else None
    return argv, (fill(command.send) if command.send is not None else None)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    raw = data.encode() if isinstance(data, str) else data
    return raw[:MAX_OUTPUT].decode(errors="replace")


def socket_exchange(path: str, line: str, protocol: LineProtocol, seconds: float) -> str:
    """Send one line and the quit command to a local unix socket; the whole transcript."""
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(seconds)
        sock.connect(path)
        sock.sendall(f"{line}\n{protocol.quit}\n".encode())
        chunks, size = [], 0
        while size < MAX_OUTPUT:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks).decode(errors="replace")


def socket_script(path: str, line: str, protocol: LineProtocol, seconds: int) -> str:
    """The same exchange through a host's transport: socat, else nc -U (OpenBSD netcat)."""
    quoted = shlex.quote(path)
    lines = " ".join(shlex.quote(x) for x in (line, protocol.quit))
    return (
        f"printf '%s\\n' {lines} | if command -v socat >/dev/null 2>&1; then "
        f"socat -t {seconds} - UNIX-CONNECT:{quoted}; "
        f"elif nc -h 2>&1 | grep -q -- -U; then nc -U {quoted}; "
        "else echo 'neither socat nor nc -U on the host' >&2; exit 127; fi"
    )


def reply(transcript: str, protocol: LineProtocol) -> str:
    """The answer to our line: between the prompt after the banner and the next prompt."""
    if transcript.count(protocol.prompt) < 2:
        raise OpscheckError(f"the REPL closed before answering ({len(transcript)} bytes, no second prompt)")
    first, last = transcript.find(protocol.prompt), transcript.rfind(protocol.prompt)
    return transcript[first + len(protocol.prompt) : last]


class CommandRunner(TargetReader):
    """Runs each command of a target once per run; a place that cannot be reached blocks the rest."""

    def __init__(self, target: CommandTarget, inventory: Any, params: dict[str, str], engine_for):
        super().__init__()
        self.target = target
        self.inventory = inventory
        self.params = params
        self.engine_for = engine_for

    def shown(self, command: Command) -> str:
        line = scrub(command.shown, command.redact)  # a ${VAR} in argv is not known to be secret
        return f'command "{self.target.name}:{command.name}" ({self.target.where}: {line})'

    def result(self, command: Command) -> Ran:
        return self.once(command.name, lambda: self._run(command))

    def _spec(self) -> str:
        if self.target.host:
            host = next(h for h in self.inventory.hosts if h.name == self.target.host)
            return host.spec
        return self.target.spec or "local://"

    def _run(self, command: Command) -> Ran:
        argv, line = substituted(command, self.params)
        if self.target.docker:
            return self._in_container(command, argv)
        spec = self._spec()
        seconds = max(1, round(command.timeout_s))
        if line is not None:
            protocol = PROTOCOLS[self.target.protocol or ""]
            if spec.startswith("local://"):
                return self._local_socket(command, line, protocol)
            ran = self._on_host(command, spec, socket_script(self.target.socket or "", line, protocol, seconds))
            if ran.timed_out:
                return ran
            if ran.exit_code != 0:
                with self.lock:
                    self.unreachable.fail(
                        f"{self.shown(command)}: cannot talk to the socket (exit {ran.exit_code}): "
                        f"{one_line(Exception(scrub(ran.stderr)), 300)}"
                    )
            ran.stdout = reply(ran.stdout, protocol)
            return ran
        script = shlex.join(argv) if argv is not None else command.shell or ""
        return self._on_host(command, spec, script)

    def _on_host(self, command: Command, spec: str, script: str) -> Ran:
        seconds = max(1, round(command.timeout_s))
        started = time.monotonic()
        try:
            result = run_script(spec, script, seconds)
        except Exception as exc:  # noqa: BLE001 - any transport error means "cannot reach the host"
            inner = exc.args[0] if exc.args else exc  # testinfra raises with the CommandResult
            text = getattr(inner, "stderr", None) or str(exc)
            with self.lock:
                self.unreachable.fail(
                    f'commands "{self.target.name}" ({self.target.where}): cannot reach the host: '
                    f"{clip_line(text, 300)}"
                )
        took = time.monotonic() - started
        timed_out = result.rc in TIMED_OUT_CODES and took >= seconds - 0.5
        return Ran(result.rc, _text(result.stdout_bytes), _text(result.stderr_bytes), took, timed_out)

    def _local_socket(self, command: Command, line: str, protocol: LineProtocol) -> Ran:
        started = time.monotonic()
        try:
            transcript = socket_exchange(self.target.socket or "", line, protocol, command.timeout_s)
        except TimeoutError:
            return Ran(-1, "", "", time.monotonic() - started, timed_out=True)
        except OSError as exc:
            with self.lock:
                self.unreachable.fail(
                    f'commands "{self.target.name}" ({self.target.where}): cannot connect: {exc.strerror or exc}'
                )
        return Ran(0, reply(transcript, protocol), "", time.monotonic() - started)

    def _in_container(self, command: Command, argv: list[str] | None) -> Ran:
        docker_target = next(d for d in self.inventory.docker if d.name == self.target.docker)
        engine = self.engine_for(docker_target)
        spec = Container(
            name=self.target.service or self.target.container or "",
            container=self.target.container,
            service=self.target.service,
        )
        container = engine.require(spec)[0]
        seconds = max(1, round(command.timeout_s))
        program = argv if argv is not None else ["sh", "-c", command.shell or ""]
        # `timeout` inside the container where the image has one; "$@" passes argv untouched
        wrapper = f'if command -v timeout >/dev/null 2>&1; then exec timeout {seconds} "$@"; else exec "$@"; fi'
        api = engine.exec_api(float(seconds))
        name = container["Name"].lstrip("/")
        started = time.monotonic()
        try:
            exec_id = api.exec_create(container["Id"], ["sh", "-c", wrapper, "sh", *program], stdout=True, stderr=True)
            out, err = api.exec_start(exec_id["Id"], demux=True)
            code = api.exec_inspect(exec_id["Id"]).get("ExitCode")
        except Exception as exc:  # noqa: BLE001 - API errors and a hung exec (the client's read timeout)
            raise OpscheckError(f"{engine.shown}: exec in {name} failed: {one_line(exc)}") from None
        took = time.monotonic() - started
        code = code if code is not None else -1
        return Ran(code, _text(out), _text(err), took, code in TIMED_OUT_CODES and took >= seconds - 0.5)


# --- showing output -------------------------------------------------------------------------

SCRUB = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S), "[key]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 ***"),
    # KEY=value, key: value (env dumps, config files, headers): the rest of the line
    (
        re.compile(r"(?i)\b(\w*(?:pass|secret|token|api[_-]?key|auth|credential)\w*)(\s*[=:]\s*)[^\s*][^\n]*"),
        r"\1\2***",
    ),
    (re.compile(r"://([^:/\s@]+):[^@\s]+@"), r"://\1:***@"),
]


def scrub(text: str, extra: list[str] | None = None) -> str:
    """Output with credential-looking values masked (the plugin also masks every registered secret)."""
    for pattern, replacement in SCRUB:
        text = pattern.sub(replacement, text)
    for regex in extra or []:
        text = re.sub(regex, "***", text)
    return text


def excerpt(command: Command, ran: Ran, limit: int = 300) -> str:
    """What a failure shows of the output: cut, scrubbed, or nothing when show_output is off."""
    if not command.show_output:
        return "output hidden (show_output: false)"
    parts = []
    for stream, text in (("stdout", ran.stdout), ("stderr", ran.stderr)):
        if text.strip():
            shown = " | ".join(scrub(text, command.redact).strip().splitlines())  # masked, then cut:
            parts.append(f"{stream}: {clip(shown, limit)!r}" + (" ..." if len(shown) > limit else ""))
    return "; ".join(parts) or "no output"


# --- parametrization ------------------------------------------------------------------------


def _marks(target: CommandTarget, command: Command) -> list:
    domain = command.domain or ("containers" if target.docker else "host")
    return [*check_marks(command), mark(domain)]


SECTION = list[CommandTarget]  # the inventory's `commands:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the commands family: one row per command, with the inventory's markers."""
    rows = [(c, Param(Item(t, c), f"{t.name}:{c.name}", t, _marks(t, c))) for t in inventory.commands for c in t.run]
    return {"command": [p for _, p in rows], "command_output": [p for c, p in rows if c.output]}
