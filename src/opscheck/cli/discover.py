"""`opscheck discover`: draft an inventory for a running system from what it shows.

    opscheck discover --docker unix:///var/run/docker.sock --prometheus http://localhost:9090 \
        --host local:// --environment prod > inventories/prod.yml

Sources (each read-only, each call bounded by --timeout):
- a Docker engine: containers grouped by Compose project and service (replicas counted),
  one-shot containers, published ports (drafted as HTTP endpoints: a guess), log drivers
  that `docker logs` can read (drafted as log sources with the default error rate);
- a Prometheus server: its scrape jobs (expected_jobs) and the Alertmanagers it sends to;
- a host (any testinfra spec): its listening TCP ports, and for well-known ports a target of
  the matching family (PostgreSQL on 5432, Redis on 6379, ...), its secret as a ${VAR};
- a kubeconfig (and context): the cluster's namespaces (the system ones left out) with the
  Deployments, StatefulSets and DaemonSets that run in each, which must keep existing.

The draft validates once its ${VARS} are set (the header lists them). Everything that is a
guess carries a `# guessed:` comment: review those lines before relying on the inventory.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from opscheck.cli.common import USAGE_ERROR
from opscheck.core import redact
from opscheck.core.errors import OpscheckError, one_line
from opscheck.core.lazy import optional
from opscheck.families.docker import COMPOSE_PROJECT, COMPOSE_SERVICE
from opscheck.families.hosts import Host, command_seconds, parse, run_script, sweep_script
from opscheck.families.kubernetes import KubeClient, Kubernetes

if TYPE_CHECKING:
    import docker
    import requests
else:
    docker = optional("docker", "docker")
    requests = optional("requests", "all")

# well-known ports: (family, what a target of it needs)
KNOWN_PORTS = {
    5432: "postgres",
    6432: "pgbouncer",
    6379: "redis",
    9090: "prometheus",
    9093: "alertmanager",
    443: "tls",
    8443: "tls",
}
READABLE_LOG_DRIVERS = {"json-file", "local", "journald"}
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}


@dataclass
class Entry:
    """One drafted target: its fields, and why it is there when it is a guess."""

    fields: dict[str, Any]
    guessed: str = ""


@dataclass
class Draft:
    environment: str
    sections: dict[str, list[Entry]] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)  # ${VAR} -> what to put in it
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, fields: dict[str, Any], guessed: str = "") -> None:
        names = {e.fields["name"] for e in self.sections.get(section, [])}
        if fields["name"] not in names:
            self.sections.setdefault(section, []).append(Entry(fields, guessed))

    def variable(self, hint: str, *parts: str) -> str:
        name = re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper()).strip("_")
        self.variables[name] = hint
        return f"${{{name}}}"

    def render(self) -> str:
        lines = [
            f"# Drafted by `opscheck discover` for environment {self.environment}.",
            "# Review every line marked `# guessed:`; then `opscheck validate` this file.",
        ]
        if self.variables:
            lines.append("# Secrets it could not know come from the environment:")
            lines += [f"#   export {name}=...   # {hint}" for name, hint in sorted(self.variables.items())]
        lines += [f"# {note}" for note in self.notes]
        lines += [yaml.safe_dump({"environment": self.environment, "defaults": {"timeout": 5}}, sort_keys=False)]
        for section, entries in self.sections.items():
            lines.append(f"{section}:")
            for entry in entries:
                if entry.guessed:
                    lines.append(f"  # guessed: {entry.guessed}")
                body = yaml.safe_dump([entry.fields], sort_keys=False, allow_unicode=True, width=100)
                lines += ["  " + line for line in body.splitlines()]
        return "\n".join(lines) + "\n"


def slug(text: str) -> str:
    """A target name from anything (container names, URLs): [A-Za-z0-9][A-Za-z0-9_.:/-]*."""
    cleaned = re.sub(r"[^A-Za-z0-9_.:/-]+", "-", text).strip("-_.:/")
    return cleaned[:100] or "target"


# --- sources --------------------------------------------------------------------------------


def from_docker(draft: Draft, url: str, timeout: float) -> None:
    """Containers by Compose project and service; published ports; readable log drivers."""
    try:
        api = docker.APIClient(base_url=url, timeout=max(1, round(timeout)))
        listing = api.containers(all=True)
        inspected = [api.inspect_container(c["Id"]) for c in listing]
    except Exception as exc:  # noqa: BLE001 - any client error means "cannot read the engine"
        raise OpscheckError(f"docker {url}: cannot list containers: {one_line(exc)}") from None
    groups: dict[str | None, dict[str, list[dict]]] = {}
    for container in inspected:
        labels = container["Config"].get("Labels") or {}
        project, service = labels.get(COMPOSE_PROJECT), labels.get(COMPOSE_SERVICE)
        key = service if project and service else container["Name"].lstrip("/")
        groups.setdefault(project if service else None, {}).setdefault(key, []).append(container)
    for project, members in groups.items():
        target = f"docker-{slug(project)}" if project else "docker"
        containers = []
        for key, found in sorted(members.items()):
            spec: dict[str, Any] = {"name": slug(key)}
            if project:
                spec["service"] = key
                if len(found) > 1:
                    spec["replicas"] = len(found)
            else:
                spec["container"] = key
            if all(not c["State"]["Running"] and c["State"].get("ExitCode") == 0 for c in found):
                spec["one_shot"] = True
            containers.append(spec)
            _container_extras(draft, target, key, found, bool(project))
        fields: dict[str, Any] = {"name": target, "engine": url}
        if project:
            fields["compose_project"] = project
        fields["containers"] = containers
        draft.add("docker", fields)


def _container_extras(draft: Draft, target: str, key: str, found: list[dict], by_service: bool) -> None:
    container = found[0]
    driver = (container.get("HostConfig") or {}).get("LogConfig", {}).get("Type", "")
    if driver in READABLE_LOG_DRIVERS:
        source = {"name": f"{slug(key)}-log", "docker": target, ("service" if by_service else "container"): key}
        draft.add("logs", {**source, "error_rate": {"max_per_hour": 10}}, "the default error pattern and rate")
    for ports in ((container.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, bindings = ports
        if not port.endswith("/tcp") or not bindings:
            continue
        public = bindings[0].get("HostPort")
        host = bindings[0].get("HostIp") or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        if public:
            draft.add(
                "http",
                {"name": f"{slug(key)}-{public}", "url": f"http://{host}:{public}/", "expect_status": [200]},
                f"{key} publishes {port} on {public}: is it HTTP, and which path is its health endpoint?",
            )


def from_prometheus(draft: Draft, url: str, timeout: float) -> None:
    """The server, its scrape jobs, and the Alertmanagers it sends alerts to."""
    base = url.rstrip("/")

    def get(path: str) -> Any:
        try:
            response = requests.get(f"{base}{path}", timeout=(timeout, timeout), allow_redirects=False)
            response.raise_for_status()
            return response.json()["data"]
        except (requests.RequestException, ValueError, RecursionError, KeyError) as exc:
            raise OpscheckError(f"prometheus {redact.mask_url(base)}: GET {path}: {one_line(exc)}") from None

    targets = get("/api/v1/targets").get("activeTargets", [])
    jobs = sorted({t.get("labels", {}).get("job") or t.get("scrapePool", "") for t in targets} - {""})
    groups = get("/api/v1/rules").get("groups", [])
    draft.add("prometheus", {"name": "prometheus", "url": base, "expected_jobs": jobs})
    draft.notes.append(f"prometheus {redact.mask_url(base)}: {len(targets)} scrape targets, {len(groups)} rule groups")
    for i, am in enumerate(get("/api/v1/alertmanagers").get("activeAlertmanagers", [])):
        am_url = re.sub(r"/api/v[12]/alerts/?$", "", am.get("url", ""))
        if am_url:
            draft.add("alertmanager", {"name": "alertmanager" if i == 0 else f"alertmanager-{i}", "url": am_url})


def from_host(draft: Draft, spec: str, timeout: float) -> None:
    """Listening TCP ports, and a target of the matching family for well-known ones."""
    try:
        result = run_script(spec, sweep_script(Host(name="discovered", spec=spec)), command_seconds(timeout))
        facts = parse(result.stdout)
    except Exception as exc:  # noqa: BLE001 - any backend error means "cannot read the host"
        raise OpscheckError(f"host {spec}: cannot read it: {one_line(exc)}") from None
    local = spec.startswith("local://")
    address = "127.0.0.1" if local else re.sub(r"^\w+://(?:[^@/]*@)?([^:/?]+).*$", r"\1", spec)
    ports = sorted({port for addr, port in facts.listening if not addr.startswith("127.") or local})
    name = "localhost" if local else slug(address)
    draft.add("hosts", {"name": name, "spec": spec, "ports": ports}, "every port that listens now must keep listening")
    for port in ports:
        family = KNOWN_PORTS.get(port)
        if family:
            _known_port(draft, family, address, port)


def from_kubeconfig(draft: Draft, where: str, timeout: float) -> None:
    """The namespaces of a cluster and the workloads running in each (`PATH` or `PATH#context`)."""
    path, _, context = where.partition("#")
    name = slug(context or Path(path).stem or "cluster")
    cluster = Kubernetes(name=name, kubeconfig=path, context=context or None)
    client = KubeClient(cluster, timeout)
    try:
        names = sorted(n["metadata"]["name"] for n in client.objects("namespaces"))
        namespaces = []
        for namespace in (n for n in names if n not in SYSTEM_NAMESPACES):
            entry: dict[str, Any] = {"name": namespace}
            for kind in ("deployments", "statefulsets", "daemonsets"):
                found = sorted(o["metadata"]["name"] for o in client.objects(kind, namespace))
                if found:
                    entry[kind] = found
            namespaces.append(entry)
    finally:
        client.close()
    fields: dict[str, Any] = {"name": name, "kubeconfig": path}
    if context:
        fields["context"] = context
    fields["namespaces"] = namespaces
    draft.add("kubernetes", fields, "every namespace but the system ones, with the workloads that run there now")


def _known_port(draft: Draft, family: str, address: str, port: int) -> None:
    name = f"{family}-{port}"
    why = f"something listens on {address}:{port}, the usual {family} port"
    if family == "postgres":
        dsn = draft.variable(f"postgresql://opscheck:PASSWORD@{address}:{port}/DBNAME", name, "dsn")
        draft.add("postgres", {"name": name, "dsn": dsn}, why)
    elif family == "pgbouncer":
        dsn = draft.variable(f"postgresql://STATS_USER:PASSWORD@{address}:{port}/pgbouncer", name, "dsn")
        draft.add("pgbouncer", {"name": name, "dsn": dsn}, why)
    elif family == "redis":
        url = draft.variable(f"redis://opscheck:PASSWORD@{address}:{port}/0", name, "url")
        draft.add("redis", {"name": name, "url": url}, why)
    elif family in ("prometheus", "alertmanager"):
        if not draft.sections.get(family):
            draft.add(family, {"name": family, "url": f"http://{address}:{port}"}, why)
    elif family == "tls":
        draft.add("tls", {"name": name, "host": address, "port": port}, why + " (TLS): which name must it serve?")


# --- the command ----------------------------------------------------------------------------


def add_command(commands) -> None:
    cmd = commands.add_parser(
        "discover",
        help="draft an inventory from a running Docker engine, Prometheus and host",
        description=(__doc__ or "").split("\n\n")[0],
    )
    cmd.add_argument("--environment", default="discovered", help="the draft's environment name")
    cmd.add_argument("--docker", action="append", default=[], metavar="URL", help="a Docker engine (repeatable)")
    cmd.add_argument("--prometheus", action="append", default=[], metavar="URL", help="a Prometheus (repeatable)")
    cmd.add_argument("--host", action="append", default=[], metavar="SPEC", help="a host: local://, ssh://... ")
    cmd.add_argument(
        "--kubeconfig", action="append", default=[], metavar="PATH[#CONTEXT]", help="a cluster (repeatable)"
    )
    cmd.add_argument("--timeout", type=float, default=5, help="seconds per call (default 5)")
    cmd.add_argument("-o", "--output", metavar="PATH", help="write the draft here (default: standard output)")
    cmd.set_defaults(func=run)


def run(args) -> int:
    if not (args.docker or args.prometheus or args.host or args.kubeconfig):
        print(
            "opscheck discover: name at least one source: --docker, --prometheus, --host or --kubeconfig",
            file=sys.stderr,
        )
        return USAGE_ERROR
    if args.timeout <= 0:
        print("opscheck discover: --timeout must be > 0", file=sys.stderr)
        return USAGE_ERROR
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.environment):
        print("opscheck discover: --environment: letters, digits, _ . - only", file=sys.stderr)
        return USAGE_ERROR
    draft = Draft(args.environment)
    failures = []
    sources: list[tuple[Callable[[Draft, str, float], None], str]] = [(from_docker, u) for u in args.docker]
    sources += [(from_prometheus, u) for u in args.prometheus] + [(from_host, s) for s in args.host]
    sources += [(from_kubeconfig, k) for k in args.kubeconfig]
    for _, where in sources:
        redact.register(where)  # a URL's password or token: never in a message
    for read, where in sources:
        try:
            read(draft, where, args.timeout)
        except OpscheckError as exc:
            failures.append(str(exc))
    for failure in failures:
        print(f"opscheck discover: {redact.redact(failure)}", file=sys.stderr)
    text = draft.render()
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:  # the draft is not lost: it goes to stdout
            why = exc.strerror or type(exc).__name__
            print(f"opscheck discover: cannot write {args.output} ({why}): the draft follows", file=sys.stderr)
            sys.stdout.write(text)
            return USAGE_ERROR
        print(f"opscheck discover: draft written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if failures else 0
