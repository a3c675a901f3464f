"""Containers on a Docker engine, through the Docker SDK: list, inspect, stats, events, exec.

Each `docker` target of the inventory is one engine (a local socket, tcp:// with TLS, or
ssh://) and the containers expected on it, by name or by Compose project and service
labels. The engine cannot show a container that does not exist, so the expected ones come
from the inventory (or the compose file it names).

Read-only: list, inspect, stats, events and logs; exec only where the inventory opts in
(in-container state, connectivity probes), bounded by `timeout` inside the container since
exec has no timeout of its own.

`docker stats` takes about a second per container (the engine waits for a second CPU
sample), so the stats of every container of an engine are read in ONE concurrent sweep,
cached for the session: twenty containers cost about one second, not twenty.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from opscheck.core.errors import ConfigError, OpscheckError, Unreachable, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import Item, Model, Name, Param, Target
from opscheck.core.redact import clip
from opscheck.core.settings import Setting
from opscheck.core.settings import marks as setting_marks
from opscheck.core.times import bounded_shell
from opscheck.core.values import EngineUrl, ListenPort, LocalFile
from opscheck.core.web import environment_once
from opscheck.core.yamlfile import read_yaml
from opscheck.families.hosts import HostFacts, parse_listening, split_sections

if TYPE_CHECKING:
    import docker
else:
    docker = optional("docker", "docker")

COMPOSE_PROJECT = "com.docker.compose.project"
CPU_WINDOW_S = 1.0  # between the two CPU samples, as `docker stats`
COMPOSE_SERVICE = "com.docker.compose.service"


class DockerTls(Model):
    """Client TLS for a tcp:// engine (the files `docker --tlsverify` uses)."""

    ca: LocalFile | None = Field(default=None, description="CA certificate file (ca.pem)")
    cert: LocalFile | None = Field(default=None, description="client certificate file (cert.pem)")
    key: LocalFile | None = Field(default=None, description="client key file (key.pem)")
    verify: bool = True


class Container(Model):
    """A container expected on the engine: by container name, or by Compose service."""

    name: str = Name
    container: str | None = Field(default=None, description="container name (default: name, unless service)")
    service: str | None = Field(default=None, description="Compose service (with the target's compose_project)")
    replicas: int | None = Field(default=None, ge=1, description="running containers the service must have")
    image: str | None = Field(default=None, description="expected image: repo:tag, or a sha256: digest/id")
    started_after: datetime | None = Field(default=None, description="deploy verification: started after this")
    one_shot: bool = Field(default=False, description="a job: must have exited with code 0")
    cpu_max_pct: float | None = Field(default=None, gt=0, description="default: the target's")
    memory_max_pct: float | None = Field(default=None, gt=0, le=100, description="default: the target's")
    restarts_max: int | None = Field(default=None, ge=0, description="default: the target's")
    processes: list[str] = Field(default_factory=list, description="in-container processes (exec)")
    ports: list[ListenPort] = Field(default_factory=list, description="in-container listening TCP ports (exec)")
    files: list[str] = Field(default_factory=list, description="in-container paths that must exist (exec)")
    connect: list[str] = Field(
        default_factory=list,
        description="opt-in probes run with exec: host:port (TCP connect) or http(s)://... (GET)",
    )
    env: list[Setting] = Field(
        default_factory=list, description="environment variables (from inspect) and their conditions; never shown"
    )

    @model_validator(mode="after")
    def _env_ids_unique(self):
        ids = [s.id for s in self.env]
        if len(ids) != len(set(ids)):
            raise ValueError("env: two entries with one name (give `name` to tell them apart)")
        return self

    def shown(self) -> str:
        return f"service {self.service}" if self.service else f"container {self.container or self.name}"


