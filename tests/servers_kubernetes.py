"""A Kubernetes API for the self-tests: KMock's KubernetesEmulator over real HTTP on loopback.

No kube-apiserver can be installed here, so the kubernetes family is verified against KMock
(PyPI `kmock`), which serves the API's resource endpoints (list, get, discovery) from the
objects placed in it; the official `kubernetes` client talks to it over HTTP exactly as to a
real server. KMock runs in a thread's asyncio loop; the suite under test runs in a subprocess
and reaches it through a kubeconfig (bearer token, so the client's auth is exercised too).

What KMock 0.8 does not serve is added here, on the same server:
- `GET /version/` (the client asks with a trailing slash; KMock answers only `/version`);
- pod logs (`.../pods/NAME/log`): KMock would return the Pod object; a reaction answers
  with the recorded lines and applies container, sinceSeconds, tailLines, limitBytes and
  timestamps as the API server does;
- exec (`.../pods/NAME/exec`, a GET upgraded to a WebSocket, v4/v5.channel.k8s.io): the
  command is run on this machine (the "container" is the test host: its loopback, its
  /proc/net/tcp), or behind the pod's `exec_in` prefix (`docker exec NAME`: a real
  container standing in for the pod), and its stdout, stderr and exit status are sent on
  channels 1, 2 and 3.
- a list's `apiVersion` and `kind` (PodList, ...), and discovery's kind, scope and verbs
  (kubectl needs them; the family does not);
KMock also ignores label and field selectors: the family matches selectors itself on the
shared lists, and filters field-selected lists again, so that does not change a verdict.

Objects are shaped as the Kubernetes API reference gives them (Pod, Deployment, ...); the
factories below fill the fields the checks read, with times relative to now.
"""

import asyncio
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp.web
import kmock
import yaml
from kmock._internal import parsing as kmock_parsing

from tests.servers import Service

_parse_path = kmock_parsing.parse_path


def _parse_path_with_namespaces(path: str):
    """KMock reads /api/v1/namespaces as the start of a namespaced path and fails (0.8): the
    namespaces list itself is a cluster-scoped resource."""
    if path.strip("/") == "api/v1/namespaces":
        return kmock_parsing.ParsedPath("", "v1", "namespaces", None, None, None)
    return _parse_path(path)


kmock_parsing.parse_path = _parse_path_with_namespaces

# apiVersion/kind -> the resource KMock stores it under
RESOURCES = {
    ("v1", "Pod"): "v1/pods",
    ("v1", "Service"): "v1/services",
    ("v1", "Event"): "v1/events",
    ("v1", "ConfigMap"): "v1/configmaps",
    ("v1", "Node"): "v1/nodes",
    ("v1", "Namespace"): "v1/namespaces",
    ("apps/v1", "Deployment"): "apps/v1/deployments",
    ("apps/v1", "StatefulSet"): "apps/v1/statefulsets",
    ("apps/v1", "DaemonSet"): "apps/v1/daemonsets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "autoscaling/v2/horizontalpodautoscalers",
    ("batch/v1", "Job"): "batch/v1/jobs",
    ("batch/v1", "CronJob"): "batch/v1/cronjobs",
    ("discovery.k8s.io/v1", "EndpointSlice"): "discovery.k8s.io/v1/endpointslices",
    ("networking.k8s.io/v1", "Ingress"): "networking.k8s.io/v1/ingresses",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networking.k8s.io/v1/networkpolicies",
    ("cert-manager.io/v1", "Certificate"): "cert-manager.io/v1/certificates",
    ("cert-manager.io/v1", "CertificateRequest"): "cert-manager.io/v1/certificaterequests",
    ("metrics.k8s.io/v1beta1", "PodMetrics"): "metrics.k8s.io/v1beta1/pods",
    ("metrics.k8s.io/v1beta1", "NodeMetrics"): "metrics.k8s.io/v1beta1/nodes",
}
CORE = [r for r in RESOURCES.values() if not r.startswith(("cert-manager", "metrics"))]
CERT_MANAGER = [r for r in RESOURCES.values() if r.startswith("cert-manager")]
METRICS = [r for r in RESOURCES.values() if r.startswith("metrics")]
EXEC_SECONDS = 30  # a command the emulator runs is killed after this
GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # what the API server's strconv.ParseBool takes as true


