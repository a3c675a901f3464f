"""Kubernetes family against KMock emulating the API server (no kube-apiserver can run here):
the official client over real HTTP on loopback, one suite run for all of it.

The same inventory is run against a healthy cluster ("good") and a broken one ("bad": a
CrashLoopBackOff pod, a rollout stuck at 1 of 3, an ingress without address, a Certificate
Ready=False, an OOMKilled last state, Warning events, a Service without endpoints, ...), plus
a cluster without metrics-server or cert-manager ("plain"), a kubeconfig naming a context
that does not exist, and an API server that accepts connections and never answers ("dead").
Every request the family sends is recorded by the emulators: all GETs, one list per kind
and namespace, exec only where the inventory asks for probes.
"""

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opscheck.core.errors import OpscheckError
from opscheck.families.kubernetes import KubeClient, Kubernetes
from tests.conftest import run_suite
from tests.servers import HttpServer, Route, SilentListener, closed_port
from tests.servers_kubernetes import (
    KubeEmulator,
    at,
    certificate,
    certificate_request,
    configmap,
    container_status,
    cronjob,
    daemonset,
    deployment,
    endpoint_slice,
    event,
    hpa,
    ingress,
    job,
    network_policy,
    node,
    node_metrics,
    owner,
    pod,
    pod_metrics,
    service,
    statefulset,
    terminated,
)

NS, MON = "arch-separation", "monitoring"
HOST = "api.example.test"
LIMITS = {"cpu": "500m", "memory": "256Mi"}
TOKEN = "kmock-bearer-Tk-5521"  # the kubeconfig's token: must never appear in any output
CONFIG_SECRET = "hunter2-in-a-configmap"  # a ConfigMap value: values are never shown
REASONS = ["BackOff", "Failed", "FailedScheduling", "Unhealthy", "OOMKilling", "FailedMount", "FailedCreate", "Evicted"]
GATEWAY = {"app": "api-gateway"}


def _minutes(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=n)


def fill_good(emu: KubeEmulator) -> None:
    """A healthy cluster: everything the inventory expects, rolled out, Ready, quiet."""
    rs = owner("ReplicaSet", "api-gateway-7d9f")
    emu.put(
        pod("api-gateway-7d9f-abcde", NS, GATEWAY, owners=rs, limits=LIMITS),
        pod("api-gateway-7d9f-fghij", NS, GATEWAY, owners=rs, limits=LIMITS),
        pod("postgres-0", NS, {"app": "postgres"}, owners=owner("StatefulSet", "postgres"), limits=LIMITS),
        pod("log-agent-x1", NS, {"app": "log-agent"}, owners=owner("DaemonSet", "log-agent"), limits=LIMITS),
        pod(
            "nightly-report-2851-q7w",
            NS,
            phase="Succeeded",
            owners=owner("Job", "nightly-report-2851"),
            statuses=[container_status("job", ready=False, terminated=terminated("Completed", 0, hours=1))],
        ),
        deployment("api-gateway", NS, replicas=2),
        statefulset("postgres", NS),
        daemonset("log-agent", NS),
        hpa("api-gateway", NS, current=2),
        job("nightly-report-2851", NS, cronjob="nightly-report", minutes=20),
        job("migrate-schema", NS, hours=30),
        cronjob("nightly-report", NS, "*/30 * * * *", last_success=at(minutes=5), last_schedule=at(minutes=20)),
        service("api-gateway", NS),
        service("postgres", NS, cluster_ip="None"),
        service("external-db", NS, kind="ExternalName"),
        endpoint_slice("api-gateway", NS, [True, True]),
        ingress("api-gateway", NS, HOST, "api-gateway"),
        certificate("api-gateway-tls", NS, [HOST]),
        certificate_request("api-gateway-tls-1", NS, "api-gateway-tls", failed=False),
        event("ev-old", NS, "BackOff", ("Pod", "api-gateway-7d9f-abcde"), "Back-off restarting", hours=3),
        event("ev-normal", NS, "Scheduled", ("Pod", "api-gateway-7d9f-abcde"), "Assigned", kind="Normal", minutes=5),
        configmap("api-gateway-config", NS, {"DATABASE_URL": "postgres://gateway@db:5432/app", "LOG_LEVEL": "info"}),
        network_policy("default-deny-ingress", NS),
        network_policy("allow-monitoring", NS),
        pod_metrics("api-gateway-7d9f-abcde", NS, {"app": ("50m", "64Mi")}),
        pod_metrics("api-gateway-7d9f-fghij", NS, {"app": ("60m", "70Mi")}),
        pod("prometheus-0", MON, {"app": "prometheus"}, owners=owner("StatefulSet", "prometheus"), limits=LIMITS),
        pod("coredns-5d78c", "kube-system", {"k8s-app": "kube-dns"}, limits=LIMITS),
        node("node-1"),
        node("node-2"),
        node_metrics("node-1", "1", "4Gi"),
        node_metrics("node-2", "500m", "3Gi"),
    )
    for name in ("api-gateway-7d9f-abcde", "api-gateway-7d9f-fghij"):
        emu.log(
            NS,
            name,
            "app",
            [
                (_minutes(50), '{"level":"info","msg":"listening on :8080"}'),
                (_minutes(20), '{"level":"error","msg":"upstream timeout"}'),
                (_minutes(2), '{"level":"info","msg":"GET /health 200"}'),
            ],
        )
    emu.log(MON, "prometheus-0", "app", [(_minutes(10), 'level=info msg="Server is ready to receive web requests."')])