class Docker(Target):
    """A Docker engine and the containers expected on it."""

    engine: EngineUrl = Field(default="unix:///var/run/docker.sock", description="unix://, tcp:// or ssh:// URL")
    tls: DockerTls | None = None
    compose_project: str | None = Field(default=None, description="Compose project of the services")
    compose_file: str | None = Field(default=None, description="every service in it is expected")
    containers: list[Container] = Field(default_factory=list)
    cpu_max_pct: float = Field(default=90, gt=0, description="per core, as docker stats (200 = 2 cores)")
    memory_max_pct: float = Field(default=90, gt=0, le=100, description="of the limit (usage - inactive_file)")
    restarts_max: int = Field(default=3, ge=0, description="restart count limit (runbook: grows by <= 3)")
    restart_min_uptime_s: float = Field(
        default=60, ge=0, description="restarted by its policy less than this ago counts as restarting"
    )
    exec_timeout: float = Field(default=10, gt=0, le=120, description="seconds for an opt-in exec")

    @model_validator(mode="after")
    def _services_need_project(self):
        if any(c.service for c in self.containers) and not self.compose_project:
            raise ValueError("containers with `service` need compose_project")
        names = [c.name for c in self.containers]
        if len(names) != len(set(names)):
            raise ValueError("duplicate container names")
        if self.compose_file:
            if not self.compose_project:
                raise ValueError("compose_file needs compose_project")
            try:
                compose_services(self.compose_file)
            except OpscheckError as exc:
                raise ValueError(str(exc)) from None
        return self

    def expected(self) -> list[Container]:
        """The inventory's containers, plus every service of the compose file not listed."""
        found = list(self.containers)
        if self.compose_file:
            listed = {c.service for c in found if c.service}
            for service in compose_services(self.compose_file):
                if service not in listed:
                    found.append(Container(name=service, service=service))
        return found


def environment_value(container: dict, key: str) -> tuple[bool, str | None]:
    """(set?, value) of one variable of an inspected container's Config.Env (the last wins)."""
    found, value = False, None
    for entry in (container.get("Config") or {}).get("Env") or []:
        name, _, text = entry.partition("=")
        if name == key:
            found, value = True, text
    return found, value


def compose_services(path: str) -> list[str]:
    try:  # the bounded reader: its messages name the line, never quote it (it may hold a password)
        data = read_yaml(Path(path), "compose file", allow_empty=True).data or {}
    except ConfigError as exc:
        raise OpscheckError(f"cannot read compose file: {'; '.join(exc.problems)}") from None
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise OpscheckError(f"compose file {path} has no `services:` mapping")
    return sorted(services)


# --- the engine -----------------------------------------------------------------------------


@dataclass
class Stats:
    cpu_pct: float
    memory_pct: float
    memory_used: int
    memory_limit: int
    online_cpus: int


def cpu_percent(sample: dict) -> float:
    """CPU % as `docker stats` computes it: per core, so up to 100 x cores."""
    cpu, pre = sample.get("cpu_stats") or {}, sample.get("precpu_stats") or {}
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or []) or 1
    if cpu_delta <= 0 or system_delta <= 0 or not pre.get("system_cpu_usage"):
        return 0.0
    return cpu_delta / system_delta * cores * 100.0


def memory_used(sample: dict) -> tuple[int, int]:
    """(usage minus inactive_file, limit) as the CLI computes them (cgroup v1 and v2)."""
    mem = sample.get("memory_stats") or {}
    usage, stats = mem.get("usage", 0), mem.get("stats") or {}
    inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
    return (usage - inactive if inactive < usage else usage), mem.get("limit", 0)


