"""HTTP family against a real HTTP server: healthy, 503, slow, wrong JSON, missing header."""

import pytest

from tests.servers import HttpServer, Misbehaving, Route, dripping

HEALTHY = {"status": "ok", "checks": {"database": "ok", "redis": "ok"}, "queue_depth": 12}
DEGRADED = {"status": "degraded", "checks": {"database": "error", "redis": "ok"}, "queue_depth": 61204}


@pytest.fixture(scope="module")
def server():
    routes = {
        "/health": Route(body=HEALTHY, headers={"X-Content-Type-Options": "nosniff"}),
        "/down": Route(status=503, body={"status": "down"}),
        "/slow": Route(body=HEALTHY, delay=2.5),  # far from both limits: a loaded CI runner stalls ~1 s
        "/degraded": Route(body=DEGRADED),
        "/rpc": Route(body=HEALTHY, methods=("POST",)),
        "/workflows/42": Route(body={"state": "completed"}),
        "/nested": Route(body=b"[" * 100_000, headers={"Content-Type": "application/json"}),
    }
    with HttpServer(routes) as srv:
        yield srv


def endpoint(server, name, path, **extra):
    return {"name": name, "url": server.url(path), **extra}


@pytest.fixture(scope="module")
def result(server, tmp_path_factory):
    from tests.conftest import run_suite

    conditions = [
        {"path": "checks.database", "op": "==", "value": "ok"},
        {"path": "queue_depth", "op": "<", "value": 10000},
    ]
    inventory = {
        "environment": "selftest-http",
        "http": [
            endpoint(
                server,
                "api",
                "/health",
                severity="p0",
                schedule=["smoke"],
                max_latency_ms=2000,
                json=conditions,
                response_headers={"X-Content-Type-Options": "^nosniff$"},
            ),
            endpoint(server, "down", "/down"),
            endpoint(server, "slow", "/slow", max_latency_ms=1500),
            endpoint(
                server, "degraded", "/degraded", json=conditions, response_headers={"Strict-Transport-Security": None}
            ),
            endpoint(server, "nested", "/nested", json=conditions),
            endpoint(server, "rpc", "/rpc", method="POST", body={"ping": 1}),
            endpoint(server, "rpc-get", "/rpc"),
            endpoint(
                server,
                "workflow",
                "/workflows/{workflow_id}",
                schedule=["adhoc"],
                json=[{"path": "state", "op": "==", "value": "completed"}],
            ),
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("http"), "--param", "workflow_id=42")


def test_healthy_endpoint_passes(result):
    result.assert_passed(
        "test_http_status[api]",
        "test_http_latency_below_limit[api]",
        "test_http_json_conditions[api]",
        "test_http_response_headers[api]",
    )


def test_inventory_markers_apply(result):
    check = result.checks["test_http_status[api]"]
    assert check["severity"] == "p0"
    assert check["schedule"] == "daily,smoke", "a smoke check is also daily"


def test_503_fails_with_status(result):
    result.assert_failed("test_http_status[down]", "status 503, expected 200", "runbook:")


def test_503_is_reachable_not_blocked(result):
    """A target that answers, even with a 503, is reachable: latency is judged on its own."""
    result.assert_passed("test_http_latency_below_limit[down]")


def test_slow_endpoint_fails_latency(result):
    result.assert_failed("test_http_latency_below_limit[slow]", ">= limit 1,500 ms")
    result.assert_passed("test_http_status[slow]")


def test_wrong_json_fails_naming_the_field(result):
    result.assert_failed(
        "test_http_json_conditions[degraded]",
        "checks.database is 'error', expected == 'ok'",
        "queue_depth is 61204, expected < 10000",
    )


def test_json_nested_past_the_recursion_limit_is_not_json(result):
    """A body of 100,000 `[`: json raised RecursionError, a traceback instead of the failure."""
    result.assert_failed("test_http_json_conditions[nested]", "the body is not JSON")


def test_missing_header_fails(result):
    result.assert_failed("test_http_response_headers[degraded]", "Strict-Transport-Security is missing")


def test_method_is_configurable(result, server):
    result.assert_passed("test_http_status[rpc]")
    result.assert_failed("test_http_status[rpc-get]", "status 405")


def test_adhoc_check_runs_with_its_param(result):
    result.assert_passed("test_http_json_conditions[workflow]")


def test_each_endpoint_is_fetched_once_per_run(result, server):
    assert server.hits["/degraded"] == 1
    assert server.hits["/health"] == 1


def test_adhoc_check_is_deselected_without_its_param(server, run_checks):
    inventory = {
        "environment": "selftest-adhoc",
        "http": [endpoint(server, "workflow", "/workflows/{workflow_id}", schedule=["adhoc"])],
    }
    result = run_checks(inventory)
    assert result.rc == 5, result.output  # nothing selected
    assert "deselected" in result.output
    assert not result.checks


DRIP_BODY = dripping(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")


def test_a_body_dripped_byte_by_byte_costs_one_timeout(run_checks):
    import time

    with Misbehaving(DRIP_BODY) as drip:
        inventory = {
            "environment": "selftest-drip",
            "defaults": {"timeout": 1},
            "http": [{"name": "drip", "url": f"http://127.0.0.1:{drip.port}/", "json": [{"path": "a", "value": 1}]}],
        }
        started = time.monotonic()
        result = run_checks(inventory, "-m", "daily")
        took = time.monotonic() - started
    assert result.rc == 1, result.output[-3000:]
    message = result.assert_failed("test_http_status[drip]", "no answer within the timeout")
    assert "Traceback" not in message and "Timeout (>" not in message, message
    assert "blocked" in result.message("test_http_json_conditions[drip]")
    assert took < 30, f"{took:.0f} s: a dripping body held the run"


def test_an_unknown_charset_still_reads_the_body(run_checks):
    routes = {"/": Route(body='{"status": "ok"}', headers={"Content-Type": "application/json; charset=no-such-codec"})}
    with HttpServer(routes) as server:
        result = run_checks(
            {
                "environment": "selftest-charset",
                "http": [{"name": "odd", "url": server.url("/"), "json": [{"path": "status", "value": "ok"}]}],
            },
            "-m",
            "daily",
        )
    assert result.rc == 0, result.output[-3000:]


def speak_ssh(conn, stop):
    conn.recv(65536)
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")


def test_a_cut_body_and_a_server_that_is_not_http_say_what_happened(run_checks):
    """A JSON body over the 1 MB read limit is "larger than 1 MB", not "not JSON"; a server
    that answers in another protocol "connected, but no valid HTTP answer", not "cannot connect"."""
    routes = {"/big": Route(body="[" + "0," * 600_000 + "0]", headers={"Content-Type": "application/json"})}
    with HttpServer(routes) as server, Misbehaving(speak_ssh) as ssh:
        inventory = {
            "environment": "selftest-http-odd",
            "http": [
                {"name": "big", "url": server.url("/big"), "json": [{"path": "[0]", "value": 0}]},
                {"name": "ssh", "url": f"http://127.0.0.1:{ssh.port}/"},
            ],
        }
        result = run_checks(inventory, "-m", "daily")
    result.assert_failed("test_http_json_conditions[big]", "larger than 1 MB", "not complete JSON")
    result.assert_failed("test_http_status[ssh]", "connected, but no valid HTTP answer", "BadStatusLine")