def fill_bad(emu: KubeEmulator) -> None:
    """A broken cluster: each check's failure, once."""
    emu.put(
        pod(
            "api-gateway-7d9f-abcde",
            NS,
            GATEWAY,
            owners=owner("ReplicaSet", "api-gateway-7d9f"),
            limits=LIMITS,
            statuses=[
                container_status(
                    ready=False,
                    restarts=7,
                    waiting=("CrashLoopBackOff", "back-off 5m0s restarting failed container=app"),
                    last=terminated("Error", 1, minutes=2),
                )
            ],
        ),
        pod(
            "api-gateway-5c4b-zzzzz",
            NS,
            GATEWAY,
            owners=owner("ReplicaSet", "api-gateway-5c4b"),
            limits=LIMITS,
            statuses=[container_status(restarts=1, last=terminated("OOMKilled", 137, minutes=10))],
        ),
        pod(
            "worker-6f8d-qqqqq",
            NS,
            {"app": "worker"},
            phase="Pending",
            statuses=[],
            created=at(minutes=10),
            unschedulable="0/2 nodes are available: 2 Insufficient memory.",
        ),
        pod(
            "api-gateway-9e1a-imgxx",
            NS,
            {"app": "canary"},
            phase="Pending",
            limits=LIMITS,
            created=at(minutes=1),
            statuses=[
                container_status(
                    ready=False,
                    waiting=("ImagePullBackOff", 'Back-off pulling image "registry.example.test/app:1.4.3"'),
                )
            ],
        ),
        pod(
            "log-agent-lost",
            NS,
            {"app": "log-agent"},
            phase="Unknown",
            limits=LIMITS,
            reason="NodeLost",
            statuses=[container_status(ready=False)],
        ),
        deployment("api-gateway", NS, replicas=3, updated=1, available=2, old=2, deadline_exceeded=True),
        statefulset("postgres", NS, current="r1", update="r2"),
        hpa("api-gateway", NS, current=10, maximum=10, cpu=95),
        job("nightly-report-2851", NS, cronjob="nightly-report", failed=True, minutes=20),
        job("nightly-report-2850", NS, cronjob="nightly-report", hours=3),
        cronjob("nightly-report", NS, "*/30 * * * *", last_success=at(days=3), last_schedule=at(minutes=20)),
        service("api-gateway", NS),
        service("api-gateway-metrics", NS),
        endpoint_slice("api-gateway", NS, [False, False]),
        ingress("api-gateway", NS, "old.example.test", "api-gateway-v2", address=None, secret="old-tls"),
        certificate(
            "api-gateway-tls",
            NS,
            ["old.example.test"],
            ready=False,
            message="Issuing certificate as Secret does not exist",
        ),
        certificate("legacy-tls", NS, ["legacy.example.test"], expires_days=10, renewal_days=-2),
        certificate_request("api-gateway-tls-2", NS, "api-gateway-tls", failed=True),
        event(
            "ev-backoff",
            NS,
            "BackOff",
            ("Pod", "api-gateway-7d9f-abcde"),
            "Back-off restarting failed container app",
            count=12,
            minutes=5,
        ),
        event(
            "ev-sched",
            NS,
            "FailedScheduling",
            ("Pod", "worker-6f8d-qqqqq"),
            "0/2 nodes are available: 2 Insufficient memory.",
            minutes=8,
        ),
        event("ev-dns", NS, "DNSConfigForming", ("Pod", "worker-6f8d-qqqqq"), "Nameserver limits exceeded", minutes=3),
        event("ev-old", NS, "BackOff", ("Pod", "api-gateway-7d9f-abcde"), "Back-off restarting", hours=3),
        configmap("api-gateway-config", NS, {"LOG_LEVEL": "", "PASSWORDISH": f"postgres://u:{CONFIG_SECRET}@db/app"}),
        network_policy("default-deny-ingress", NS),
        pod_metrics("api-gateway-5c4b-zzzzz", NS, {"app": ("480m", "250Mi")}),
        pod("prometheus-0", MON, {"app": "prometheus"}, limits=LIMITS, statuses=[container_status(ready=False)]),
        pod(
            "coredns-pending",
            "kube-system",
            {"k8s-app": "kube-dns"},
            phase="Pending",
            statuses=[],
            created=at(minutes=20),
            limits=LIMITS,
        ),
        pod("node-exporter-evicted", MON, phase="Failed", reason="Evicted", statuses=[], limits=LIMITS),
        node("node-1", pressure="MemoryPressure"),
        node("node-2", ready=False),
        node_metrics("node-1", "3600m", "15Gi"),
    )
    lines = [(_minutes(40), '{"level":"info","msg":"starting"}')]
    lines += [(_minutes(30 - i * 0.5), f'{{"level":"error","msg":"db: connection refused {i}"}}') for i in range(30)]
    lines += [(_minutes(3), '{"level":"panic","msg":"nil pointer dereference"}')]
    emu.log(NS, "api-gateway-5c4b-zzzzz", "app", lines)
    emu.log(NS, "api-gateway-7d9f-abcde", "app", [(_minutes(1), "x" * 300) for _ in range(10)])


