"""`opscheck discover` against a REAL Docker engine, Prometheus and this host: the draft
names what runs, marks its guesses, carries ${VARS} for secrets, validates, and its
container and log checks pass on the system it was drafted from."""

import os
import subprocess
import sys

import pytest
import yaml

from opscheck.cli.discover import Draft, _known_port
from tests.conftest import run_suite
from tests.servers import closed_port, wait_for
from tests.servers_docker import docker_server  # noqa: F401 - the session's engine
from tests.servers_monitoring import AlertmanagerServer, PrometheusServer

pytestmark = pytest.mark.timeout(240)

SHOP = {"com.docker.compose.project": "discoshop"}  # names of its own: the engine is shared
CONTAINERS = {
    "discoshop-api-1": ("sleep 100000", {"labels": {**SHOP, "com.docker.compose.service": "api"}}),
    "discoshop-worker-1": ("sleep 100000", {"labels": {**SHOP, "com.docker.compose.service": "worker"}}),
    "discoshop-worker-2": ("sleep 100000", {"labels": {**SHOP, "com.docker.compose.service": "worker"}}),
    "discoshop-migrate-1": ("echo migrated", {"labels": {**SHOP, "com.docker.compose.service": "migrate"}}),
    "discostandalone": ("echo started; sleep 100000", {}),
}


@pytest.fixture(scope="module")
def stack(docker_server):  # noqa: F811
    docker_server.run_many(CONTAINERS)
    docker_server.wait("discoshop-migrate-1", lambda a: a["State"]["Status"] == "exited", 30, "exited")
    with AlertmanagerServer() as am:
        address = f"127.0.0.1:{am.port}"
        prometheus = PrometheusServer({"api": [address]}, [], [address])
        with prometheus:
            wait_for(lambda: _prometheus_ready(prometheus), 20, "prometheus targets and alertmanagers")
            yield docker_server, prometheus, am


def _prometheus_ready(prometheus) -> bool:
    targets = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
    alertmanagers = prometheus.get("/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    return bool(targets) and bool(alertmanagers)


def discover(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "opscheck.cli", "discover", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def draft(stack):
    engine, prometheus, _ = stack
    proc = discover(
        "--environment", "drafted", "--docker", engine.url, "--prometheus", prometheus.url, "--host", "local://"
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_draft_names_what_runs(draft, stack):
    engine, prometheus, am = stack
    doc = yaml.safe_load(draft)
    shop = next(d for d in doc["docker"] if d.get("compose_project") == "discoshop")
    assert shop["engine"] == engine.url
    by_name = {c["name"]: c for c in shop["containers"]}
    assert by_name["worker"] == {"name": "worker", "service": "worker", "replicas": 2}
    assert by_name["api"] == {"name": "api", "service": "api"}
    assert by_name["migrate"]["one_shot"] is True
    standalone = next(d for d in doc["docker"] if d["name"] == "docker")
    assert {"name": "discostandalone", "container": "discostandalone"} in standalone["containers"]
    assert {s["name"] for s in doc["logs"]} >= {"api-log", "worker-log", "discostandalone-log"}
    assert doc["prometheus"] == [{"name": "prometheus", "url": prometheus.url, "expected_jobs": ["api"]}]
    assert doc["alertmanager"][0]["url"] == am.url
    assert doc["hosts"][0]["spec"] == "local://" and prometheus.port in doc["hosts"][0]["ports"]
    assert "# guessed: the default error pattern and rate" in draft


def test_the_draft_validates_and_its_checks_pass(draft, tmp_path):
    path = tmp_path / "drafted.yml"
    path.write_text(draft)
    env = {**os.environ, **{name: "redis://127.0.0.1:1/0" for name in _variables(draft)}}
    valid = subprocess.run(
        [sys.executable, "-m", "opscheck.cli", "validate", str(path)], capture_output=True, text=True, env=env
    )
    assert valid.returncode == 0, valid.stderr
    result = run_suite(draft, tmp_path / "run", "-m", "containers or logs", "-k", "not restart_count")
    result.assert_passed(
        "test_container_running[docker-discoshop:worker]",
        "test_container_running[docker-discoshop:api]",
        "test_container_job_succeeded[docker-discoshop:migrate]",
        "test_container_running[docker:discostandalone]",
        "test_log_error_rate_below_limit[discostandalone-log:errors]",
    )


def _variables(text: str) -> list[str]:
    return [line.split()[2].split("=")[0] for line in text.splitlines() if line.startswith("#   export ")]


def test_well_known_ports_become_targets_with_their_secret_as_a_variable():
    draft = Draft("x")
    for family, port in (("postgres", 5432), ("redis", 6379), ("pgbouncer", 6432), ("tls", 443)):
        _known_port(draft, family, "10.0.0.5", port)
    text = draft.render()
    doc = yaml.safe_load(text)
    assert doc["postgres"] == [{"name": "postgres-5432", "dsn": "${POSTGRES_5432_DSN}"}]
    assert doc["redis"] == [{"name": "redis-6379", "url": "${REDIS_6379_URL}"}]
    assert "export POSTGRES_5432_DSN=...   # postgresql://opscheck:PASSWORD@10.0.0.5:5432/DBNAME" in text
    assert "# guessed: something listens on 10.0.0.5:443, the usual tls port (TLS)" in text


def test_an_unreachable_source_fails_with_the_reason_and_no_traceback():
    proc = discover("--docker", f"tcp://127.0.0.1:{closed_port()}", "--timeout", "2")
    assert proc.returncode == 1
    assert "cannot list containers" in proc.stderr and "Traceback" not in proc.stderr
    nothing = discover()
    assert nothing.returncode == 4 and "name at least one source" in nothing.stderr


def test_a_cluster_drafts_its_namespaces_and_workloads(tmp_path):
    from tests.servers_kubernetes import KubeEmulator, daemonset, deployment, meta

    with KubeEmulator() as emu:
        emu.put(
            *({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(n, None)} for n in ("shop", "kube-system")),
            deployment("api-gateway", "shop", replicas=2),
            daemonset("node-agent", "shop"),
        )
        kubeconfig = emu.kubeconfig(tmp_path / "kubeconfig", context="prod")
        proc = discover("--kubeconfig", f"{kubeconfig}#prod", "--timeout", "5")
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout)
    assert doc["kubernetes"] == [
        {
            "name": "prod",
            "kubeconfig": str(kubeconfig),
            "context": "prod",
            "namespaces": [{"name": "shop", "deployments": ["api-gateway"], "daemonsets": ["node-agent"]}],
        }
    ]
    path = tmp_path / "drafted.yml"
    path.write_text(proc.stdout)
    valid = subprocess.run(
        [sys.executable, "-m", "opscheck.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert valid.returncode == 0, valid.stderr
