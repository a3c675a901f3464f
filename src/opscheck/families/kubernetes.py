"""Kubernetes clusters through the API server, with the official `kubernetes` client.

Each `kubernetes` target is one cluster (a kubeconfig path and context, or the pod's service
account) and the namespaces whose state the checks judge. What the selected checks read is
known after collection (`READS`): the client lists each kind once per namespace per run
(`gather()` does all of them concurrently, right after the API server answered /version),
and every check judges the shared lists. A dead API server costs one timeout; the other
checks of the cluster say "blocked: ...".

Read-only by construction: the client's HTTP transport refuses any method but GET before a
byte is sent. The one other request is the opt-in in-pod probe (exec: a GET upgraded to a
WebSocket), made only for the probes the inventory lists, bounded by `exec_timeout` inside
the container and on this side. Secrets are never listed: ConfigMaps are read by name, for
their keys only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from opscheck.core import jsondoc, redact, times
from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import InventoryCheck, Item, Model, Param, Severity, Target, check_marks
from opscheck.core.redact import clip_line, mask_url
from opscheck.core.times import Duration, bounded_shell, parse_duration, parse_time
from opscheck.core.web import API_MAX_BYTES, proxies_for, read_body

if TYPE_CHECKING:
    import croniter
    import websocket
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes import stream as k8s_stream
    from kubernetes import utils as k8s_utils
else:
    k8s_client = optional("kubernetes.client", "kubernetes")
    k8s_config = optional("kubernetes.config", "kubernetes")
    k8s_stream = optional("kubernetes.stream", "kubernetes")
    websocket = optional("websocket", "kubernetes")
    k8s_utils = optional("kubernetes.utils", "kubernetes")
    croniter = optional("croniter", "kubernetes")

# A Kubernetes object name (DNS-1123 subdomain) and a namespace (DNS-1123 label).
K8sName = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
NamespaceName = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
PAGE = 500  # objects per list request (a bigger namespace is read in pages, still one list)
EVENT_REASONS_DEFAULT = None  # every Warning reason


# --- label selectors: matched here, on the shared pod list ----------------------------------

_REQUIREMENT = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*(?:,|$)"
)


Requirement = tuple[str, str, tuple[str, ...]]  # (key, op, values) of a label selector


def parse_selector(text: str) -> list[Requirement]:
    """`app=api,tier!=db,env in (a,b),!canary` -> [(key, op, values)]; ValueError if malformed."""
    found: list[Requirement] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _REQUIREMENT.match(text, position)
        if not match or match.end() == position:
            raise ValueError(f"not a label selector: {text!r} (e.g. app=api-gateway,tier in (web,api))")
        if match.group("absent"):
            found.append((match.group("absent"), "!", ()))
        elif match.group("setop"):
            values = tuple(v.strip() for v in match.group("values").split(",") if v.strip())
            found.append((match.group("key"), match.group("setop"), values))
        elif match.group("op"):
            found.append((match.group("key"), "!=" if match.group("op") == "!=" else "=", (match.group("value"),)))
        else:
            found.append((match.group("key"), "exists", ()))
        position = match.end()
    return found


def selector_matches(requirements: list[Requirement], labels: dict[str, str]) -> bool:
    """Whether labels meet every requirement (the API server's rules; an empty selector matches all)."""
    for key, op, values in requirements:
        present, value = key in labels, labels.get(key)
        ok = {
            "=": present and value == values[0],
            "!=": value != values[0],
            "in": present and value in values,
            "notin": value not in values,
            "exists": present,
            "!": not present,
        }[op]
        if not ok:
            return False
    return True


def spec_selector(selector: dict | None) -> list[Requirement]:
    """A workload's spec.selector (matchLabels, matchExpressions) as requirements."""
    selector = selector or {}
    found: list[Requirement] = [(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expression in selector.get("matchExpressions") or []:
        found.append((expression["key"], ops[expression["operator"]], tuple(expression.get("values") or ())))
    return found


def valid_selector(value: str | None) -> str | None:
    if value is not None:
        parse_selector(value)
    return value


# --- the inventory section -----------------------------------------------------------------


class ConfigMapKeys(Model):
    """A ConfigMap that must exist and hold these keys, each with a non-empty value (never shown)."""

    name: str = K8sName
    keys: list[str] = Field(min_length=1)


class ExpectedIngress(Model):
    """An Ingress that must exist and terminate TLS for these hosts."""

    name: str = K8sName
    tls_hosts: list[str] = Field(default_factory=list, description="hosts its spec.tls must cover")
    tls_secret: str | None = Field(default=None, description="the secret its TLS section must name")


class ExpectedCertificate(Model):
    """A cert-manager Certificate that must exist, be Ready and cover these names."""

    name: str = K8sName
    dns_names: list[str] = Field(default_factory=list, description="names spec.dnsNames must include")


class Probe(InventoryCheck):
    """An opt-in check run inside an existing pod (exec): HTTP GET, TCP connect, DNS, connections.

    Never `kubectl run`: a probe only execs into a pod that already runs, with a timeout.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=100)
    severity: Severity = "p1"
    pod: str | None = Field(default=None, description="the pod to exec into")
    deployment: str | None = Field(default=None, description="or: a Ready pod of this Deployment")
    selector: str | None = Field(default=None, description="or: a Ready pod matching this label selector")
    container: str | None = Field(default=None, description="default: the pod's first container")
    http: str | None = Field(default=None, description="http(s) URL that must answer 2xx/3xx (curl, wget or nc)")
    tcp: str | None = Field(default=None, description="host:port that must accept a TCP connection")
    resolve: str | None = Field(default=None, description="a DNS name that must resolve (getent or nslookup)")
    expect_service: str | None = Field(default=None, description="`resolve` must return this Service's ClusterIP")
    expect_address: str | None = Field(default=None, description="`resolve` must return this address")
    established: int | None = Field(
        default=None, gt=0, lt=65536, description="count ESTABLISHED TCP connections to this remote port"
    )
    min_connections: int = Field(default=1, ge=0)
    max_connections: int | None = Field(default=None, ge=0)

    _check_selector = field_validator("selector")(valid_selector)

    @model_validator(mode="after")
    def _one_pod_one_probe(self):
        if sum(bool(x) for x in (self.pod, self.deployment, self.selector)) != 1:
            raise ValueError("give one of pod, deployment or selector")
        if sum(x is not None for x in (self.http, self.tcp, self.resolve, self.established)) != 1:
            raise ValueError("give one of http, tcp, resolve or established")
        if (self.expect_service or self.expect_address) and not self.resolve:
            raise ValueError("expect_service and expect_address go with resolve")
        if self.http and not self.http.startswith(("http://", "https://")):
            raise ValueError("http: an http:// or https:// URL")
        if self.tcp and not re.fullmatch(r"\S+:\d{1,5}", self.tcp):
            raise ValueError("tcp: host:port")
        return self

    def what(self) -> str:
        if self.http:
            return f"GET {self.http}"
        if self.tcp:
            return f"TCP {self.tcp}"
        if self.resolve:
            return f"resolve {self.resolve}"
        return f"ESTABLISHED connections to port {self.established}"


class Namespace(Model):
    """A namespace and what must be true in it. Every pod, workload, Service, Ingress, Job and
    Certificate found in it is judged; the lists name what must exist besides."""

    name: str = NamespaceName
    deployments: list[str] = Field(default_factory=list, description="Deployments that must exist")
    statefulsets: list[str] = Field(default_factory=list, description="StatefulSets that must exist")
    daemonsets: list[str] = Field(default_factory=list, description="DaemonSets that must exist")
    configmaps: list[ConfigMapKeys] = Field(default_factory=list)
    network_policies: list[str] = Field(default_factory=list, description="NetworkPolicies that must exist")
    ingresses: list[ExpectedIngress] = Field(default_factory=list)
    certificates: list[ExpectedCertificate] = Field(default_factory=list)
    ignore_services: list[str] = Field(default_factory=list, description="Services allowed to have no endpoints")
    event_reasons: list[str] | None = Field(
        default=EVENT_REASONS_DEFAULT, description="Warning event reasons that fail (default: every reason)"
    )
    events_max: int = Field(default=0, ge=0, description="Warning events allowed in the window")
    probes: list[Probe] = Field(default_factory=list, description="opt-in in-pod checks (exec)")
    may_be_empty: bool = Field(
        default=False, description="a namespace without pods passes (default: it fails: a typo, or it is gone)"
    )
    severity_overrides: dict[str, Severity] = Field(
        default_factory=dict, description="a check's severity for this namespace: {check_name: p1}"
    )

    @model_validator(mode="after")
    def _unique(self):
        for what, names in (
            ("probe", [p.name for p in self.probes]),
            ("configmap", [c.name for c in self.configmaps]),
            ("ingress", [i.name for i in self.ingresses]),
            ("certificate", [c.name for c in self.certificates]),
        ):
            if len(names) != len(set(names)):
                raise ValueError(f"duplicate {what} names")
        return self

    def workloads(self) -> list[tuple[str, str]]:
        """(kind, name) of every workload the inventory names."""
        return (
            [("deployment", n) for n in self.deployments]
            + [("statefulset", n) for n in self.statefulsets]
            + [("daemonset", n) for n in self.daemonsets]
        )


class Kubernetes(Target):
    """A Kubernetes cluster, reached through its API server, and the namespaces to judge."""

    kubeconfig: str | None = Field(default=None, description="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    context: str | None = Field(default=None, description="kubeconfig context (default: its current-context)")
    in_cluster: bool = Field(default=False, description="use the pod's service account (opscheck runs in the cluster)")
    namespaces: list[Namespace] = Field(default_factory=list)
    nodes: bool = Field(default=True, description="check the nodes (needs list on nodes, cluster-wide)")
    all_namespaces: bool = Field(default=False, description="also look for stuck pods in every namespace")
    cert_manager: bool = Field(default=False, description="cert-manager is installed: judge every Certificate")
    metrics: bool = Field(default=True, description="usage checks where metrics-server answers")
    pending_grace: Duration = Field(default="5m", description="a pod Pending or unready longer than this is stuck")
    restarts_max: int = Field(default=0, ge=0, description="container restarts allowed since the last run")
    cronjob_grace: Duration = Field(default="1h", description="how long a scheduled run may take to succeed")
    node_cpu_max_pct: float = Field(default=80, gt=0, description="of the node's allocatable CPU")
    node_memory_max_pct: float = Field(default=85, gt=0, description="of the node's allocatable memory")
    pod_cpu_max_pct: float = Field(default=90, gt=0, description="of the container's CPU limit")
    pod_memory_max_pct: float = Field(default=90, gt=0, description="of the container's memory limit")
    warn_days: float = Field(default=30, gt=0, description="Certificates expiring sooner warn (p2); as the tls family")
    crit_days: float = Field(default=14, gt=0, description="Certificates expiring sooner are critical (p0)")
    exec_timeout: float = Field(default=10, gt=0, le=120, description="seconds for an opt-in in-pod probe")

    @model_validator(mode="after")
    def _consistent(self):
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ValueError("in_cluster uses the service account: drop kubeconfig and context")
        names = [n.name for n in self.namespaces]
        if len(names) != len(set(names)):
            raise ValueError("duplicate namespace names")
        if self.warn_days < self.crit_days:
            raise ValueError("warn_days must not be below crit_days")
        for namespace in self.namespaces:
            both = set(namespace.severity_overrides) & set(self.severity_overrides)
            if both:
                raise ValueError(
                    f"namespace {namespace.name}: {sorted(both)[0]} is overridden for the cluster and the namespace"
                )
        return self

    @property
    def shown(self) -> str:
        where = "in-cluster service account" if self.in_cluster else f"context {self.context or '(current)'}"
        return f'kubernetes "{self.name}" ({where})'


# --- what each check argument reads -----------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One listable kind: the client class and method, or a custom resource's group/version."""

    shown: str  # plural name, as RBAC and kubectl name it
    api: str = "CoreV1Api"
    method: str = ""
    group: str = ""  # custom resources: through CustomObjectsApi
    version: str = ""
    cluster: bool = False
    query: tuple[tuple[str, str], ...] = ()


KINDS: dict[str, Kind] = {
    "pods": Kind("pods", method="list_namespaced_pod"),
    "services": Kind("services", method="list_namespaced_service"),
    "events": Kind("events", method="list_namespaced_event", query=(("field_selector", "type=Warning"),)),
    "deployments": Kind("deployments", "AppsV1Api", "list_namespaced_deployment"),
    "statefulsets": Kind("statefulsets", "AppsV1Api", "list_namespaced_stateful_set"),
    "daemonsets": Kind("daemonsets", "AppsV1Api", "list_namespaced_daemon_set"),
    "hpas": Kind("horizontalpodautoscalers", "AutoscalingV2Api", "list_namespaced_horizontal_pod_autoscaler"),
    "jobs": Kind("jobs", "BatchV1Api", "list_namespaced_job"),
    "cronjobs": Kind("cronjobs", "BatchV1Api", "list_namespaced_cron_job"),
    "endpointslices": Kind("endpointslices", "DiscoveryV1Api", "list_namespaced_endpoint_slice"),
    "ingresses": Kind("ingresses", "NetworkingV1Api", "list_namespaced_ingress"),
    "networkpolicies": Kind("networkpolicies", "NetworkingV1Api", "list_namespaced_network_policy"),
    "certificates": Kind("certificates", group="cert-manager.io", version="v1"),
    "certificaterequests": Kind("certificaterequests", group="cert-manager.io", version="v1"),
    "podmetrics": Kind("pods", group="metrics.k8s.io", version="v1beta1"),
    "nodes": Kind("nodes", method="list_node", cluster=True),
    "namespaces": Kind("namespaces", method="list_namespace", cluster=True),
    "nodemetrics": Kind("nodes", group="metrics.k8s.io", version="v1beta1", cluster=True),
    # Pending, Failed and Unknown pods of every namespace (Running and Succeeded are filtered out)
    "stuckpods": Kind(
        "pods",
        method="list_pod_for_all_namespaces",
        cluster=True,
        query=(("field_selector", "status.phase!=Running,status.phase!=Succeeded"),),
    ),
}
WORKLOAD_KINDS = {"deployment": "deployments", "statefulset": "statefulsets", "daemonset": "daemonsets"}

# argname -> the kinds its checks read (namespaced kinds: in the check's namespace)
READS: dict[str, tuple[str, ...]] = {
    "k8s_pods": ("pods",),
    "k8s_pod_usage": ("pods", "podmetrics"),
    "k8s_workloads": ("deployments", "statefulsets", "daemonsets"),
    "k8s_workload": (),  # its own kind, below
    "k8s_hpas": ("hpas",),
    "k8s_jobs": ("jobs", "cronjobs"),
    "k8s_services": ("services", "endpointslices"),
    "k8s_ingresses": ("ingresses", "services", "endpointslices"),
    "k8s_ingress": ("ingresses",),
    "k8s_certificates": ("certificates",),
    "k8s_certificate": ("certificates", "certificaterequests"),
    "k8s_events": ("events",),
    "k8s_network_policy": ("networkpolicies",),
    "k8s_configmap": (),  # its ConfigMap by name, below
    "k8s_probe": ("pods",),
    "k8s_nodes": ("nodes",),
    "k8s_node_usage": ("nodes", "nodemetrics"),
    "k8s_all_pods": ("stuckpods",),
}
USAGE_ARGNAMES = ("k8s_pod_usage", "k8s_node_usage")  # deselected where metrics-server does not answer


def reads(argname: str, value: Any) -> list[tuple[str, str | None]]:
    """(kind, namespace) pairs a check argument's value needs listed."""
    kinds = READS.get(argname)
    if kinds is None:
        return []
    namespace = _namespace_of(value)
    found = [(k, None if KINDS[k].cluster else namespace) for k in kinds]
    if argname == "k8s_workload":
        found.append((WORKLOAD_KINDS[value.value[1]], namespace))
    if argname == "k8s_configmap":
        found.append((f"configmap/{value.value[1].name}", namespace))  # read by name: gather() gets it
    if argname == "k8s_probe":
        probe = value.value[1]
        if probe.deployment:
            found.append(("deployments", namespace))
        if probe.expect_service:
            found.append(("services", namespace))
    return found


def _namespace_of(value: Any) -> str | None:
    inner = value.value if isinstance(value, Item) else None
    if isinstance(inner, Namespace):
        return inner.name
    if isinstance(inner, tuple) and inner and isinstance(inner[0], Namespace):
        return inner[0].name
    return None


def namespace_of(value: Any) -> Namespace | None:
    """The namespace a check argument's value belongs to (None for cluster checks)."""
    inner = value.value if isinstance(value, Item) else None
    if isinstance(inner, Namespace):
        return inner
    if isinstance(inner, tuple) and inner and isinstance(inner[0], Namespace):
        return inner[0]
    return None


# --- the client --------------------------------------------------------------------------------


class KubeClient(TargetReader):
    """One API client per cluster per run: each kind listed once per namespace, shared."""

    def __init__(self, target: Kubernetes, timeout: float):
        super().__init__()
        self.target, self.timeout = target, timeout
        self.needs: set[tuple[str, str | None]] = set()
        self._api: Any = None
        self._host = ""
        self._gathered = False
        self._gather_lock = threading.Lock()
        self._api_lock = threading.Lock()

    @property
    def shown(self) -> str:
        return self.target.shown[:-1] + (f", {mask_url(self._host)})" if self._host else ")")

    def need(self, kind: str, namespace: str | None) -> None:
        """Note a list the selected checks will read (gather() reads them all at once)."""
        self.needs.add((kind, namespace))

    # --- the transport: configuration, GET only, errors ------------------------------------

    def api(self) -> Any:
        """The ApiClient (configuration loaded on first use); its transport sends GET only."""
        with self._api_lock:
            self.unreachable.check()
            if self._api is None:
                # proxies from the run's snapshot of the environment, not from os.environ on this
                # (gather) thread: kubernetes 37 walks os.environ in Configuration(), while pytest
                # deletes PYTEST_CURRENT_TEST between phases (a KeyError failed a healthy check in CI)
                configuration = k8s_client.Configuration(proxy="", no_proxy="")
                try:
                    if self.target.in_cluster:
                        k8s_config.load_incluster_config(client_configuration=configuration)
                    else:
                        path = str(Path(self.target.kubeconfig).expanduser()) if self.target.kubeconfig else None
                        k8s_config.load_kube_config(
                            config_file=path,
                            context=self.target.context,
                            client_configuration=configuration,
                            persist_config=False,
                        )
                except Exception as exc:  # noqa: BLE001 - ConfigException, a missing file, bad YAML
                    self.unreachable.fail(f"{self.shown}: cannot load the cluster configuration: {one_line(exc)}")
                _register_credentials(configuration)
                scheme = urlsplit(configuration.host).scheme
                configuration.proxy = proxies_for(configuration.host).get(scheme) or None
                configuration.retries = 0  # one attempt per call: a dead server costs one timeout
                self._host = configuration.host
                api = k8s_client.ApiClient(configuration)
                _get_only(api)
                self._api = api
            return self._api

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One GET through the client, bounded by the timeout; its failure explained."""
        try:
            return fn(*args, _preload_content=False, _request_timeout=(self.timeout, self.timeout), **kwargs)
        except k8s_client.ApiException as exc:
            raise ApiError(f"{self.shown}: {what}: {api_error(exc)}", exc.status, api_error(exc)) from None
        except OpscheckError:
            raise
        except Exception as exc:  # noqa: BLE001 - urllib3: refused, timed out, reset, TLS
            self.unreachable.fail(f"{self.shown}: {what}: {_transport_error(exc)}")

    def _json(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
        response = self._call(what, fn, *args, **kwargs)
        try:  # bounded in time and size: a server that freezes or drips mid-body costs one timeout
            raw = read_body(response, API_MAX_BYTES, 2 * self.timeout)
        except (TimeoutError, ConnectionError) as exc:
            with self.lock:
                self.unreachable.fail(f"{self.shown}: {what}: {exc}")
        finally:
            release = getattr(response, "release_conn", None)
            if release:
                release()
        if len(raw) > API_MAX_BYTES:
            raise OpscheckError(f"{self.shown}: {what}: the answer is larger than {API_MAX_BYTES // 1048576} MB")
        try:
            data = jsondoc.loads(raw)  # bytes: json detects the encoding
        except ValueError:
            raise OpscheckError(
                f"{self.shown}: {what}: the API server answered with something else than JSON"
            ) from None
        if not isinstance(data, dict):
            raise OpscheckError(f"{self.shown}: {what}: unexpected answer")
        return data

    # --- reads -------------------------------------------------------------------------

    def version(self) -> dict:
        """The API server's /version: proves it answers (the first read of a run)."""
        return self.once("version", lambda: self._json("GET /version", k8s_client.VersionApi(self.api()).get_code))

    def objects(self, kind: str, namespace: str | None = None) -> list[dict]:
        """Every object of a kind in a namespace (or the cluster), read once per run, in pages."""
        return self.once((kind, namespace), lambda: self._list(kind, namespace))

    def _list(self, kind: str, namespace: str | None) -> list[dict]:
        spec = KINDS[kind]
        where = f" in namespace {namespace}" if namespace else ""
        what = f"listing {spec.group + '/' if spec.group else ''}{spec.shown}{where}"
        items: list[dict] = []
        token = None
        while True:
            kwargs: dict[str, Any] = dict(spec.query, limit=PAGE)
            if token:
                kwargs["_continue"] = token
            if spec.group:
                custom = k8s_client.CustomObjectsApi(self.api())
                if spec.cluster:
                    page = self._json(
                        what, custom.list_cluster_custom_object, spec.group, spec.version, spec.shown, **kwargs
                    )
                else:
                    page = self._json(
                        what,
                        custom.list_namespaced_custom_object,
                        spec.group,
                        spec.version,
                        namespace,
                        spec.shown,
                        **kwargs,
                    )
            else:
                method = getattr(getattr(k8s_client, spec.api)(self.api()), spec.method)
                page = (
                    self._json(what, method, **kwargs)
                    if spec.cluster
                    else self._json(what, method, namespace, **kwargs)
                )
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def get_configmap(self, namespace: str, name: str) -> dict | None:
        """One ConfigMap by name (None if it does not exist), read once per run."""

        def read() -> dict | None:
            core = k8s_client.CoreV1Api(self.api())
            try:
                return self._json(
                    f"reading configmap {name} in namespace {namespace}",
                    core.read_namespaced_config_map,
                    name,
                    namespace,
                )
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise

        return self.once(("configmap", namespace, name), read)

    def metrics_probe(self) -> str:
        """'present', 'absent: <why>' or 'error: <connection error>' for metrics.k8s.io (collection time).

        A connection error is kept (no second attempt) but not counted as shown: the first
        check on this cluster reports it as its own failure.
        """
        try:
            self.version()
            custom = k8s_client.CustomObjectsApi(self.api())
            self._json("GET /apis/metrics.k8s.io/v1beta1", custom.get_api_resources, "metrics.k8s.io", "v1beta1")
            return "present"
        except ApiError as exc:
            return f"absent: metrics.k8s.io answers {exc.detail}"
        except OpscheckError as exc:
            error = self.unreachable.error
            if error is None:
                return f"absent: {exc}"
            self.unreachable.keep(error, reported=False)
            return f"error: {error}"

    def seed_error(self, error: str) -> None:
        """Take over a connection error another xdist worker met (no second timeout)."""
        self.unreachable.keep(error, reported=False)

    def gather(self) -> None:
        """Perform every list (and ConfigMap get) the selected checks need, concurrently, once per run.

        /version first: a dead API server then costs one timeout, not one per list. Failures
        are kept for the checks that read them (a connection error is not counted as shown,
        so the first check reports it itself); gather() never raises.
        """
        with self._gather_lock:
            if self._gathered:
                return
            self._gathered = True
        try:
            self.version()
        except OpscheckError:
            self._unshown()
            return
        needs = sorted(self.needs, key=lambda n: (n[0], n[1] or ""))
        if not needs:
            return

        def one(need: tuple[str, str | None]) -> None:
            kind, namespace = need
            with contextlib.suppress(OpscheckError):  # kept for the checks that read it
                if kind.startswith("configmap/"):
                    self.get_configmap(namespace or "", kind.removeprefix("configmap/"))
                else:
                    self.objects(kind, namespace)

        with ThreadPoolExecutor(max_workers=min(8, len(needs))) as pool:
            list(pool.map(one, needs))
        self._unshown()

    def _unshown(self) -> None:
        if self.unreachable.error is not None:
            self.unreachable.keep(self.unreachable.error, reported=False)

    # --- pod logs and exec ---------------------------------------------------------------

    def pod_log(
        self, namespace: str, pod: str, container: str, since_seconds: int, limit_bytes: int, tail_lines: int
    ) -> bytes:
        """A container's log: sinceSeconds, limitBytes and tailLines bound what the server sends."""
        core = k8s_client.CoreV1Api(self.api())
        response = self._call(
            f"reading the log of {pod}/{container} in namespace {namespace}",
            core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            since_seconds=max(1, since_seconds),
            limit_bytes=limit_bytes,
            tail_lines=tail_lines,
            timestamps=True,
        )
        try:
            return response.read(limit_bytes + 65536) if hasattr(response, "read") else response.data
        finally:
            release = getattr(response, "release_conn", None)
            if release:
                release()

    def exec(self, namespace: str, pod: str, container: str, script: str) -> tuple[int, str]:
        """Run a read-only shell script in a container, bounded by exec_timeout inside and here."""
        command = bounded_shell(script, self.target.exec_timeout)
        core = k8s_client.CoreV1Api(self.api())
        # the client opens the WebSocket without a timeout of its own: bound its connect and reads
        websocket.setdefaulttimeout(self.timeout)
        try:
            ws = k8s_stream.stream(
                core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                container=container,
                command=command,
                stderr=True,
                stdout=True,
                stdin=False,
                tty=False,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except k8s_client.ApiException as exc:
            raise OpscheckError(f"{self.shown}: exec in {namespace}/{pod}: {api_error(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - the WebSocket handshake failed
            raise OpscheckError(f"{self.shown}: exec in {namespace}/{pod}: {one_line(exc, 300)}") from None
        try:
            ws.run_forever(timeout=self.target.exec_timeout + self.timeout)
            output = ws.read_stdout() + ws.read_stderr()
            code = ws.returncode if not ws.is_open() else 124
        finally:
            ws.close()
        return (code if code is not None else -1), output

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


class ApiError(OpscheckError):
    """The API server answered with an error status (403, 404, ...): the server is reachable."""

    def __init__(self, message: str, status: int, detail: str):
        super().__init__(message)
        self.status, self.detail = status, detail

    def __copy__(self) -> ApiError:
        return ApiError(str(self), self.status, self.detail)


def _get_only(api: Any) -> None:
    """Make the client's HTTP transport refuse every method but GET, before anything is sent."""
    pool = api.rest_client.pool_manager
    send = pool.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() != "GET":
            raise OpscheckError(f"refused to send {method} {url.split('?')[0]}: checks are read-only (GET only)")
        return send(method, url, *args, **kwargs)

    pool.request = request


def api_error(exc: Any) -> str:
    """`403 Forbidden: pods is forbidden: User ... cannot list ...` from an ApiException."""
    message = ""
    try:
        body = jsondoc.loads(exc.body or "{}")
        message = body.get("message", "") if isinstance(body, dict) else ""
    except (TypeError, ValueError):
        message = ""
    hint = {
        401: " (the credentials were refused)",
        403: " (grant get/list/watch on it: see the README's ClusterRole)",
        404: " (not served: is the API or the CRD installed?)",
        503: " (the API service is unavailable)",
    }.get(exc.status, "")
    return f"{exc.status} {exc.reason}" + (f": {clip_line(message, 300)}" if message else "") + hint


def _register_credentials(configuration: Any) -> None:
    """The kubeconfig's token, password and Basic value: an API error may echo them."""
    for value in (configuration.api_key or {}).values():
        redact.register(value)  # "Bearer <token>": the value and its token
    if configuration.password:
        redact.register(configuration.password)
        redact.register(configuration.get_basic_auth_token())  # "Basic <base64 of user:password>"


def _transport_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError wraps the cause
    text = one_line(reason if isinstance(reason, BaseException) else exc, 300)
    return ("timed out: " if "timed out" in text.lower() else "cannot connect: ") + text


# --- judging what was read --------------------------------------------------------------------


def name_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "?")


def owner_kinds(obj: dict) -> set[str]:
    return {o.get("kind", "") for o in (obj.get("metadata") or {}).get("ownerReferences") or []}


def ago(when: datetime | None, now: datetime) -> str:
    return "at an unknown time" if when is None else times.ago(when, now)


def minutes(delta: timedelta) -> str:
    """'10 min', '1.5 min' (a whole minute shows no fraction)."""
    value = delta.total_seconds() / 60
    return f"{value:.0f} min" if value >= 10 or value.is_integer() else f"{value:.1f} min"


@dataclass
class PodView:
    """What `kubectl get pods` shows of one pod, and the details a failure names."""

    name: str
    phase: str
    ready: int
    total: int
    status: str  # kubectl's STATUS column: CrashLoopBackOff, Init:ImagePullBackOff, Completed, ...
    restarts: int
    job: bool
    created: datetime | None
    ready_since: datetime | None  # the Ready condition's last transition
    waiting: list[str] = field(default_factory=list)  # "container: reason (message)"
    terminated: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.name} {self.ready}/{self.total} {self.status}"
        if self.restarts:
            text += f" (restarts {self.restarts})"
        return text


BAD_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "ErrImageNeverPull",
}


def pod_view(pod: dict) -> PodView:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    phase = status.get("phase") or "Unknown"
    containers = status.get("containerStatuses") or []
    waiting, terminated, shown = [], [], status.get("reason") or phase
    for init in status.get("initContainerStatuses") or []:
        state = init.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            shown = f"Init:{state['waiting']['reason']}"
            waiting.append(f"init {init.get('name')}: {_reason(state['waiting'])}")
            break
        if "terminated" in state and state["terminated"].get("exitCode", 0) != 0:
            shown = f"Init:{state['terminated'].get('reason') or 'Error'}"
            terminated.append(f"init {init.get('name')}: exit {state['terminated'].get('exitCode')}")
            break
    else:
        for c in containers:
            state = c.get("state") or {}
            if "waiting" in state and state["waiting"].get("reason"):
                shown = state["waiting"]["reason"]
                waiting.append(f"{c.get('name')}: {_reason(state['waiting'])}")
            elif "terminated" in state:
                t = state["terminated"]
                shown = t.get("reason") or ("Completed" if t.get("exitCode") == 0 else "Error")
                terminated.append(f"{c.get('name')}: {shown}, exit {t.get('exitCode')}")
    if meta.get("deletionTimestamp"):
        shown = "Terminating"
    ready_condition: dict = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return PodView(
        name=meta.get("name", "?"),
        phase=phase,
        ready=sum(1 for c in containers if c.get("ready")),
        total=len((pod.get("spec") or {}).get("containers") or containers),
        status=shown,
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        job="Job" in owner_kinds(pod),
        created=_time(meta.get("creationTimestamp")),
        ready_since=_time(ready_condition.get("lastTransitionTime")),
        waiting=waiting,
        terminated=terminated,
    )


def _reason(state: dict) -> str:
    message = clip_line(state.get("message") or "", 160)
    return state.get("reason", "?") + (f" ({message})" if message else "")


def _time(text: str | None) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


def pod_not_running_ready(view: PodView) -> str | None:
    """Why a pod fails "Running and Ready (or Succeeded, for a Job's pod)", or None."""
    if view.job and view.phase in ("Succeeded", "Failed"):
        return None  # a Job's finished pods: the Jobs check judges the Job
    if view.phase == "Running" and view.ready == view.total and view.total and view.status != "Terminating":
        return None
    detail = "; ".join(view.waiting + view.terminated)
    return view.line() + (f": {detail}" if detail else "")


def pod_stuck(view: PodView, now: datetime, grace: timedelta) -> str | None:
    """Why a pod is stuck (crash loop, image pull, Pending or unready beyond the grace, Unknown), or None."""
    bad = [w for w in view.waiting if w.split(": ", 1)[-1].split(" ")[0] in BAD_WAITING]
    if bad:
        return f"{view.line()}: " + "; ".join(bad)
    if view.phase == "Unknown":
        return f"{view.line()}: phase Unknown (its node stopped reporting)"
    if view.phase == "Failed" and not view.job:
        return f"{view.line()}: phase Failed" + (f" ({'; '.join(view.terminated)})" if view.terminated else "")
    if view.phase == "Pending" and view.created and now - view.created > grace:
        return f"{view.line()}: Pending for {minutes(now - view.created)} > grace {minutes(grace)}" + (
            f" ({'; '.join(view.waiting)})" if view.waiting else ""
        )
    if (
        view.phase == "Running"
        and view.ready < view.total
        and view.ready_since
        and now - view.ready_since > grace
        and view.status != "Terminating"
    ):
        return f"{view.line()}: not Ready for {minutes(now - view.ready_since)} > grace {minutes(grace)}"
    return None


def unschedulable_reason(pod: dict) -> str:
    condition: dict = next(
        (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"), {}
    )
    if condition.get("status") == "False":
        return clip_line(condition.get("message") or condition.get("reason") or "", 200)
    return ""


def oom_kills(pod: dict, since: datetime) -> list[str]:
    """Containers whose current or last termination was OOMKilled after `since`."""
    found = []
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        for which in ("state", "lastState"):
            terminated = (c.get(which) or {}).get("terminated") or {}
            finished = _time(terminated.get("finishedAt"))
            if terminated.get("reason") == "OOMKilled" and (finished is None or finished >= since):
                found.append(
                    f"{name_of(pod)}/{c.get('name')} OOMKilled (exit {terminated.get('exitCode')}, finished "
                    f"{terminated.get('finishedAt') or 'at an unknown time'}; restarts {c.get('restartCount', 0)})"
                )
                break
    return found


def container_restarts(pod: dict) -> dict[str, int]:
    """{"<pod uid>/<container>": restartCount} for the state kept between runs."""
    uid = (pod.get("metadata") or {}).get("uid") or name_of(pod)
    return {
        f"{uid}/{c.get('name')}": int(c.get("restartCount") or 0)
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    }


def recent_restart(pod: dict, since: datetime) -> list[str]:
    """Containers whose previous instance ended after `since` (a first run has no counts to compare)."""
    found = []
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (c.get("lastState") or {}).get("terminated") or {}
        finished = _time(terminated.get("finishedAt"))
        if finished and finished >= since:
            found.append((c.get("name"), terminated, int(c.get("restartCount") or 0)))
    return [
        f"{name_of(pod)}/{name} restarted at {t.get('finishedAt')} ({t.get('reason') or 'exit'} {t.get('exitCode')}; "
        f"restart count {count})"
        for name, t, count in found
    ]


def rollout_problem(kind: str, obj: dict) -> str | None:
    """Why a Deployment/StatefulSet/DaemonSet is not rolled out, as `kubectl rollout status` judges, or None."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name = f"{kind}/{meta.get('name', '?')}"
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return f"{name}: the controller has not observed generation {generation} yet (observed {observed})"
    if kind == "daemonset":
        desired = status.get("desiredNumberScheduled", 0)
        updated = status.get("updatedNumberScheduled", 0)
        available = status.get("numberAvailable", 0)
    else:
        desired = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        available = status.get("availableReplicas", 0)
    problems = []
    if kind == "deployment":
        progressing: dict = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {})
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            problems.append("progress deadline exceeded")
        total = status.get("replicas", 0)
        if total > updated:
            problems.append(f"{total - updated} old replica(s) still running")
    if kind == "statefulset" and status.get("updateRevision") and status.get("currentRevision"):
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate" and status["updateRevision"] != status["currentRevision"]:
            problems.append(f"revision {status['currentRevision']} -> {status['updateRevision']} in progress")
    if updated != desired or available != desired or problems:
        return f"{name}: {updated} updated, {available} available of {desired} desired" + (
            f" ({'; '.join(problems)})" if problems else ""
        )
    return None


def hpa_at_max(hpa: dict) -> str | None:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    maximum, current = spec.get("maxReplicas"), status.get("currentReplicas", 0)
    if maximum is None or current < maximum:
        return None
    target = (spec.get("scaleTargetRef") or {}).get("name", "?")
    metrics = []
    for metric in status.get("currentMetrics") or []:
        resource = metric.get("resource") or metric.get("containerResource") or {}
        value = (resource.get("current") or {}).get("averageUtilization")
        if resource.get("name") and value is not None:
            metrics.append(f"{resource['name']} {value}%")
    return (
        f"hpa/{name_of(hpa)} ({target}) runs {current} of max {maximum} replicas"
        + (f", desired {status.get('desiredReplicas')}" if status.get("desiredReplicas") is not None else "")
        + (f" ({', '.join(metrics)})" if metrics else "")
    )


def job_condition(job: dict) -> str:
    """'Complete', 'Failed: <reason>' or 'running'."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Complete"
        if condition.get("type") == "Failed":
            message = clip_line(condition.get("message") or "", 200)
            return f"Failed: {condition.get('reason') or ''} {message}".strip()
    return "running"


def failed_jobs(jobs: list[dict]) -> list[str]:
    """Failed Jobs: standalone ones, and each CronJob's newest finished Job when it failed."""
    newest: dict[str, dict] = {}
    problems = []
    for job in jobs:
        owner = next(
            (
                o.get("name")
                for o in (job.get("metadata") or {}).get("ownerReferences") or []
                if o.get("kind") == "CronJob"
            ),
            None,
        )
        state = job_condition(job)
        if owner is None:
            if state.startswith("Failed"):
                problems.append(f"job/{name_of(job)} {state}")
            continue
        if state == "running":
            continue
        started = _job_time(job)
        if owner not in newest or started > _job_time(newest[owner]):
            newest[owner] = job
    for owner, job in sorted(newest.items()):
        state = job_condition(job)
        if state.startswith("Failed"):
            problems.append(f"cronjob/{owner}: its last run job/{name_of(job)} {state}")
    return problems


def _job_time(job: dict) -> datetime:
    status = job.get("status") or {}
    return (
        _time(status.get("startTime"))
        or _time((job.get("metadata") or {}).get("creationTimestamp"))
        or datetime.min.replace(tzinfo=UTC)
    )


def cronjob_late(cronjob: dict, now: datetime, grace: timedelta) -> str | None:
    """Why a CronJob's last success is older than its schedule allows, or None.

    The newest scheduled time that lies more than `grace` in the past must have been
    followed by a successful run (status.lastSuccessfulTime at or after it).
    """
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    if spec.get("suspend"):
        return None
    schedule = spec.get("schedule", "")
    zone = _zone(spec.get("timeZone"))
    try:
        previous = croniter.croniter(schedule, (now - grace).astimezone(zone)).get_prev(datetime)
    except (ValueError, KeyError) as exc:
        return f"cronjob/{name_of(cronjob)}: cannot read schedule {schedule!r}: {exc}"
    previous = previous.astimezone(UTC)
    created = _time((cronjob.get("metadata") or {}).get("creationTimestamp"))
    if created and created > previous:
        return None  # created after that run was due
    success = _time(status.get("lastSuccessfulTime"))
    if success is not None and success >= previous:
        return None
    return (
        f"cronjob/{name_of(cronjob)} ({schedule}): last success {success.isoformat() if success else 'never'}, "
        f"but a run was due at {previous:%Y-%m-%d %H:%M} UTC (grace {minutes(grace)}; "
        f"last scheduled {status.get('lastScheduleTime') or 'never'})"
    )


def _zone(name: str | None):
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - an unknown zone: the controller rejects it too
        return UTC


def ready_endpoints(slices: list[dict], service: str) -> tuple[int, int]:
    """(ready, all) endpoint addresses of a Service, from its EndpointSlices."""
    ready = total = 0
    for eps in slices:
        if ((eps.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name") != service:
            continue
        for endpoint in eps.get("endpoints") or []:
            addresses = len(endpoint.get("addresses") or [])
            total += addresses
            if (endpoint.get("conditions") or {}).get("ready", True) is not False:  # nil means ready
                ready += addresses
    return ready, total


def judged_services(services: list[dict], ignore: list[str]) -> list[dict]:
    """Services that must have endpoints: not ExternalName, not headless, not ignored."""
    return [
        s
        for s in services
        if (s.get("spec") or {}).get("type") != "ExternalName"
        and (s.get("spec") or {}).get("clusterIP") != "None"
        and name_of(s) not in ignore
    ]


def ingress_backends(ingress: dict) -> list[str]:
    """The Service names an Ingress sends traffic to (default backend and every rule path)."""
    spec = ingress.get("spec") or {}
    backends = [spec.get("defaultBackend")] if spec.get("defaultBackend") else []
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            backends.append(path.get("backend"))
    names = {(b.get("service") or {}).get("name") for b in backends if b and b.get("service")}
    return sorted(n for n in names if n)


def ingress_address(ingress: dict) -> list[str]:
    found = (((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or []
    return [a.get("ip") or a.get("hostname") for a in found if a.get("ip") or a.get("hostname")]


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def certificate_not_ready(cert: dict, now: datetime) -> str | None:
    ready = condition(cert, "Ready")
    renewal = _time((cert.get("status") or {}).get("renewalTime"))
    if ready.get("status") != "True":
        message = clip_line(ready.get("message") or "", 200)
        return f"certificate/{name_of(cert)} Ready={ready.get('status', 'unknown')}" + (
            f" ({ready.get('reason')}: {message})" if ready.get("reason") or message else ""
        )
    if renewal and renewal < now - timedelta(hours=1):
        return (
            f"certificate/{name_of(cert)}: renewal was due {ago(renewal, now)} "
            f"({renewal:%Y-%m-%d %H:%M} UTC) and did not happen"
        )
    return None


def certificate_expiry(cert: dict, now: datetime, limit_days: float, level: str) -> str | None:
    not_after = _time((cert.get("status") or {}).get("notAfter"))
    if not_after is None:
        return f"certificate/{name_of(cert)} has no status.notAfter (never issued)"
    left = (not_after - now).total_seconds() / 86400
    secret = (cert.get("spec") or {}).get("secretName", "?")
    if left < 0:
        return (
            f"certificate/{name_of(cert)} (secret {secret}) EXPIRED {-left:.1f} days ago "
            f"({not_after:%Y-%m-%d %H:%M} UTC)"
        )
    if left < limit_days:
        return (
            f"certificate/{name_of(cert)} (secret {secret}) expires in {left:.1f} days < {level} {limit_days:g} days "
            f"({not_after:%Y-%m-%d %H:%M} UTC)"
        )
    return None


def failed_requests(requests: list[dict], certificate: str) -> list[str]:
    """cert-manager CertificateRequests of a Certificate that failed, were denied or are invalid."""
    found = []
    for request in requests:
        annotations = (request.get("metadata") or {}).get("annotations") or {}
        owners = {o.get("name") for o in (request.get("metadata") or {}).get("ownerReferences") or []}
        if annotations.get("cert-manager.io/certificate-name") != certificate and certificate not in owners:
            continue
        for kind in ("Ready", "Denied", "InvalidRequest"):
            c = condition(request, kind)
            bad = (kind == "Ready" and c.get("status") == "False" and c.get("reason") == "Failed") or (
                kind != "Ready" and c.get("status") == "True"
            )
            if bad:
                message = clip_line(c.get("message") or "", 200)
                found.append(f"certificaterequest/{name_of(request)} {kind} ({c.get('reason')}: {message})")
                break
    return found


def event_time(event: dict) -> datetime | None:
    """When an event last happened: series, lastTimestamp, eventTime, then creation."""
    series = event.get("series") or {}
    for text in (
        series.get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        (event.get("metadata") or {}).get("creationTimestamp"),
    ):
        when = _time(text)
        if when:
            return when
    return None


def event_line(event: dict) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    count = (event.get("series") or {}).get("count") or event.get("count") or 1
    message = clip_line(event.get("message") or event.get("note") or "", 200)
    return (
        f"{event.get('reason')} {involved.get('kind', '?').lower()}/{involved.get('name', '?')} (x{count}): {message}"
    )


def node_problems(node: dict) -> tuple[str | None, list[str]]:
    """(why the node is not Ready or None, its pressure conditions that are True)."""
    ready = condition(node, "Ready")
    not_ready = None
    if ready.get("status") != "True":
        message = clip_line(ready.get("message") or "", 200)
        not_ready = f"node/{name_of(node)} Ready={ready.get('status', 'unknown')}" + (
            f" ({ready.get('reason')}: {message})" if ready.get("reason") or message else ""
        )
    pressure = [
        f"node/{name_of(node)} {c.get('type')}" + (f" ({c.get('message')})" if c.get("message") else "")
        for c in (node.get("status") or {}).get("conditions") or []
        if c.get("type") in ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
        and c.get("status") == "True"
    ]
    return not_ready, pressure


def quantity(text: Any) -> Decimal:
    """'250m' -> 0.25, '128Mi' -> 134217728 (the client's own parser)."""
    return Decimal(k8s_utils.parse_quantity(text))


def container_limits(pod: dict) -> dict[str, dict[str, Decimal]]:
    """{container: {"cpu": cores, "memory": bytes}} from the pod spec's limits."""
    found = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        limits = (c.get("resources") or {}).get("limits") or {}
        found[c.get("name")] = {k: quantity(v) for k, v in limits.items() if k in ("cpu", "memory")}
    return found


def fmt_quantity(resource: str, value: Decimal) -> str:
    if resource == "cpu":
        return f"{value * 1000:.0f}m"
    return f"{value / 1048576:.0f}Mi"


# --- in-pod probes ----------------------------------------------------------------------------


def pick_pod(client: KubeClient, namespace: str, probe: Probe) -> tuple[dict, str]:
    """The pod (Running and Ready; the first by name) and the container a probe execs into."""
    pods = client.objects("pods", namespace)
    if probe.pod:
        chosen = [p for p in pods if name_of(p) == probe.pod]
        what = f"pod {probe.pod}"
    else:
        if probe.deployment:
            deployment = next(
                (d for d in client.objects("deployments", namespace) if name_of(d) == probe.deployment), None
            )
            if deployment is None:
                raise OpscheckError(
                    f"{client.shown}: deployment {probe.deployment} does not exist in namespace {namespace}"
                )
            requirements = spec_selector((deployment.get("spec") or {}).get("selector"))
            what = f"deployment {probe.deployment}"
        else:
            requirements = parse_selector(probe.selector or "")
            what = f"pods matching {probe.selector!r}"
        chosen = [p for p in pods if selector_matches(requirements, (p.get("metadata") or {}).get("labels") or {})]
    ready = sorted(
        (p for p in chosen if pod_not_running_ready(pod_view(p)) is None and not pod_view(p).job), key=name_of
    )
    if not ready:
        state = ", ".join(pod_view(p).line() for p in chosen) or "none exists"
        raise OpscheckError(f"{client.shown}: no Running and Ready pod for {what} in namespace {namespace} ({state})")
    pod = ready[0]
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    container = probe.container or (containers[0] if containers else "")
    if probe.container and probe.container not in containers:
        raise OpscheckError(
            f"{client.shown}: pod {name_of(pod)} has no container {probe.container} ({', '.join(containers)})"
        )
    return pod, container


RESOLVE = (
    "if command -v getent >/dev/null 2>&1; then getent hosts {name}; "
    "elif command -v nslookup >/dev/null 2>&1; then nslookup {name}; "
    "else echo 'no getent or nslookup in the container'; exit 127; fi"
)
ESTABLISHED = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"


def resolved_addresses(output: str) -> list[str]:
    """The addresses in getent or nslookup output (nslookup's own server section skipped)."""
    lines = output.splitlines()
    if any(line.startswith("Server:") for line in lines):
        lines = lines[next((i for i, line in enumerate(lines) if line.lower().startswith("name:")), len(lines)) :]
    found = []
    for line in lines:
        for word in re.split(r"[\s,]+", line):
            candidate = word.split("#")[0]
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                continue
            found.append(candidate)
    return list(dict.fromkeys(found))


def established_to(output: str, port: int) -> int:
    """ESTABLISHED TCP connections to a remote port, from /proc/net/tcp and tcp6."""
    count = 0
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 4 or ":" not in parts[2] or parts[3] != "01":
            continue
        try:
            if int(parts[2].rsplit(":", 1)[1], 16) == port:
                count += 1
        except ValueError:
            continue
    return count


# --- pod logs (a log source of the logs family) -------------------------------------------------

LOG_READERS = 8  # containers whose logs are read at once


def log_pods(kube: KubeClient, shown: str, namespace: str, selector: str | None, deployment: str | None) -> list[dict]:
    """The pods a log source reads (its Deployment's, or its selector's), from the shared pod list."""
    if deployment:
        found = [d for d in kube.objects("deployments", namespace) if name_of(d) == deployment]
        if not found:
            raise OpscheckError(f"{shown}: deployment {deployment} does not exist in namespace {namespace}")
        requirements = spec_selector((found[0].get("spec") or {}).get("selector"))
    else:
        requirements = parse_selector(selector or "")
    pods = [
        p
        for p in kube.objects("pods", namespace)
        if selector_matches(requirements, (p.get("metadata") or {}).get("labels") or {})
        and (p.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")
    ]
    if not pods:
        raise OpscheckError(f"{shown}: no pod with logs matches in namespace {namespace}")
    return sorted(pods, key=name_of)


def pods_started(pods: list[dict]) -> datetime | None:
    """The earliest start of the pods' running containers (a "since start" window's beginning)."""
    starts = [
        _time(((c.get("state") or {}).get("running") or {}).get("startedAt"))
        for p in pods
        for c in (p.get("status") or {}).get("containerStatuses") or []
    ]
    return min((s for s in starts if s), default=None)


def read_pod_logs(
    kube: KubeClient, shown: str, source: Any, pods: list[dict], since: datetime
) -> list[tuple[str, bytes, str]]:
    """[("pod/container", log bytes, why it was cut or "")] of every container of the pods (or
    the source's container), read concurrently; the API server bounds each read.

    The server applies tailLines and sinceSeconds, then stops at limitBytes: a window bigger
    than max_bytes would come back as its OLDEST part. So a read that hit the byte limit is
    read again with a tailLines sized from its average line length: the newest lines fit.
    """
    wanted = [
        (name_of(p), c.get("name"))
        for p in pods
        for c in (p.get("spec") or {}).get("containers") or []
        if not source.container or c.get("name") == source.container
    ]
    if not wanted:
        raise OpscheckError(f"{shown}: the pods have no container {source.container}")
    seconds, limit = since_seconds(since), source.max_bytes

    def read(pod: str, container: str, tail: int) -> bytes:
        try:
            return kube.pod_log(source.namespace, pod, container, seconds, limit, tail)
        except ApiError as exc:
            if exc.status != 400:  # 400: the container has not started yet (no log to read)
                raise
            return b""

    def one(pod_container: tuple[str, str]) -> tuple[str, bytes, str]:
        pod, container = pod_container
        body, cut = read(pod, container, source.tail_lines), ""
        if len(body) >= limit:
            tail = max(1, int(limit / (len(body) / max(1, body.count(b"\n"))) * 0.9))
            if tail < source.tail_lines:
                body = read(pod, container, tail)
            if len(body) >= limit:  # the last line was cut in the middle
                body = body[: body.rfind(b"\n") + 1]
            kept = body.count(b"\n")
            cut = f"more than limitBytes {limit:,}: kept the newest {kept:,} lines"
        elif body.count(b"\n") >= source.tail_lines:
            cut = f"tailLines {source.tail_lines:,} reached"
        return f"{pod}/{container}", body, cut

    with ThreadPoolExecutor(max_workers=min(LOG_READERS, len(wanted))) as pool:
        return list(pool.map(one, wanted))


# --- parametrization --------------------------------------------------------------------------


SECTION = list[Kubernetes]  # the inventory's `kubernetes:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the kubernetes family: clusters, namespaces, and named objects."""
    clusters = inventory.kubernetes

    def per_cluster(condition: Callable[[Kubernetes], bool] = lambda _: True) -> list[Param]:
        return [Param(t, t.name, t) for t in clusters if condition(t)]

    def per_namespace(condition: Callable[[Kubernetes, Namespace], bool] = lambda t, n: True) -> list[Param]:
        return [Param(Item(t, n), f"{t.name}:{n.name}", t) for t in clusters for n in t.namespaces if condition(t, n)]

    def named(things: Callable[[Namespace], list], label: Callable[[Any], str]) -> list[Param]:
        return [
            Param(Item(t, (n, x)), f"{t.name}:{n.name}:{label(x)}", t)
            for t in clusters
            for n in t.namespaces
            for x in things(n)
        ]

    return {
        "k8s_cluster": per_cluster(),
        "k8s_nodes": per_cluster(lambda t: t.nodes),
        "k8s_node_usage": per_cluster(lambda t: t.nodes and t.metrics),
        "k8s_all_pods": per_cluster(lambda t: t.all_namespaces),
        "k8s_pods": per_namespace(),
        "k8s_pod_usage": per_namespace(lambda t, n: t.metrics),
        "k8s_workloads": per_namespace(),
        "k8s_workload": [
            Param(Item(t, (n, kind, name)), f"{t.name}:{n.name}:{kind}/{name}", t)
            for t in clusters
            for n in t.namespaces
            for kind, name in n.workloads()
        ],
        "k8s_hpas": per_namespace(),
        "k8s_jobs": per_namespace(),
        "k8s_services": per_namespace(),
        "k8s_ingresses": per_namespace(),
        "k8s_ingress": named(lambda n: n.ingresses, lambda i: i.name),
        "k8s_certificates": per_namespace(lambda t, n: t.cert_manager or bool(n.certificates)),
        "k8s_certificate": named(lambda n: n.certificates, lambda c: c.name),
        "k8s_events": per_namespace(),
        "k8s_configmap": named(lambda n: n.configmaps, lambda c: c.name),
        "k8s_network_policy": named(lambda n: n.network_policies, lambda p: p),
        "k8s_probe": [
            Param(Item(t, (n, p)), f"{t.name}:{n.name}:{p.name}", t, check_marks(p))
            for t in clusters
            for n in t.namespaces
            for p in n.probes
        ],
    }


def since_seconds(since: datetime, now: datetime | None = None) -> int:
    """A window's start as the API's sinceSeconds (at least 1)."""
    return max(1, int(((now or datetime.now(UTC)) - since).total_seconds()) + 1)


def grace(target: Kubernetes, what: str) -> timedelta:
    return parse_duration(getattr(target, what))