def namespaces(probes: list[dict]) -> list[dict]:
    return [
        {
            "name": NS,
            "deployments": ["api-gateway"],
            "statefulsets": ["postgres"],
            "daemonsets": ["log-agent"],
            "configmaps": [{"name": "api-gateway-config", "keys": ["DATABASE_URL", "LOG_LEVEL"]}],
            "network_policies": ["default-deny-ingress", "allow-monitoring"],
            "ingresses": [{"name": "api-gateway", "tls_hosts": [HOST], "tls_secret": "api-gateway-tls"}],
            "certificates": [{"name": "api-gateway-tls", "dns_names": [HOST]}],
            "event_reasons": REASONS,
            "probes": probes,
        },
        {"name": MON, "severity_overrides": {"test_k8s_pods_running_and_ready": "p1"}},
    ]


def cluster(name: str, kubeconfig: Path, probes: list[dict], **extra) -> dict:
    return {
        "name": name,
        "kubeconfig": str(kubeconfig),
        "context": "emulator",
        "timeout": 5,
        "cert_manager": True,
        "all_namespaces": True,
        "namespaces": namespaces(probes),
        **extra,
    }


def log_sources(name: str) -> list[dict]:
    return [
        {
            "name": f"{name}-gateway",
            "kubernetes": name,
            "namespace": NS,
            "deployment": "api-gateway",
            "forbidden": [{"name": "panic", "pattern": '"level":"(panic|fatal)"'}],
            "required": [{"name": "listening", "pattern": "listening on :8080"}],
            "error_rate": {"pattern": '"level":"error"', "max_per_hour": 10},
        },
        {
            "name": f"{name}-namespace",
            "kubernetes": name,
            "namespace": NS,
            "tail_lines": 50,
            "max_bytes": 2048,
            "forbidden": [{"name": "panic", "pattern": "panic"}],
        },
    ]


