"""Opt-in: the kubernetes family against a real cluster (kind, k3s, minikube, ...).

Collected only where KUBECONFIG is set (tests/conftest.py): elsewhere this module is absent,
not skipped, so CI without a cluster counts nothing. It runs the suite read-only (GETs, no
probes, so no exec) against the kubeconfig's current context, or OPSCHECK_KUBE_CONTEXT, and
judges kube-system: the API answers, the nodes are Ready, kube-system's pods run and are
Ready, its workloads are rolled out (CoreDNS among them), its Services have endpoints, and
CoreDNS's pod logs can be read within their bounds.

    KUBECONFIG=~/.kube/config .venv/bin/pytest tests/test_kubernetes_real_cluster.py -v
"""

import os

from tests.conftest import run_suite

CHECKS = [
    "test_k8s_api_reachable[real]",
    "test_k8s_nodes_ready[real]",
    "test_k8s_pods_running_and_ready[real:kube-system]",
    "test_k8s_workloads_rolled_out[real:kube-system]",
    "test_k8s_workload_exists[real:kube-system:deployment/coredns]",
    "test_k8s_services_have_endpoints[real:kube-system]",
    "test_log_window_complete[coredns]",
]


def test_family_against_a_real_cluster(tmp_path):
    kubeconfig = os.environ["KUBECONFIG"].split(os.pathsep)[0]
    context = os.environ.get("OPSCHECK_KUBE_CONTEXT")
    inventory = {
        "environment": "selftest-real-k8s",
        "kubernetes": [
            {
                "name": "real",
                "kubeconfig": kubeconfig,
                **({"context": context} if context else {}),
                "timeout": 10,
                "namespaces": [{"name": "kube-system", "deployments": ["coredns"]}],
            }
        ],
        "logs": [
            {
                "name": "coredns",
                "kubernetes": "real",
                "namespace": "kube-system",
                "selector": "k8s-app=kube-dns",
                "tail_lines": 500,
                "max_bytes": 1048576,
                "error_rate": {"pattern": "(?i)\\bpanic\\b", "max_per_hour": 1000, "window": "24h"},
            }
        ],
    }
    keywords = " or ".join(c.split("[")[0] for c in CHECKS)
    result = run_suite(inventory, tmp_path, "-k", keywords)
    result.assert_passed(*CHECKS)
