"""grafana family: /api/health with database "ok".

Grafana is not packaged for Debian: its check runs against a local HTTP server serving
the documented /api/health answers (200 with database "ok"; 503 with "failing").
"""

import pytest

from tests.conftest import run_suite
from tests.servers import HttpServer, Route, closed_port


@pytest.fixture(scope="module")
def grafana():
    routes = {"/api/health": Route(body={"commit": "abc", "database": "ok", "version": "10.4.2"})}
    failing = {"/api/health": Route(status=503, body={"commit": "abc", "database": "failing", "version": "10.4.2"})}
    deep = {"/api/health": Route(body=b"[" * 100_000, headers={"Content-Type": "application/json"})}
    with HttpServer(routes) as ok, HttpServer(failing) as bad, HttpServer(deep) as nested:
        yield ok, bad, nested


@pytest.fixture(scope="module")
def result(grafana, tmp_path_factory):
    inventory = {
        "environment": "selftest-grafana",
        "grafana": [
            {"name": "grafana", "url": grafana[0].url("")},
            {"name": "grafana-bad", "url": grafana[1].url("")},
            {"name": "grafana-nested", "url": grafana[2].url("")},
            {"name": "grafana-down", "url": f"http://127.0.0.1:{closed_port()}", "timeout": 1},
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("grafana"), "-m", "monitoring")


def test_healthy_grafana_passes(result):
    result.assert_passed("test_grafana_healthy[grafana]")


def test_grafana_database_failing_fails(result):
    result.assert_failed("test_grafana_healthy[grafana-bad]", "answered 503", "'failing'")


def test_unreachable_grafana_fails_with_the_reason(result):
    result.assert_failed("test_grafana_healthy[grafana-down]", "cannot connect")


def test_json_nested_past_the_recursion_limit_fails_plainly(result):
    """100,000 `[`: requests' json() raised RecursionError, a traceback instead of the failure."""
    result.assert_failed("test_grafana_healthy[grafana-nested]", "answered 200 with database None")