def _local_address(name: str) -> str:
    return socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The emulators, a health endpoint, a listener holding one connection, and the suite's run."""
    folder = tmp_path_factory.mktemp("k8s")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = socket.create_connection(listener.getsockname())  # one ESTABLISHED connection to the port
    accepted, _ = listener.accept()
    db_port = listener.getsockname()[1]
    with (
        KubeEmulator() as good,
        KubeEmulator() as bad,
        KubeEmulator(cert_manager=False, metrics=False) as plain,
        SilentListener() as silent,
        HttpServer({"/health": Route(body={"status": "healthy"})}) as health,
    ):
        fill_good(good)
        fill_bad(bad)
        plain.put(pod("web-1", "default", {"app": "web"}, limits=LIMITS))
        dead = folder / "dead.kubeconfig"
        dead.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: emulator\n"
            f"clusters: [{{name: x, cluster: {{server: 'http://127.0.0.1:{silent.port}'}}}}]\n"
            f"users: [{{name: u, user: {{token: {TOKEN}}}}}]\n"
            "contexts: [{name: emulator, context: {cluster: x, user: u}}]\n"
        )
        closed = closed_port()
        good_probes = [
            {"name": "gateway-health", "deployment": "api-gateway", "http": health.url("/health")},
            {"name": "gateway-tcp", "selector": "app=api-gateway", "tcp": f"127.0.0.1:{health.port}"},
            {
                "name": "gateway-dns",
                "pod": "api-gateway-7d9f-abcde",
                "resolve": "localhost",
                "expect_address": _local_address("localhost"),
                "severity": "p2",
            },
            {"name": "db-connections", "deployment": "api-gateway", "established": db_port},
        ]
        bad_probes = [
            {"name": "gateway-health", "deployment": "api-gateway", "http": f"http://127.0.0.1:{closed}/health"},
            {"name": "gateway-tcp", "selector": "app=api-gateway", "tcp": f"127.0.0.1:{closed}"},
            {
                "name": "gateway-dns",
                "pod": "api-gateway-5c4b-zzzzz",
                "resolve": "localhost",
                "expect_service": "api-gateway",
                "severity": "p2",
            },
            {"name": "db-connections", "deployment": "api-gateway", "established": closed},
            {"name": "worker-health", "selector": "app=worker", "http": health.url("/health")},
        ]
        inventory = {
            "environment": "selftest-k8s",
            "kubernetes": [
                cluster("good", good.kubeconfig(folder / "good", token=TOKEN), good_probes),
                {
                    **cluster("bad", bad.kubeconfig(folder / "bad", token=TOKEN), bad_probes),
                    "namespaces": [*namespaces(bad_probes), {"name": "arch-separaton"}],  # a typo: no pods
                },
                {
                    "name": "plain",
                    "kubeconfig": str(plain.kubeconfig(folder / "plain", token=TOKEN)),
                    "namespaces": [{"name": "default"}, {"name": "quiet", "may_be_empty": True}],
                },
                {
                    "name": "no-context",
                    "kubeconfig": str(folder / "good"),
                    "context": "nope",
                    "namespaces": [{"name": NS}],
                },
                {"name": "dead", "kubeconfig": str(dead), "timeout": 1, "namespaces": [{"name": NS}]},
            ],
            "logs": log_sources("good") + log_sources("bad"),
        }
        result = run_suite(inventory, folder / "run")
        yield result, good, bad, plain, silent
    for sock in (held, accepted, listener):
        sock.close()


@pytest.fixture(scope="module")
def result(world):
    return world[0]


def test_healthy_cluster_passes_every_check(result):
    checks = [c for c in result.checks if c.startswith(("test_k8s", "test_log")) and "[good" in c]
    failed = {c: result.message(c) for c in checks if result.outcome(c) != "passed"}
    assert not failed, failed
    assert len(checks) >= 40, sorted(checks)
    result.assert_passed(
        "test_k8s_api_reachable[good]",
        f"test_k8s_pods_running_and_ready[good:{NS}]",
        f"test_k8s_pods_running_and_ready[good:{MON}]",
        f"test_k8s_workloads_rolled_out[good:{NS}]",
        f"test_k8s_probe[good:{NS}:gateway-health]",
        f"test_k8s_probe[good:{NS}:gateway-dns]",
        f"test_k8s_probe[good:{NS}:db-connections]",
        "test_log_required_pattern_present[good-gateway:listening]",
        "test_log_error_rate_below_limit[good-gateway:errors]",
    )


def test_pods_crash_loop_image_pull_pending_unknown(result):
    result.assert_failed(
        f"test_k8s_pods_running_and_ready[bad:{NS}]",
        "4 of 5 pod(s) not Running and Ready",
        "api-gateway-7d9f-abcde 0/1 CrashLoopBackOff (restarts 7)",
        "worker-6f8d-qqqqq 0/1 Pending",
        "api-gateway-9e1a-imgxx 0/1 ImagePullBackOff",
        "log-agent-lost 0/1 NodeLost",
    )
    result.assert_failed(
        f"test_k8s_pods_not_stuck[bad:{NS}]",
        "4 stuck pod(s)",
        "CrashLoopBackOff (back-off 5m0s restarting failed container=app)",
        'ImagePullBackOff (Back-off pulling image "registry.example.test/app:1.4.3")',
        "Pending for 10 min > grace 5 min",
        "[unschedulable: 0/2 nodes are available: 2 Insufficient memory.]",
        "phase Unknown",
    )


