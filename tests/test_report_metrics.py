"""Results as metrics, scraped by a REAL Prometheus, alerting with the README's rules.

One suite run writes --metrics-file into a textfile directory served by Debian's
node_exporter (textfile collector only) and pushes to Debian's Pushgateway; Prometheus
scrapes both every second and evaluates the alert rules copied from the README. Then:
the check series and their labels, the run series, a p0 failure firing
OpscheckCheckFailing (a passing and a waived check do not), a stale environment firing
OpscheckRunMissing; a Pushgateway that never answers costs one timeout and a warning,
not the run; a metrics file in a missing folder stops the run (exit 4).
"""

import re
import time

import pytest
import requests
import yaml

from opscheck.report.metrics import exposition
from tests.conftest import REPO, run_suite
from tests.servers import HttpServer, Route, SilentListener
from tests.servers_metrics import NodeExporter, Pushgateway
from tests.servers_monitoring import PrometheusServer

# the module-scoped scenario (servers, suite runs) is timed as part of its first test
pytestmark = pytest.mark.timeout(180)

ENV = "metrics"


def readme_rules() -> list[dict]:
    """The alert rules exactly as the README gives them."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    [block] = [b for b in blocks if "alert: OpscheckCheckFailing" in b]
    return yaml.safe_load(block)["groups"]


def _until(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} within {seconds} s (last: {last})")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    textfiles = tmp / "textfile"
    textfiles.mkdir()
    # another environment's file, beside ours, whose last run is long past: OpscheckRunMissing fires for it
    stale = {"environment": "stale", "checks": [], "duration_s": 2.5, "exit_status": 0}
    (textfiles / "opscheck_stale.prom").write_text(exposition(stale, finished_ts=1000.0))
    routes = {"/api": Route(status=500, body="boom"), "/docs": Route(body="ok"), "/old": Route(status=404)}
    waivers = tmp / "waivers.yml"
    waivers.write_text(
        yaml.safe_dump(
            {
                "waivers": [
                    {
                        "check": "test_http_status",
                        "target": "old",
                        "owner": "bob",
                        "reason": "OPS-9",
                        "expires": "2099-01-01",
                    }
                ]
            }
        )
    )
    with HttpServer(routes) as http, NodeExporter(textfiles) as node, Pushgateway() as gateway:
        inventory = {
            "environment": ENV,
            "http": [
                {"name": "api", "url": http.url("/api"), "severity": "p0"},
                {"name": "docs", "url": http.url("/docs"), "severity": "p1"},
                {"name": "old", "url": http.url("/old"), "severity": "p1"},
            ],
        }
        metrics_file = textfiles / "opscheck_metrics.prom"
        result = run_suite(
            inventory,
            tmp / "run",
            "-k",
            "http_status",
            f"--metrics-file={metrics_file}",
            f"--pushgateway={gateway.url}",
            env={"OPSCHECK_WAIVERS": str(waivers)},
        )
        assert result.rc == 1, result.output
        with PrometheusServer({"node": [node.address], "pushgateway": [gateway.address]}, readme_rules(), []) as prom:
            yield {"result": result, "file": metrics_file, "prom": prom}


def query(prom, expr: str) -> dict[tuple, float]:
    """{(check, job): value} of an instant query (label sets made hashable)."""
    data = prom.get("/api/v1/query", query=expr)["data"]["result"]
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data}


def values(prom, expr: str, by: str) -> dict[str, float]:
    data = prom.get("/api/v1/query", query=expr)["data"]["result"]
    return {r["metric"].get(by, ""): float(r["value"][1]) for r in data}


def test_the_textfile_is_prometheus_text_format(stack):
    text = stack["file"].read_text()
    assert "# TYPE opscheck_check_ok gauge" in text
    assert (
        'opscheck_check_ok{environment="metrics",check="test_http_status[api]",target="api",severity="p0",'
        'family="http"} 0' in text
    )
    assert not list(stack["file"].parent.glob(".*")), "written whole, then renamed: no temporary file left"


@pytest.mark.parametrize("job", ["node", "pushgateway"])
def test_prometheus_scrapes_the_check_series(stack, job):
    prom = stack["prom"]
    expr = f'opscheck_check_ok{{job="{job}",environment="{ENV}"}}'
    found = _until(lambda: values(prom, expr, "check"), 20, f"{expr} scraped")
    assert found == {"test_http_status[api]": 0.0, "test_http_status[docs]": 1.0, "test_http_status[old]": 1.0}
    [labels] = [k for k in query(prom, expr) if ("check", "test_http_status[api]") in k]
    assert {("target", "api"), ("severity", "p0"), ("family", "http")} <= set(labels)
    ours = f'job="{job}",environment="{ENV}"'
    waived = values(prom, f"opscheck_check_waived{{{ours}}}", "check")
    assert waived == {"test_http_status[old]": 1.0}
    failing = values(prom, f"opscheck_run_failing_checks{{{ours}}}", "severity")
    assert failing == {"p0": 1.0, "p1": 0.0, "p2": 0.0, "p3": 0.0}
    statuses = values(prom, f"opscheck_run_checks{{{ours}}}", "status")
    assert statuses == {"failed": 1.0, "waived": 1.0, "passed": 1.0, "skipped": 0.0}
    assert values(prom, f"opscheck_run_exit_status{{{ours}}}", "environment") == {ENV: 1.0}
    duration = values(prom, f"opscheck_run_duration_seconds{{{ours}}}", "environment")[ENV]
    assert duration == stack["result"].summary["duration_s"]
    last = values(prom, f'opscheck_last_run_timestamp_seconds{{job="{job}",environment="{ENV}"}}', "environment")
    assert abs(last[ENV] - time.time()) < 600


def test_the_textfile_collector_reads_it_without_error(stack):
    prom = stack["prom"]
    errors = _until(lambda: values(prom, 'node_textfile_scrape_error{job="node"}', "job"), 20, "textfile scraped")
    assert errors == {"node": 0.0}


def test_the_readme_rule_fires_for_the_failing_p0_check_only(stack):
    prom = stack["prom"]
    expr = 'ALERTS{alertname="OpscheckCheckFailing",alertstate="firing"}'
    firing = _until(lambda: len(query(prom, expr)) >= 2 and query(prom, expr), 30, "OpscheckCheckFailing firing")
    assert {dict(k)["job"] for k in firing} == {"node", "pushgateway"}
    for labels in map(dict, firing):
        assert labels["check"] == "test_http_status[api]", "the passing and the waived check do not alert"
        assert (labels["severity"], labels["target"], labels["environment"]) == ("p0", "api", ENV)


def test_the_readme_rule_fires_for_a_stale_environment(stack):
    prom = stack["prom"]
    expr = 'ALERTS{alertname="OpscheckRunMissing",alertstate="firing"}'
    firing = _until(lambda: values(prom, expr, "environment"), 30, "OpscheckRunMissing firing")
    assert set(firing) == {"stale"}


def test_a_silent_pushgateway_costs_one_timeout_not_the_run(run_checks):
    with HttpServer({"/ok": Route(body="ok")}) as http, SilentListener() as silent:
        inventory = {"environment": ENV, "http": [{"name": "ok", "url": http.url("/ok")}]}
        started = time.monotonic()
        result = run_checks(
            inventory,
            "-k",
            "http_status",
            f"--pushgateway=http://pusher:s3cretpw@127.0.0.1:{silent.port}",
            "--pushgateway-timeout=1",
            timeout=60,
        )
        elapsed = time.monotonic() - started
    assert result.rc == 0, "the checks' verdict stands"
    assert "opscheck: WARNING: push to http://***@127.0.0.1:" in result.output  # userinfo masked
    assert "ReadTimeout" in result.output and "s3cretpw" not in result.output
    assert silent.accepts == 1 and elapsed < 30


def test_a_metrics_file_in_a_missing_folder_stops_the_run(run_checks, tmp_path):
    result = run_checks({"environment": ENV}, f"--metrics-file={tmp_path / 'nowhere' / 'opscheck.prom'}")
    assert result.rc == 4, result.output
    assert "does not exist" in result.output and "Traceback" not in result.output
    assert not result.reports_dir.exists(), "no run directory for a refused run"