@dataclass
class Seen:
    """One request the emulator received."""

    method: str
    path: str
    query: str
    headers: dict

    @property
    def websocket(self) -> bool:
        return self.headers.get("Upgrade", "").lower() == "websocket"


class _Emulator(kmock.KubernetesEmulator):
    """KMock's emulator, plus /version/, pod logs and exec (see the module's docstring)."""

    logs: dict = {}  # replaced per instance: (namespace, pod, container) -> [(datetime, line)]
    exec_in: dict = {}  # replaced per instance: (namespace, pod) -> argv prefix (e.g. docker exec NAME)

    async def _serve_list(self, request):
        """KMock's list, with the list's apiVersion and kind as the API server sends them."""
        found = await super()._serve_list(request)
        resource = request.resource
        for (api_version, kind), name in RESOURCES.items():
            if name == "/".join(p for p in (resource.group, resource.version, resource.plural) if p):
                found = {"apiVersion": api_version, "kind": f"{kind}List", **found}
        return found

    async def _serve_version(self, request):
        """KMock's APIResourceList; the core group's groupVersion is "v1" (KMock says "/v1")."""
        found = await super()._serve_version(request)
        found["groupVersion"] = found["groupVersion"].lstrip("/")
        return found

    async def _handle(self, request):
        if request.subresource == "exec" and request.resource is not None:
            return await self._exec(request)
        return await super()._handle(request)

    async def _exec(self, request):
        raw = request._raw_request
        ws = aiohttp.web.WebSocketResponse(protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"))
        await ws.prepare(raw)
        command = [*self.exec_in.get((request.namespace, request.name), []), *raw.query.getall("command", [])]
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), EXEC_SECONDS)
            except TimeoutError:
                proc.kill()
                out, err = await proc.communicate()
            code = proc.returncode
        except OSError as exc:
            out, err, code = b"", str(exc).encode(), 127
        if out:
            await ws.send_bytes(b"\x01" + out)
        if err:
            await ws.send_bytes(b"\x02" + err)
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: exit status {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        await ws.close()
        return ws

    def serve_log(self, request) -> bytes:
        """A container's log as the API server cuts it: since, tail, then the byte limit."""
        query = request.params
        key = (request.namespace, request.name, query.get("container"))
        lines = self.logs.get(key, [])
        if "sinceSeconds" in query:
            start = datetime.now(UTC) - timedelta(seconds=int(query["sinceSeconds"]))
            lines = [(ts, text) for ts, text in lines if ts >= start]
        if "tailLines" in query:
            lines = lines[-int(query["tailLines"]) :] if int(query["tailLines"]) else []
        stamped = query.get("timestamps") in GO_TRUE  # older clients send "True"
        body = "".join(
            (f"{ts.strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z {text}\n" if stamped else f"{text}\n") for ts, text in lines
        ).encode()
        if "limitBytes" in query:
            body = body[: int(query["limitBytes"])]
        return body


class KubeEmulator(Service):
    """A KMock Kubernetes API on a random loopback port; objects placed with `put`."""

    def __init__(self, cert_manager: bool = True, metrics: bool = True):
        self.emulator = _Emulator()
        self.emulator.logs = {}
        self.emulator.exec_in = {}
        for (_, kind), resource in RESOURCES.items():
            if resource in CORE or (cert_manager and resource in CERT_MANAGER) or (metrics and resource in METRICS):
                self.emulator.resources[resource] = kmock.ResourceInfo(
                    kind=kind,
                    singular=kind.lower(),
                    namespaced=kind not in ("Node", "NodeMetrics", "Namespace"),
                    verbs={"get", "list", "watch"},
                    subresources={"log", "exec"} if kind == "Pod" else set(),
                )
        self.emulator["get /version/"] << {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-kmock",
            "platform": "linux/amd64",
        }
        self.emulator[kmock.resource("", "v1", "pods"), kmock.subresource("log")] << self.emulator.serve_log
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def main() -> None:
                self._stop = asyncio.Event()
                async with self.emulator, kmock.Server(self.emulator) as server:
                    self.url = str(server.url).rstrip("/")
                    self._ready.set()
                    await self._stop.wait()

            try:
                loop.run_until_complete(main())
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._error = exc
                self._ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the KMock emulator did not start: {self._error}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def put(self, *objects: dict) -> None:
        for obj in objects:
            resource = RESOURCES[(obj["apiVersion"], obj["kind"])]
            meta = obj["metadata"]
            self.emulator.objects[resource, meta.get("namespace"), meta["name"]] = obj

    def log(self, namespace: str, pod: str, container: str, lines: list[tuple[datetime, str]]) -> None:
        self.emulator.logs[(namespace, pod, container)] = sorted(lines)

    def requests(self) -> list[Seen]:
        return [
            Seen(
                str(r.method.value if hasattr(r.method, "value") else r.method),
                r.url.path,
                r.url.query_string,
                r.headers,
            )
            for r in self.emulator
        ]

    def kubeconfig(self, path: Path, context: str = "emulator", token: str = "kmock-token") -> Path:
        """A kubeconfig that reaches this emulator with a bearer token."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": context, "cluster": {"server": self.url}}],
                    "users": [{"name": "opscheck", "user": {"token": token}}],
                    "contexts": [{"name": context, "context": {"cluster": context, "user": "opscheck"}}],
                    "current-context": context,
                }
            )
        )
        return path


# --- objects, shaped as the API reference gives them ---------------------------------------------


def at(**delta: float) -> str:
    """An RFC 3339 time `delta` ago (negative: in the future)."""
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, namespace: str | None, **extra) -> dict:
    found = {"name": name, "uid": f"uid-{namespace}-{name}", "creationTimestamp": at(days=3), **extra}
    if namespace:
        found["namespace"] = namespace
    return found


def owner(kind: str, name: str) -> list[dict]:
    api = {"ReplicaSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1", "Certificate": "cert-manager.io/v1"}
    return [
        {"apiVersion": api.get(kind, "apps/v1"), "kind": kind, "name": name, "uid": f"uid-{name}", "controller": True}
    ]


def container_status(
    name: str = "app",
    ready: bool = True,
    restarts: int = 0,
    waiting: tuple[str, str] | None = None,
    terminated: dict | None = None,
    last: dict | None = None,
    started: str | None = None,
) -> dict:
    if waiting:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif terminated:
        state = {"terminated": terminated}
    else:
        state = {"running": {"startedAt": started or at(hours=2)}}
    return {
        "name": name,
        "ready": ready,
        "started": ready,
        "restartCount": restarts,
        "image": f"registry.example.test/{name}:1.4.2",
        "imageID": f"registry.example.test/{name}@sha256:" + "0" * 64,
        "state": state,
        "lastState": {"terminated": last} if last else {},
    }


def terminated(reason: str, code: int, **ago: float) -> dict:
    return {"reason": reason, "exitCode": code, "startedAt": at(hours=3), "finishedAt": at(**ago)}


def pod(
    name: str,
    namespace: str,
    labels: dict | None = None,
    phase: str = "Running",
    statuses: list[dict] | None = None,
    owners: list[dict] | None = None,
    limits: dict | None = None,
    created: str | None = None,
    unschedulable: str | None = None,
    reason: str | None = None,
) -> dict:
    statuses = statuses if statuses is not None else [container_status()]
    ready = bool(statuses) and all(s["ready"] for s in statuses) and phase == "Running"
    conditions = [
        {"type": "Initialized", "status": "True", "lastTransitionTime": at(hours=2)},
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": at(hours=1)},
        {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": at(hours=1)},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": at(hours=2)},
    ]
    if unschedulable:
        conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}]
    resources = {"limits": limits, "requests": limits} if limits is not None else {}
    status = {"phase": phase, "conditions": conditions, "containerStatuses": statuses, "startTime": at(hours=2)}
    if reason:
        status["reason"] = reason
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(
            name,
            namespace,
            labels=labels or {},
            ownerReferences=owners or [],
            creationTimestamp=created or at(hours=2),
        ),
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": s["name"], "image": s["image"], "resources": resources}
                for s in (statuses or [container_status()])
            ],
        },
        "status": status,
    }


def deployment(
    name: str,
    namespace: str,
    replicas: int = 3,
    updated: int | None = None,
    available: int | None = None,
    old: int = 0,
    deadline_exceeded: bool = False,
    generation: int = 4,
    observed: int | None = None,
) -> dict:
    updated = replicas if updated is None else updated
    available = replicas if available is None else available
    progressing = (
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{name}-7d9f" has timed out progressing.',
        }
        if deadline_exceeded
        else {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, namespace, generation=generation, labels={"app": name}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app"}]}},
        },
        "status": {
            "observedGeneration": generation if observed is None else observed,
            "replicas": updated + old,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": [{"type": "Available", "status": "True"}, progressing],
        },
    }


def statefulset(name: str, namespace: str, replicas: int = 1, current: str = "r1", update: str = "r1") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name, namespace, generation=2),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "serviceName": name,
            "updateStrategy": {"type": "RollingUpdate"},
        },
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": replicas,
            "currentReplicas": replicas,
            "updatedReplicas": replicas if current == update else 0,
            "availableReplicas": replicas,
            "currentRevision": f"{name}-{current}",
            "updateRevision": f"{name}-{update}",
        },
    }


def daemonset(name: str, namespace: str, desired: int = 2, available: int | None = None) -> dict:
    available = desired if available is None else available
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(name, namespace, generation=1),
        "spec": {"selector": {"matchLabels": {"app": name}}},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired,
            "numberReady": available,
            "updatedNumberScheduled": desired,
            "numberAvailable": available,
            "numberMisscheduled": 0,
        },
    }


def hpa(name: str, namespace: str, current: int, maximum: int = 10, cpu: int = 45) -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(name, namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
        "status": {
            "currentReplicas": current,
            "desiredReplicas": current,
            "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}
            ],
            "conditions": [
                {
                    "type": "ScalingLimited",
                    "status": "True" if current >= maximum else "False",
                    "reason": "TooManyReplicas" if current >= maximum else "DesiredWithinRange",
                }
            ],
        },
    }


def job(name: str, namespace: str, cronjob: str | None = None, failed: bool = False, **started_ago: float) -> dict:
    started = at(**(started_ago or {"hours": 5}))
    conditions = (
        [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            },
        ]
        if failed
        else [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]
    )
    status = {"startTime": started, "conditions": conditions}
    status.update({"failed": 6} if failed else {"succeeded": 1, "completionTime": started})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(name, namespace, ownerReferences=owner("CronJob", cronjob) if cronjob else []),
        "spec": {"backoffLimit": 6, "template": {"spec": {"containers": [{"name": "job"}]}}},
        "status": status,
    }


def cronjob(name: str, namespace: str, schedule: str, last_success: str | None, last_schedule: str | None) -> dict:
    status = {}
    if last_schedule:
        status["lastScheduleTime"] = last_schedule
    if last_success:
        status["lastSuccessfulTime"] = last_success
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta(name, namespace, creationTimestamp=at(days=30)),
        "spec": {
            "schedule": schedule,
            "suspend": False,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "job"}]}}}},
        },
        "status": status,
    }


def service(name: str, namespace: str, cluster_ip: str = "10.96.12.34", kind: str = "ClusterIP") -> dict:
    spec = {
        "type": kind,
        "clusterIP": cluster_ip,
        "selector": {"app": name},
        "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
    }
    if kind == "ExternalName":
        spec = {"type": kind, "externalName": "db.example.test"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, namespace), "spec": spec}


def endpoint_slice(service_name: str, namespace: str, ready: list[bool]) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta(
            f"{service_name}-x7k2p",
            namespace,
            labels={
                "kubernetes.io/service-name": service_name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        ),
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [f"10.244.1.{10 + i}"],
                "conditions": {"ready": r, "serving": r, "terminating": False},
                "targetRef": {"kind": "Pod", "name": f"{service_name}-{i}", "namespace": namespace},
                "nodeName": "node-1",
            }
            for i, r in enumerate(ready)
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def ingress(
    name: str,
    namespace: str,
    host: str,
    backend: str,
    address: str | None = "203.0.113.10",
    secret: str = "api-gateway-tls",
) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta(name, namespace),
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [host], "secretName": secret}],
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": backend, "port": {"number": 8080}}},
                            }
                        ]
                    },
                }
            ],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": address}]} if address else {}},
    }


def certificate(
    name: str,
    namespace: str,
    dns_names: list[str],
    ready: bool = True,
    expires_days: float = 60,
    renewal_days: float = 30,
    message: str = "Certificate is up to date and has not expired",
) -> dict:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta(name, namespace, generation=1),
        "spec": {
            "secretName": name,
            "dnsNames": dns_names,
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
        },
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "Ready" if ready else "Failed",
                    "message": message,
                    "lastTransitionTime": at(days=1),
                    "observedGeneration": 1,
                }
            ],
            "notBefore": at(days=30),
            "notAfter": at(days=-expires_days),
            "renewalTime": at(days=-renewal_days),
        },
    }


def certificate_request(name: str, namespace: str, certificate_name: str, failed: bool) -> dict:
    condition = (
        {
            "type": "Ready",
            "status": "False",
            "reason": "Failed",
            "message": "Failed to wait for order resource to become ready: order is in errored state",
        }
        if failed
        else {"type": "Ready", "status": "True", "reason": "Issued", "message": "Certificate fetched from issuer"}
    )
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "CertificateRequest",
        "metadata": meta(
            name,
            namespace,
            ownerReferences=owner("Certificate", certificate_name),
            annotations={
                "cert-manager.io/certificate-name": certificate_name,
                "cert-manager.io/certificate-revision": "2",
            },
        ),
        "spec": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}, "request": "LS0t"},
        "status": {"conditions": [condition]},
    }


def event(
    name: str,
    namespace: str,
    reason: str,
    obj: tuple[str, str],
    message: str,
    kind: str = "Warning",
    count: int = 1,
    **last_ago: float,
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": meta(name, namespace, creationTimestamp=at(**last_ago)),
        "involvedObject": {"kind": obj[0], "name": obj[1], "namespace": namespace},
        "reason": reason,
        "message": message,
        "type": kind,
        "count": count,
        "firstTimestamp": at(**{k: v * 2 for k, v in last_ago.items()}),
        "lastTimestamp": at(**last_ago),
        "source": {"component": "kubelet", "host": "node-1"},
    }


def node(name: str, ready: bool = True, pressure: str | None = None, cpu: str = "4", memory: str = "16Gi") -> dict:
    conditions = [
        {
            "type": t,
            "status": "True" if t == pressure else "False",
            "reason": f"Kubelet{'Has' if t == pressure else 'HasNo'}{t}",
            "message": f"kubelet has {'' if t == pressure else 'no '}{t}",
        }
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    conditions.append(
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
        if ready
        else {
            "type": "Ready",
            "status": "Unknown",
            "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.",
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(name, None, labels={"kubernetes.io/hostname": name}),
        "status": {
            "conditions": conditions,
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
        },
    }


def node_metrics(name: str, cpu: str, memory: str) -> dict:
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "NodeMetrics",
        "metadata": meta(name, None),
        "timestamp": at(seconds=20),
        "window": "20.03s",
        "usage": {"cpu": cpu, "memory": memory},
    }


def pod_metrics(name: str, namespace: str, usage: dict[str, tuple[str, str]]) -> dict:
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": meta(name, namespace),
        "timestamp": at(seconds=20),
        "window": "18.5s",
        "containers": [{"name": c, "usage": {"cpu": cpu, "memory": mem}} for c, (cpu, mem) in usage.items()],
    }


def configmap(name: str, namespace: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, namespace), "data": data}


def network_policy(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name, namespace),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