def test_a_namespace_without_pods_fails_unless_it_may_be_empty(result):
    result.assert_failed(
        "test_k8s_pods_running_and_ready[bad:arch-separaton]", "namespace arch-separaton: no pods at all (a typo"
    )
    result.assert_passed("test_k8s_pods_running_and_ready[plain:quiet]")


def test_namespace_severity_override(result):
    message = result.assert_failed(f"test_k8s_pods_running_and_ready[bad:{MON}]", "prometheus-0 0/1 Running")
    assert message
    severity = {c["id"].split("::")[1]: c.get("severity") for c in result.summary["checks"]}
    assert severity[f"test_k8s_pods_running_and_ready[bad:{MON}]"] == "p1"
    assert severity[f"test_k8s_pods_running_and_ready[bad:{NS}]"] == "p0"
    result.assert_failed(
        f"test_k8s_pods_not_stuck[bad:{MON}]", "prometheus-0 0/1 Running: not Ready for 60 min > grace 5 min"
    )


def test_restarts_and_oom_kills(result):
    result.assert_failed(
        f"test_k8s_pod_restarts_stable[bad:{NS}]",
        "2 container restart(s) since",
        "(first run) > limit 0",
        "api-gateway-7d9f-abcde/app restarted at",
        "(Error 1; restart count 7)",
        "api-gateway-5c4b-zzzzz/app restarted at",
    )
    result.assert_failed(
        f"test_k8s_no_oom_killed[bad:{NS}]",
        "1 OOM kill(s) since",
        "api-gateway-5c4b-zzzzz/app OOMKilled (exit 137",
    )


def test_pods_in_all_namespaces(result):
    result.assert_failed(
        "test_k8s_pods_healthy_in_all_namespaces[bad]",
        "kube-system/coredns-pending 0/1 Pending: Pending for 20 min > grace 5 min",
        "monitoring/node-exporter-evicted 0/1 Evicted: phase Failed",
        f"{NS}/log-agent-lost",
    )
    assert "CrashLoopBackOff" not in result.message("test_k8s_pods_healthy_in_all_namespaces[bad]"), (
        "a Running pod is not listed by the field selector the check asks for"
    )


def test_rollout_stuck_and_missing_workload(result):
    result.assert_failed(
        f"test_k8s_workloads_rolled_out[bad:{NS}]",
        "2 of 2 workload(s) not rolled out",
        "deployment/api-gateway: 1 updated, 2 available of 3 desired (progress deadline exceeded; 2 old replica(s)",
        "statefulset/postgres: 0 updated, 1 available of 1 desired (revision postgres-r1 -> postgres-r2 in progress)",
    )
    result.assert_failed(
        f"test_k8s_workload_exists[bad:{NS}:daemonset/log-agent]", "daemonset/log-agent does not exist"
    )
    result.assert_passed(f"test_k8s_workload_exists[bad:{NS}:deployment/api-gateway]")


def test_hpa_jobs_and_cronjobs(result):
    result.assert_failed(
        f"test_k8s_hpas_not_at_max[bad:{NS}]", "hpa/api-gateway (api-gateway) runs 10 of max 10 replicas", "cpu 95%"
    )
    result.assert_failed(
        f"test_k8s_jobs_succeeded[bad:{NS}]",
        "cronjob/nightly-report: its last run job/nightly-report-2851 Failed: BackoffLimitExceeded",
    )
    result.assert_failed(
        f"test_k8s_cronjobs_on_schedule[bad:{NS}]",
        "cronjob/nightly-report (*/30 * * * *): last success",
        "but a run was due at",
        "(grace 60 min;",
    )


def test_services_and_ingresses(result):
    result.assert_failed(
        f"test_k8s_services_have_endpoints[bad:{NS}]",
        "2 of 2 service(s) without a ready endpoint",
        "service/api-gateway: 0 ready of 2 endpoint(s)",
        "service/api-gateway-metrics: 0 ready of 0 endpoint(s)",
    )
    result.assert_failed(
        f"test_k8s_ingresses_have_address[bad:{NS}]", "1 of 1 ingress(es) without an address: ingress/api-gateway"
    )
    result.assert_failed(
        f"test_k8s_ingress_backends_ready[bad:{NS}]",
        "ingress/api-gateway -> service/api-gateway-v2, which does not exist",
    )
    result.assert_failed(
        f"test_k8s_ingress_tls_as_expected[bad:{NS}:api-gateway]",
        f"spec.tls does not cover {HOST} (covers: old.example.test)",
    )


