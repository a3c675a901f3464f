"""The kubernetes family's API requests and wall time: 3 namespaces, 50 pods, against KMock.

    .venv/bin/python benchmarks/kubernetes_requests.py [--runs 3]

A KMock Kubernetes API on loopback (tests/servers_kubernetes.py) holds 3 namespaces with 50
pods in all, their Deployments, Services, EndpointSlices, Ingresses, Certificates, Jobs,
CronJobs, HPAs, events, ConfigMaps, NetworkPolicies and metrics, and 3 nodes. The whole
suite runs in a subprocess as a user runs it (`pytest --inventory=...`), with one pod-log
source per namespace (the api Deployment's 5 pods). Printed: how many checks ran, how many
requests the emulator received (by kind: discovery/version, lists, pod logs, exec), the
wall time of the run and pytest's own session time.

Beside it, the tool an operator would pick instead: the runbook's kubectl commands for the
same namespaces (`kubectl get pods`, `get deploy,sts,ds`, `get endpointslices`, `get ingress`,
`get certificates`, `get events`, `top pods`, `logs deployment/api`, ...), run one after
another against the same emulator with a fresh discovery cache. kubectl prints; the
operator still has to read every line. The emulator answers in well under a millisecond,
so these figures are the clients' own cost; a real API server adds its latency per request.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import run_suite  # noqa: E402
from tests.servers_kubernetes import (  # noqa: E402
    KubeEmulator,
    at,
    certificate,
    configmap,
    cronjob,
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
)

NAMESPACES = {"arch-separation": 17, "monitoring": 17, "payments": 16}  # 50 pods
LIMITS = {"cpu": "500m", "memory": "256Mi"}


def fill(emu: KubeEmulator) -> None:
    """A healthy cluster: per namespace an api Deployment (5 pods) and workers for the rest."""
    for ns, count in NAMESPACES.items():
        apps = {"api": 5, "worker": count - 5}
        for app, replicas in apps.items():
            emu.put(
                deployment(app, ns, replicas=replicas), service(app, ns), endpoint_slice(app, ns, [True] * replicas)
            )
            for i in range(replicas):
                name = f"{app}-7d9f-{i:05d}"
                emu.put(
                    pod(name, ns, {"app": app}, owners=owner("ReplicaSet", f"{app}-7d9f"), limits=LIMITS),
                    pod_metrics(name, ns, {"app": ("50m", "64Mi")}),
                )
                if app == "api":
                    now = datetime.now(UTC)
                    emu.log(
                        ns,
                        name,
                        "app",
                        [(now - timedelta(minutes=m), f'{{"level":"info","n":{m}}}') for m in range(50)],
                    )
        emu.put(
            hpa("api", ns, current=5),
            job("report-1", ns, cronjob="report", minutes=20),
            cronjob("report", ns, "*/30 * * * *", last_success=at(minutes=5), last_schedule=at(minutes=20)),
            ingress("api", ns, f"{ns}.example.test", "api"),
            certificate(f"{ns}-tls", ns, [f"{ns}.example.test"]),
            event("ev-1", ns, "Scheduled", ("Pod", "api-7d9f-00000"), "Assigned", kind="Normal", minutes=5),
            configmap("api-config", ns, {"LOG_LEVEL": "info"}),
            network_policy("default-deny-ingress", ns),
        )
    for i in range(3):
        emu.put(node(f"node-{i}"), node_metrics(f"node-{i}", "1", "4Gi"))


def inventory(kubeconfig: Path) -> dict:
    return {
        "environment": "bench-k8s",
        "kubernetes": [
            {
                "name": "bench",
                "kubeconfig": str(kubeconfig),
                "cert_manager": True,
                "all_namespaces": True,
                "namespaces": [
                    {
                        "name": ns,
                        "deployments": ["api", "worker"],
                        "configmaps": [{"name": "api-config", "keys": ["LOG_LEVEL"]}],
                        "network_policies": ["default-deny-ingress"],
                        "ingresses": [{"name": "api", "tls_hosts": [f"{ns}.example.test"]}],
                    }
                    for ns in NAMESPACES
                ],
            }
        ],
        "logs": [
            {"name": f"api-{ns}", "kubernetes": "bench", "namespace": ns, "deployment": "api", "error_rate": {}}
            for ns in NAMESPACES
        ],
    }


def kinds(requests) -> dict[str, int]:
    """Requests by kind: discovery and /version, lists and gets of objects, pod logs, exec."""
    found = {"discovery/version": 0, "lists/gets": 0, "pod logs": 0, "exec": 0}
    for r in requests:
        parts = r.path.strip("/").split("/")
        if parts[-1] in ("log", "exec"):
            found["pod logs" if parts[-1] == "log" else "exec"] += 1
        elif (
            parts[0] == "version" or (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3)
        ):
            found["discovery/version"] += 1
        else:
            found["lists/gets"] += 1
    return {k: v for k, v in found.items() if v}


def shown(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def kubectl_commands(kubeconfig: Path, cache: Path) -> list[list[str]]:
    base = ["kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}"]
    commands = [
        base + ["get", "nodes"],
        base + ["top", "nodes"],
        base + ["get", "pods", "-A", "--field-selector=status.phase!=Running"],
    ]
    for ns in NAMESPACES:
        for what in (
            ["get", "pods"],
            ["get", "deployments,statefulsets,daemonsets"],
            ["get", "horizontalpodautoscalers"],
            ["get", "jobs,cronjobs"],
            ["get", "endpointslices"],  # the runbook says endpoints; the emulator serves the slices
            ["get", "ingress"],
            ["get", "certificates"],
            ["get", "events", "--field-selector=type=Warning"],
            ["get", "configmap", "api-config"],
            ["get", "networkpolicies"],
            ["top", "pods"],
            ["logs", "deployment/api", "--since=1h"],
        ):
            commands.append(base + what + ["-n", ns])
    return commands


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="suite runs to time (default 3)")
    args = parser.parse_args()
    print(f"command: {sys.executable} benchmarks/kubernetes_requests.py --runs {args.runs}")
    print(f"cluster: {len(NAMESPACES)} namespaces, {sum(NAMESPACES.values())} pods, 3 nodes (KMock on loopback)")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} (other work on the machine slows every figure)\n")
    with tempfile.TemporaryDirectory() as tmp, KubeEmulator() as emu:
        fill(emu)
        kubeconfig = emu.kubeconfig(Path(tmp) / "kubeconfig")
        walls, sessions, counts, checks = [], [], [], 0
        for run in range(args.runs):
            before = len(emu.requests())
            start = time.perf_counter()
            result = run_suite(inventory(kubeconfig), Path(tmp) / f"run{run}", "-p", "no:randomly", "--no-state")
            walls.append(time.perf_counter() - start)
            assert result.rc == 0, result.output[-3000:]
            sessions.append(result.summary["duration_s"])
            seen = emu.requests()[before:]
            counts.append(kinds(seen))
            checks = result.summary["counts"].get("passed", 0)
        total = sum(counts[-1].values())
        print(f"opscheck: {checks} checks passed per run")
        print(f"  API requests per run: {total} ({shown(counts[-1])}); per run: {[sum(c.values()) for c in counts]}")
        print(
            f"  wall time per run (subprocess, incl. Python start-up): median {statistics.median(walls):.2f} s "
            f"(runs: {', '.join(f'{w:.2f}' for w in walls)})"
        )
        print(f"  pytest session time: median {statistics.median(sessions):.2f} s")

        if not shutil.which("kubectl"):
            print("\nkubectl: not installed, no comparison (apt-get install kubectl)")
            return
        cache = Path(tmp) / "kube-cache"
        before = len(emu.requests())
        start = time.perf_counter()
        failures = 0
        commands = kubectl_commands(kubeconfig, cache)
        for command in commands:
            failures += subprocess.run(command, capture_output=True, timeout=60).returncode != 0
        wall = time.perf_counter() - start
        seen = emu.requests()[before:]
        client = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True)
        version = json.loads(client.stdout or "{}").get("clientVersion", {}).get("gitVersion", "?")
        print(f"\nkubectl {version}: the runbook's commands for the same namespaces, one after another")
        print(f"  {len(commands)} commands ({failures} failed), {len(seen)} API requests ({shown(kinds(seen))})")
        print(f"  wall time: {wall:.2f} s; the output is {len(commands)} tables and logs to read by eye")


if __name__ == "__main__":
    main()