class DockerEngine:
    """One SDK client per engine per session; a failed connect is remembered, not retried."""

    def __init__(self, target: Docker, timeout: float):
        self.target = target
        self.timeout = timeout
        self._client: docker.APIClient | None = None
        self.unreachable = Unreachable()
        self._lock = threading.RLock()
        self._listing: list[dict] | None = None
        self._inspected: dict[str, dict] = {}
        self._stats: dict[str, Stats | str] | None = None
        self._stats_lock = threading.Lock()  # the sweep takes seconds: the other reads go on
        self._exec: dict[str, HostFacts | str] = {}
        self._exec_client: docker.APIClient | None = None
        self._exec_clients: dict[float, docker.APIClient] = {}
        self.stats_seconds: float | None = None

    @property
    def shown(self) -> str:
        return f'docker "{self.target.name}" ({self.target.engine})'

    def client(self) -> docker.APIClient:
        """The engine's API client (low-level: list, inspect, stats, events, logs, exec)."""
        with self._lock:
            self.unreachable.check()
            if self._client is None:
                try:
                    client = self._new_client(self.timeout)
                    client.ping()
                except Exception as exc:  # noqa: BLE001 - any client error means "cannot reach"
                    self.unreachable.fail(f"{self.shown}: cannot connect: {one_line(exc)}")
                self._client = client
            return self._client

    def _new_client(self, timeout: float) -> docker.APIClient:
        tls = False
        if self.target.tls:
            t = self.target.tls
            tls = docker.tls.TLSConfig(
                client_cert=(t.cert, t.key) if t.cert and t.key else None,
                ca_cert=t.ca,
                verify=t.ca if t.verify and t.ca else t.verify,
            )
        # the environment's proxies and CA bundle are read once (core.web); with TLS the
        # inventory's `tls.ca` must win over REQUESTS_CA_BUNDLE (the client asks the version at once)
        api_class = environment_once(docker.APIClient, ca_bundle=not tls)
        return api_class(
            base_url=self.target.engine,
            timeout=max(1, round(timeout)),
            tls=tls,
            # a wide stats sweep needs a connection per container (default pool: 10)
            max_pool_size=max(10, len(self.target.expected()) * 2 + 4),
            use_ssh_client=self.target.engine.startswith("ssh://"),
        )

    def exec_api(self, seconds: float | None = None):
        """A client whose read timeout outlasts `seconds` (default exec_timeout) inside the
        container, since exec has no timeout of its own."""
        self.client()
        with self._lock:
            if seconds is not None and seconds != self.target.exec_timeout:
                if seconds not in self._exec_clients:  # the commands family's own command timeouts
                    self._exec_clients[seconds] = self._new_client(seconds + self.timeout)
                return self._exec_clients[seconds]
            if self._exec_client is None:
                self._exec_client = self._new_client(self.target.exec_timeout + self.timeout)
            return self._exec_client

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except docker.errors.NotFound:
            raise
        except (docker.errors.APIError, docker.errors.DockerException) as exc:
            raise OpscheckError(f"{self.shown}: {what} failed: {one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - timeouts, connection resets
            self.unreachable.fail(f"{self.shown}: {what}: {one_line(exc)}")

    def listing(self) -> list[dict]:
        """Every container on the engine (running or not), listed once per session."""
        with self._lock:
            if self._listing is None:
                api = self.client()
                self._listing = self._call("listing containers", api.containers, all=True)
            return self._listing

    def inspect(self, container_id: str) -> dict:
        with self._lock:
            if container_id not in self._inspected:
                api = self.client()
                self._inspected[container_id] = self._call("inspect", api.inspect_container, container_id)
            return self._inspected[container_id]

    def listed(self, spec: Container) -> list[dict]:
        """The listing's entries that stand for an expected container (several for a scaled service)."""
        if spec.service:
            return [
                c
                for c in self.listing()
                if (c.get("Labels") or {}).get(COMPOSE_PROJECT) == self.target.compose_project
                and (c.get("Labels") or {}).get(COMPOSE_SERVICE) == spec.service
            ]
        wanted = "/" + (spec.container or spec.name)
        return [c for c in self.listing() if wanted in (c.get("Names") or [])]

    def find(self, spec: Container) -> list[dict]:
        """The inspected containers that stand for an expected container."""
        return sorted((self.inspect(c["Id"]) for c in self.listed(spec)), key=lambda c: c["Name"])

    def require(self, spec: Container) -> list[dict]:
        found = self.find(spec)
        if not found:
            where = f" in Compose project {self.target.compose_project}" if spec.service else ""
            raise OpscheckError(f"{self.shown}: {spec.shown()}{where} does not exist")
        return found

    # --- stats: one concurrent sweep per engine ---------------------------------------

    def stats(self, container_id: str) -> Stats:
        result = self.all_stats().get(container_id)
        if result is None:
            container = self.inspect(container_id)
            raise OpscheckError(
                f"blocked: {self.shown}: {container['Name'].lstrip('/')} is "
                f"{container['State']['Status']}: no CPU or memory to measure"
            )
        if isinstance(result, str):
            raise OpscheckError(result)
        return result

    def all_stats(self) -> dict[str, Stats | str]:
        """The stats of every expected running container (as listed), swept once."""
        with self._stats_lock:
            if self._stats is None:
                running = {
                    c["Id"] for spec in self.target.expected() for c in self.listed(spec) if c.get("State") == "running"
                }
                self._stats = self.sweep_stats(sorted(running))
            return self._stats

    def sweep_stats(self, ids: list[str]) -> dict[str, Stats | str]:
        """Stats of many containers at once: about one second in all, not one per container.

        Two one-shot samples CPU_WINDOW_S apart, CPU from their difference: what `docker
        stats` computes over its own one-second window, without waiting for the engine's
        next collection tick (`stream=False` takes about two seconds).
        """
        api = self.client()
        started = time.monotonic()

        def sample(container_id: str) -> dict | str:
            try:
                return api.stats(container_id, stream=False, one_shot=True)
            except docker.errors.InvalidVersion:  # an engine older than API 1.41: the slow way
                return api.stats(container_id, stream=False)
            except Exception as exc:  # noqa: BLE001
                return f"{self.shown}: stats of {container_id[:12]} failed: {one_line(exc)}"

        def stats(first: dict | str, second: dict | str) -> Stats | str:
            if isinstance(second, str) or isinstance(first, str):
                return second if isinstance(second, str) else first  # type: ignore[return-value]
            if not (second.get("precpu_stats") or {}).get("system_cpu_usage"):
                second = {**second, "precpu_stats": first.get("cpu_stats") or {}}
            used, limit = memory_used(second)
            cpu = second.get("cpu_stats") or {}
            return Stats(
                cpu_percent(second), 100.0 * used / limit if limit else 0.0, used, limit, cpu.get("online_cpus") or 1
            )

        result: dict[str, Stats | str] = {}
        if ids:
            with ThreadPoolExecutor(max_workers=min(64, len(ids))) as pool:
                first = list(pool.map(sample, ids))
                time.sleep(max(0.0, CPU_WINDOW_S - (time.monotonic() - started)))
                second = list(pool.map(sample, ids))
            result = {i: stats(a, b) for i, a, b in zip(ids, first, second, strict=True)}
        self.stats_seconds = time.monotonic() - started
        return result

    def gather(self, stats: bool = False, inside: bool = False) -> None:
        """The engine's shared reads ahead of the checks: the listing, every expected
        container inspected, and (when a selected check needs them) the stats sweep and the
        opt-in state inside each container."""
        self.client()
        sweep = None
        if stats:  # its two samples a second apart go on while the containers are inspected
            sweep = threading.Thread(target=self._sweep_quietly, name=f"opscheck-stats {self.target.name}", daemon=True)
            sweep.start()
        for spec in self.target.expected():
            found = self.find(spec)
            if inside and found and (spec.processes or spec.ports or spec.files):
                with contextlib.suppress(OpscheckError):  # kept for the in-container checks
                    self.inside(found[0], spec)
        if sweep is not None:
            sweep.join()

    def _sweep_quietly(self) -> None:
        with contextlib.suppress(Exception):  # a failed listing is the checks' to report
            self.all_stats()

    # --- events and exec --------------------------------------------------------------

    def oom_events(self, container_id: str, since: datetime) -> int:
        """How many `oom` events the engine recorded for a container since a time."""
        api = self.client()
        now = datetime.now(UTC)
        events = self._call(
            "reading events",
            api.events,
            since=since,
            until=now,
            decode=True,
            filters={"event": "oom", "container": container_id},
        )
        return sum(1 for _ in events)

    def exec(self, container: dict, script: str) -> tuple[int, str]:
        """Run a read-only shell script in a container, bounded by `timeout` inside it."""
        command = bounded_shell(script, self.target.exec_timeout)
        api = self.exec_api()
        name = container["Name"].lstrip("/")
        try:
            exec_id = api.exec_create(container["Id"], command, stdout=True, stderr=True)["Id"]
            output = api.exec_start(exec_id)
            code = api.exec_inspect(exec_id).get("ExitCode")
        except docker.errors.APIError as exc:
            raise OpscheckError(f"{self.shown}: exec in {name} failed: {one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a hung exec ends at the client's read timeout
            raise OpscheckError(f"{self.shown}: exec in {name}: {one_line(exc)}") from None
        return (code if code is not None else -1), output.decode(errors="replace")

    def inside(self, container: dict, spec: Container) -> HostFacts:
        """Processes, listening sockets and files inside a container, in ONE exec."""
        if not container["State"]["Running"]:  # exec would fail with the engine's raw 409
            raise OpscheckError(
                f"blocked: {self.shown}: {container['Name'].lstrip('/')} is "
                f"{container['State']['Status']}: nothing to read inside"
            )
        with self._lock:
            if container["Id"] not in self._exec:
                files = " ".join(shlex.quote(f) for f in spec.files)
                script = (
                    IN_CONTAINER
                    + (f'for f in {files}; do [ -e "$f" ] && echo "$f"; done\n' if files else "")
                    + "echo @@end\n"
                )
                code, out = self.exec(container, script)
                self._exec[container["Id"]] = (
                    parse_inside(out)
                    if "@@end" in out
                    else f"{self.shown}: reading state inside {container['Name'].lstrip('/')} "
                    f"failed (exit {code}): {clip(out.strip(), 300)}"
                )
            result = self._exec[container["Id"]]
        if isinstance(result, str):
            raise OpscheckError(result)
        return result

    def close(self) -> None:
        for client in (self._client, self._exec_client, *self._exec_clients.values()):
            if client is not None:
                client.close()


IN_CONTAINER = r"""
echo @@procs
for d in /proc/[0-9]*; do
  c=$(cat "$d/comm" 2>/dev/null) || continue
  printf '%s\t%s\n' "$c" "$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)"
done
echo @@tcp; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
echo @@files
"""


def parse_inside(text: str) -> HostFacts:
    """What one exec in a container saw: processes, listening sockets, files (host facts' shape)."""
    sections = split_sections(text)
    facts = HostFacts(
        cores=0,
        load5=0.0,
        mem_total_kb=0,
        mem_available_kb=0,
        filesystems={},
        processes=[(x.partition("\t")[0], x.partition("\t")[2]) for x in sections.get("procs", []) if "\t" in x],
        listening=parse_listening(sections.get("tcp", [])),
    )
    facts.files = set(sections.get("files", []))
    return facts


def probe_script(destination: str, seconds: int) -> str:
    """A read-only connectivity probe with the tools a slim image may have (curl, nc, wget, bash)."""
    if destination.startswith(("http://", "https://")):
        url = shlex.quote(destination)
        parsed = urlsplit(destination)
        host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
        path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        crlf = "\\r\\n"
        request = shlex.quote(f"GET {path} HTTP/1.0{crlf}Host: {parsed.netloc}{crlf}User-Agent: opscheck{crlf}{crlf}")
        via_nc = (
            f"elif command -v nc >/dev/null 2>&1; then line=$(printf %b {request} | nc -w {seconds} "
            f"{shlex.quote(host)} {port} | head -n 1); "
            'case "$line" in "HTTP/"*" 2"??*|"HTTP/"*" 3"??*) exit 0;; '
            '*) echo "response: ${line:-none}"; exit 1;; esac; '
            if parsed.scheme == "http"
            else ""
        )
        return (
            f"if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null -m {seconds} {url}; "
            + via_nc
            + f"elif command -v wget >/dev/null 2>&1; then wget -q -O /dev/null -T {seconds} {url}; "
            "else echo 'no curl, nc or wget in the container'; exit 127; fi"
        )
    address, _, number = destination.rpartition(":")
    quoted_host, quoted_port = shlex.quote(address.strip("[]")), shlex.quote(number)
    # busybox nc has no -z: connect and run `true` instead (-e)
    return (
        f"if command -v nc >/dev/null 2>&1; then "
        f"out=$(nc -z -w {seconds} {quoted_host} {quoted_port} </dev/null 2>&1); rc=$?; "
        f'case "$out" in *nvalid\\ option*|*llegal\\ option*|*nrecognized\\ option*) '
        f"out=$(nc -w {seconds} {quoted_host} {quoted_port} -e true </dev/null 2>&1); rc=$?;; esac; "
        '[ -n "$out" ] && echo "$out"; exit $rc; '
        f"elif command -v bash >/dev/null 2>&1; then bash -c 'exec 3<>/dev/tcp/'{quoted_host}'/'{quoted_port}; "
        "else echo 'no nc or bash in the container'; exit 127; fi"
    )


# --- parametrization ----------------------------------------------------------------------


SECTION = list[Docker]  # the inventory's `docker:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the docker family."""
    targets = inventory.docker

    def each(condition) -> list[Param]:
        return [Param(Item(t, c), f"{t.name}:{c.name}", t) for t in targets for c in t.expected() if condition(c)]

    return {
        "docker_engine": [Param(t, t.name, t) for t in targets],
        "container": each(lambda c: not c.one_shot),
        "container_job": each(lambda c: c.one_shot),
        "container_image": each(lambda c: c.image),
        "container_started": each(lambda c: c.started_after),
        "container_process": [
            Param(Item(t, (c, p)), f"{t.name}:{c.name}:{p}", t)
            for t in targets
            for c in t.containers
            for p in c.processes
        ],
        "container_port": [
            Param(Item(t, (c, p)), f"{t.name}:{c.name}:{p}", t) for t in targets for c in t.containers for p in c.ports
        ],
        "container_file": [
            Param(Item(t, (c, f)), f"{t.name}:{c.name}:{f}", t) for t in targets for c in t.containers for f in c.files
        ],
        "container_env": [
            Param(Item(t, (c, s)), f"{t.name}:{c.name}:{s.id}", t, setting_marks(s))
            for t in targets
            for c in t.containers
            for s in c.env
        ],
        "container_connect": [
            Param(Item(t, (c, d)), f"{t.name}:{c.name}->{d}", t)
            for t in targets
            for c in t.containers
            for d in c.connect
        ],
    }