def test_certificates(result):
    result.assert_failed(
        f"test_k8s_certificates_ready[bad:{NS}]",
        "2 of 2 certificate(s)",
        "certificate/api-gateway-tls Ready=False (Failed: Issuing certificate as Secret does not exist)",
        "certificate/legacy-tls: renewal was due",
    )
    result.assert_failed(
        f"test_k8s_certificates_expiry_critical[bad:{NS}]",
        "certificate/legacy-tls (secret legacy-tls) expires in 10.0 days < critical 14 days",
    )
    result.assert_failed(f"test_k8s_certificates_expiry_warning[bad:{NS}]", "expires in 10.0 days < warning 30 days")
    result.assert_failed(
        f"test_k8s_certificate_as_expected[bad:{NS}:api-gateway-tls]",
        f"spec.dnsNames ['old.example.test'] lacks {HOST}",
        "certificaterequest/api-gateway-tls-2 Ready (Failed: Failed to wait for order resource",
    )


def test_warning_events_in_the_window(result):
    message = result.assert_failed(
        f"test_k8s_no_warning_events[bad:{NS}]",
        "2 Warning events (BackOff, Failed,",
        "> limit 0",
        "BackOff pod/api-gateway-7d9f-abcde (x12): Back-off restarting failed container app",
        "FailedScheduling pod/worker-6f8d-qqqqq (x1): 0/2 nodes are available",
    )
    assert "DNSConfigForming" not in message, "reasons outside the inventory's list are not counted"


def test_nodes_and_usage(result):
    result.assert_failed(
        "test_k8s_nodes_ready[bad]", "1 of 2 node(s) not Ready", "node/node-2 Ready=Unknown (NodeStatusUnknown"
    )
    result.assert_failed("test_k8s_nodes_without_pressure[bad]", "node/node-1 MemoryPressure")
    result.assert_failed(
        "test_k8s_node_cpu_below_limit[bad]",
        "node/node-1 cpu 90.0% (3600m of 4000m allocatable) >= limit 80%",
        "node/node-2 has no cpu metrics",
    )
    result.assert_failed("test_k8s_node_memory_below_limit[bad]", "node/node-1 memory 93.8% (15360Mi of 16384Mi")
    result.assert_failed(
        f"test_k8s_pod_cpu_below_limit[bad:{NS}]", "api-gateway-5c4b-zzzzz/app cpu 96.0% (480m of limit 500m)"
    )
    result.assert_failed(
        f"test_k8s_pod_memory_below_limit[bad:{NS}]", "api-gateway-5c4b-zzzzz/app memory 97.7% (250Mi of limit 256Mi)"
    )
    result.assert_failed(
        f"test_k8s_containers_have_limits[bad:{NS}]", "worker-6f8d-qqqqq/app has no cpu or memory limit"
    )


def test_configmap_keys_without_values(result):
    result.assert_failed(
        f"test_k8s_configmap_has_keys[bad:{NS}:api-gateway-config]",
        "configmap/api-gateway-config lacks key(s) DATABASE_URL; has empty key(s) LOG_LEVEL (2 key(s) present)",
    )
    assert CONFIG_SECRET not in result.output


def test_network_policies(result):
    result.assert_failed(
        f"test_k8s_network_policy_exists[bad:{NS}:allow-monitoring]",
        "networkpolicy/allow-monitoring does not exist (present: default-deny-ingress)",
    )
    result.assert_passed(f"test_k8s_network_policy_exists[bad:{NS}:default-deny-ingress]")


def test_in_pod_probes(result):
    result.assert_failed(
        f"test_k8s_probe[bad:{NS}:gateway-health]", "from api-gateway-5c4b-zzzzz/app: GET http://127.0.0.1:"
    )
    result.assert_failed(f"test_k8s_probe[bad:{NS}:gateway-tcp]", "TCP 127.0.0.1:", "failed: exit")
    result.assert_failed(
        f"test_k8s_probe[bad:{NS}:gateway-dns]",
        "localhost resolves to",
        "expected 10.96.12.34 (ClusterIP of service/api-gateway)",
    )
    result.assert_failed(
        f"test_k8s_probe[bad:{NS}:db-connections]", "0 ESTABLISHED connection(s) to port", "< minimum 1"
    )
    result.assert_failed(
        f"test_k8s_probe[bad:{NS}:worker-health]", "no Running and Ready pod for pods matching 'app=worker'"
    )
    severity = {c["id"].split("::")[1]: c.get("severity") for c in result.summary["checks"]}
    assert severity[f"test_k8s_probe[bad:{NS}:gateway-dns]"] == "p2"
    assert severity[f"test_k8s_probe[bad:{NS}:gateway-health]"] == "p1"


