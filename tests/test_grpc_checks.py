"""grpc family against REAL grpcio servers on loopback (grpcio's own health servicer):
plaintext and TLS (CA file, client certificate), a service switched to NOT_SERVING, an
unknown service, a server without the health service, a slow one, and unreachable ones
(a closed port; a listener that never answers: one timeout, then "blocked:").
"""

import shutil

import pytest

from tests.conftest import run_suite
from tests.servers import SilentListener, closed_port
from tests.servers_grpc import NOT_SERVING, GrpcHealthServer
from tests.servers_tls import selftest_pki


@pytest.fixture(scope="module")
def pki():
    pki = selftest_pki()
    yield pki
    shutil.rmtree(pki.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def servers(pki):
    chain = pki.good.pem + pki.intermediate.pem
    made = {
        "plain": GrpcHealthServer(services=("", "aggregator")),
        "tls": GrpcHealthServer(tls=(pki.good.key_pem, chain)),
        "mtls": GrpcHealthServer(tls=(pki.good.key_pem, chain), client_ca=pki.intermediate.pem + pki.root.pem),
        "no-health": GrpcHealthServer(with_health=False),
        "slow": GrpcHealthServer(delay=0.3),
    }
    for server in made.values():
        server.start()
    with SilentListener() as silent:
        made["silent"] = silent
        yield made
    for name, server in made.items():
        if name != "silent":
            server.stop()


def target(name, address, **extra):
    return {"name": name, "address": address, **extra}


@pytest.fixture(scope="module")
def result(servers, pki, tmp_path_factory):
    ca = str(pki.ca_file)
    client = {"client_cert": str(pki.client.cert_path), "client_key": str(pki.client.key_path)}
    inventory = {
        "environment": "selftest-grpc",
        "defaults": {"timeout": 2},
        "grpc": [
            target("plain", servers["plain"].address),
            target("aggregator", servers["plain"].address, service="aggregator"),
            target("unknown-service", servers["plain"].address, service="nope"),
            target("tls", servers["tls"].address, tls=True, ca_file=ca, server_name="localhost"),
            target("tls-wrong-ca", servers["tls"].address, tls=True, ca_file=str(pki.foreign.ca_file)),
            target("mtls", servers["mtls"].address, tls=True, ca_file=ca, server_name="localhost", **client),
            target("mtls-no-client-cert", servers["mtls"].address, tls=True, ca_file=ca, server_name="localhost"),
            target("no-health", servers["no-health"].address),
            target("slow", servers["slow"].address, max_latency_ms=100),
            target("closed", f"127.0.0.1:{closed_port()}"),
            target("silent", f"127.0.0.1:{servers['silent'].port}", timeout=1),
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("grpc"))


def test_serving_servers_pass(result):
    for name in ("plain", "aggregator", "tls", "mtls"):
        result.assert_passed(f"test_grpc_health_serving[{name}]", f"test_grpc_health_latency_below_limit[{name}]")


def test_markers(result):
    check = result.checks["test_grpc_health_serving[plain]"]
    assert (check["severity"], check["schedule"], check["family"]) == ("p0", "daily,smoke", "grpc")


def test_unknown_service_fails_naming_it(result):
    result.assert_failed(
        "test_grpc_health_serving[unknown-service]", "service 'nope'", "does not know this service name (NOT_FOUND)"
    )
    result.assert_passed("test_grpc_health_latency_below_limit[unknown-service]")  # it answered


def test_server_without_health_service_fails(result):
    result.assert_failed("test_grpc_health_serving[no-health]", "does not implement grpc.health.v1.Health")


def test_tls_failures(result):
    result.assert_failed(
        "test_grpc_health_serving[tls-wrong-ca]", "Tls handshake failed", "cannot reach the server (UNAVAILABLE)"
    )
    result.assert_failed("test_grpc_health_latency_below_limit[tls-wrong-ca]", "blocked: ")
    result.assert_failed("test_grpc_health_serving[mtls-no-client-cert]", "UNAVAILABLE")


def test_slow_server_fails_latency_only(result):
    result.assert_passed("test_grpc_health_serving[slow]")
    result.assert_failed("test_grpc_health_latency_below_limit[slow]", ">= limit 100 ms")


def test_unreachable_costs_one_timeout(result, servers):
    result.assert_failed("test_grpc_health_serving[closed]", "cannot reach the server (UNAVAILABLE)")
    result.assert_failed("test_grpc_health_latency_below_limit[closed]", "blocked: ")
    result.assert_failed("test_grpc_health_serving[silent]", "no answer within the deadline 1 s (DEADLINE_EXCEEDED)")
    message = result.assert_failed("test_grpc_health_latency_below_limit[silent]", "blocked: ")
    assert "DEADLINE_EXCEEDED" in message
    assert servers["silent"].accepts == 1, "one connection, one timeout: the second check did not try again"


def test_switch_to_not_serving_fails(servers, run_checks):
    servers["plain"].set("aggregator", NOT_SERVING)
    inventory = {
        "environment": "selftest-grpc-switch",
        "grpc": [target("aggregator", servers["plain"].address, service="aggregator")],
    }
    run = run_checks(inventory, "-k", "serving")
    run.assert_failed(
        "test_grpc_health_serving[aggregator]", "Health/Check answered NOT_SERVING, expected SERVING", "runbook:"
    )