def test_pod_logs_as_a_log_source(result):
    result.assert_failed(
        "test_log_forbidden_pattern_absent[bad-gateway:panic]",
        "1 line(s) matching",
        'api-gateway-5c4b-zzzzz/app: {"level":"panic","msg":"nil pointer dereference"}',
    )
    result.assert_failed("test_log_error_rate_below_limit[bad-gateway:errors]", "30 matching", "> limit 10/h")
    result.assert_failed("test_log_required_pattern_present[bad-gateway:listening]", "0 line(s) matching")
    message = result.assert_failed(
        "test_log_window_complete[bad-namespace]",
        "api-gateway-7d9f-abcde/app: more than limitBytes 2,048: kept the newest",
    )
    assert "api-gateway-5c4b-zzzzz/app: more than limitBytes 2,048" in message
    result.assert_failed(  # the server cuts at limitBytes from the window's start: the newest lines are re-read
        "test_log_forbidden_pattern_absent[bad-namespace:panic]", "nil pointer dereference"
    )
    result.assert_passed(
        "test_log_window_complete[good-namespace]", "test_log_forbidden_pattern_absent[good-gateway:panic]"
    )


def test_no_metrics_server_deselects_usage_checks(result):
    assert "metrics-server does not answer on kubernetes plain (metrics.k8s.io answers 404" in result.output
    assert not [c for c in result.checks if "usage" in c or ("_below_limit" in c and "[plain" in c)]
    result.assert_passed("test_k8s_api_reachable[plain]", "test_k8s_pods_running_and_ready[plain:default]")
    assert not [c for c in result.checks if c.startswith("test_k8s_certificates") and "plain" in c]


def test_missing_context_fails_then_blocks(result):
    checks = {c: m for c, m in ((c, result.message(c)) for c in result.checks) if "[no-context" in c}
    assert all(result.outcome(c) == "failed" for c in checks)
    first = [m for m in checks.values() if not m.startswith("blocked: ")]
    assert len(first) == 1 and "cannot load the cluster configuration" in first[0] and "nope" in first[0], first


def test_dead_api_server_costs_one_timeout(world):
    result, _, _, _, silent = world
    checks = {c: result.message(c) for c in result.checks if "[dead" in c}
    assert len(checks) >= 10 and all(result.outcome(c) == "failed" for c in checks)
    first = [m for m in checks.values() if not m.startswith("blocked: ")]
    assert len(first) == 1 and "timed out" in first[0], first
    assert silent.accepts == 1, f"{silent.accepts} connections to a dead API server"


def test_one_list_per_kind_and_namespace(world):
    _, good, bad, _, _ = world
    for emu in (good, bad):
        lists = [f"{r.path}?{r.query}" for r in emu.requests() if "/log" not in r.path and "/exec" not in r.path]
        duplicates = {p for p in lists if lists.count(p) > 1}
        assert not duplicates, duplicates
        assert f"/api/v1/namespaces/{NS}/pods?limit=500" in lists  # read by ~10 checks and two log sources


def test_every_request_is_a_get_and_exec_only_where_asked(world):
    _, good, bad, plain, _ = world
    for emu in (good, bad, plain):
        seen = emu.requests()
        assert seen and all(r.method == "GET" for r in seen), {r.method for r in seen}
        assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in seen)
        execs = [r for r in seen if r.path.endswith("/exec")]
        assert all(r.websocket for r in execs)
        assert all(r.path.startswith(f"/api/v1/namespaces/{NS}/pods/") for r in execs)
    assert len([r for r in good.requests() if r.path.endswith("/exec")]) == 4  # the four probes, once each
    assert not [r for r in plain.requests() if r.path.endswith("/exec")], "no probes: no exec"


def test_no_token_in_any_output(world):
    result = world[0]
    assert TOKEN not in result.output
    for path in result.reports_dir.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path


def test_the_client_refuses_anything_but_get(world, tmp_path):
    """Read-only by construction: a write never leaves the client, whoever calls it."""
    from kubernetes import client as k8s_client

    good = world[1]
    before = len(good.requests())
    kube = KubeClient(Kubernetes(name="w", kubeconfig=str(good.kubeconfig(tmp_path / "kc"))), timeout=5)
    core = k8s_client.CoreV1Api(kube.api())
    with pytest.raises(OpscheckError, match="refused to send DELETE .*checks are read-only"):
        core.delete_namespaced_pod("api-gateway-7d9f-abcde", NS)
    with pytest.raises(OpscheckError, match="refused to send POST"):
        core.create_namespaced_config_map(NS, {"metadata": {"name": "x"}})
    with pytest.raises(OpscheckError, match="refused to send PATCH"):
        k8s_client.AppsV1Api(kube.api()).patch_namespaced_deployment_scale("api-gateway", NS, {"spec": {"replicas": 3}})
    assert len(good.requests()) == before, "nothing reached the API server"
    assert kube.objects("pods", NS)  # reads still work
    kube.close()


def test_restart_count_growth_since_the_last_run(tmp_path):
    """Two runs sharing state.json: restarts between them fail the second run."""
    with KubeEmulator() as emu:
        gateway = pod("api-gateway-1", NS, GATEWAY, limits=LIMITS, statuses=[container_status(restarts=1)])
        emu.put(gateway, pod("api-gateway-2", NS, GATEWAY, limits=LIMITS))
        inventory = {
            "environment": "selftest-k8s-restarts",
            "kubernetes": [
                {"name": "c", "kubeconfig": str(emu.kubeconfig(tmp_path / "kc")), "namespaces": [{"name": NS}]}
            ],
        }
        first = run_suite(inventory, tmp_path, "-k", "restarts_stable")
        first.assert_passed(f"test_k8s_pod_restarts_stable[c:{NS}]")
        gateway["status"]["containerStatuses"][0]["restartCount"] = 3
        second = run_suite(inventory, tmp_path, "-k", "restarts_stable")
    second.assert_failed(
        f"test_k8s_pod_restarts_stable[c:{NS}]",
        "2 container restart(s) since the last run > limit 0",
        "api-gateway-1/app restarted 2 time(s) (restart count 1 -> 3)",
    )


def test_under_xdist_one_probe_and_one_timeout_per_cluster(tmp_path):
    """Every xdist worker collects: the metrics probe and a dead server's timeout happen once."""
    with KubeEmulator(cert_manager=False, metrics=False) as plain, SilentListener() as silent:
        plain.put(pod("web-1", "default", {"app": "web"}, limits=LIMITS))
        dead = tmp_path / "dead.kubeconfig"
        dead.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
            f"clusters: [{{name: x, cluster: {{server: 'http://127.0.0.1:{silent.port}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: u}}]\n"
        )
        inventory = {
            "environment": "selftest-k8s-xdist",
            "kubernetes": [
                {
                    "name": "plain",
                    "kubeconfig": str(plain.kubeconfig(tmp_path / "kc")),
                    "namespaces": [{"name": "default"}],
                },
                {"name": "dead", "kubeconfig": str(dead), "timeout": 1, "namespaces": [{"name": "default"}]},
            ],
        }
        result = run_suite(inventory, tmp_path / "run", "-n", "2")
        probes = [r for r in plain.requests() if r.path == "/apis/metrics.k8s.io/v1beta1"]
    assert "metrics-server does not answer on kubernetes plain" in result.output
    assert len(probes) == 1, f"{len(probes)} metrics probes for one cluster"
    assert silent.accepts == 1, f"{silent.accepts} connections to a dead API server under xdist"
    dead_checks = [c for c in result.checks if "[dead" in c]
    assert sum(not result.message(c).startswith("blocked: ") for c in dead_checks) == 1
    result.assert_passed("test_k8s_pods_running_and_ready[plain:default]")


def test_the_client_does_not_walk_the_environment_on_a_gather_thread(tmp_path, monkeypatch):
    """kubernetes 37's Configuration() walks os.environ for proxies, while pytest deletes
    PYTEST_CURRENT_TEST between phases (a KeyError failed a healthy check in CI): the client
    takes its proxy from the run's snapshot instead, and still honours it."""
    import kubernetes.client.configuration as k8s_configuration

    from opscheck.core import web
    from opscheck.families.kubernetes import KubeClient, Kubernetes

    def walk():
        raise AssertionError("os.environ walked for proxies")

    monkeypatch.setattr(k8s_configuration, "getproxies", walk)
    monkeypatch.setattr(web, "_ENVIRONMENT", ({"https": "http://proxy.invalid:3128", "no": "other.example"}, None))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t0ken-for-the-test}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    client = KubeClient(Kubernetes(name="k", kubeconfig=str(kubeconfig)), timeout=1)
    configuration = client.api().configuration
    assert configuration.proxy == "http://proxy.invalid:3128"
