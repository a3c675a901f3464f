"""prometheus and alertmanager families against a REAL stack of both, started once per module.

healthy: Prometheus scraping itself and its Alertmanager, a Watchdog and a quiet rule,
delivering to Alertmanager "am-ok" (the Watchdog arrives there within seconds).
broken: Prometheus with a scrape target that is down, a rule with an evaluation error, a
rule group never evaluated yet (24 h interval, grace 0), a firing critical alert, no
Watchdog and no Alertmanager. Alertmanager "am-bad": alerts posted by the test (one
started an hour ago, one two days ago), a 30-day silence without comment, no Watchdog.
"""

import time
from datetime import timedelta

import pytest

from tests.conftest import run_suite
from tests.servers import Misbehaving, closed_port
from tests.servers_monitoring import AlertmanagerServer, PrometheusServer

WATCHDOG = {"alert": "Watchdog", "expr": "vector(1)", "labels": {"severity": "none"}}


def _until(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001, S110 - not up yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} within {seconds} s")


@pytest.fixture(scope="module")
def stack():
    with AlertmanagerServer() as am_ok, AlertmanagerServer() as am_bad:
        healthy = PrometheusServer(
            {"prometheus": [], "alertmanager": [f"127.0.0.1:{am_ok.port}"]},
            [
                {
                    "name": "main",
                    "rules": [
                        WATCHDOG,
                        {"alert": "DiskFull", "expr": "vector(1) < 0", "labels": {"severity": "critical"}},
                        {"record": "job:up:sum", "expr": "sum by (job) (up)"},
                    ],
                }
            ],
            [f"127.0.0.1:{am_ok.port}"],
        )
        healthy.scrape["prometheus"] = [healthy.address]
        broken = PrometheusServer(
            {"prometheus": [], "api": [f"127.0.0.1:{closed_port()}"]},
            [
                {
                    "name": "main",
                    "rules": [
                        {"alert": "HighErrorRate", "expr": "vector(1) > 0", "labels": {"severity": "critical"}},
                        {"alert": "SlowRequests", "expr": "vector(2) > 0", "labels": {"severity": "warning"}},
                        {
                            "alert": "Duplicated",
                            "expr": '{__name__=~"up|scrape_duration_seconds"} * 1',
                            "labels": {"severity": "warning"},
                        },
                    ],
                },
                {"name": "nightly", "interval": "24h", "rules": [{"record": "x:nightly", "expr": "vector(1)"}]},
            ],
            [],
        )
        broken.scrape["prometheus"] = [broken.address]
        with healthy, broken:
            am_bad.post_alert({"alertname": "QueueBacklog", "severity": "warning", "queue": "jobs"}, timedelta(hours=1))
            am_bad.post_alert({"alertname": "OldProblem", "severity": "info"}, timedelta(days=2))
            am_bad.silence({"alertname": "Noise"}, timedelta(days=30), "")
            am_ok.silence({"alertname": "Maintenance"}, timedelta(hours=2), "db upgrade, OPS-12")
            _until(
                lambda: any(a["labels"]["alertname"] == "Watchdog" for a in am_ok.get("/api/v2/alerts")),
                30,
                "the Watchdog did not reach Alertmanager",
            )
            _until(
                lambda: all(t["health"] == "up" for t in healthy.get("/api/v1/targets")["data"]["activeTargets"]),
                15,
                "the healthy Prometheus's targets were not up",
            )

            def broken_settled():
                rules = broken.get("/api/v1/rules")["data"]["groups"][0]["rules"]
                targets = broken.get("/api/v1/targets")["data"]["activeTargets"]
                return (
                    any(r.get("health") == "err" for r in rules)
                    and any(r.get("state") == "firing" for r in rules)
                    and any(t["health"] == "down" for t in targets)
                )

            _until(broken_settled, 15, "the broken Prometheus did not settle")
            yield {"healthy": healthy, "broken": broken, "am_ok": am_ok, "am_bad": am_bad}


QUERIES = [
    {"name": "targets-up", "query": "sum(up)", "op": ">=", "value": 1},
    {
        "name": "error-rate",
        "query": "vector(0.002)",
        "op": "<",
        "value": 0.01,
        "severity": "p1",
        "hint": "5xx ratio over 1 %",
    },
    {
        "name": "disk-7-days",
        "query": "predict_linear(prometheus_tsdb_head_series[1m], 7*86400) >= 0",
        "op": ">=",
        "value": 0,
        "schedule": ["weekly"],
    },
]
BAD_QUERIES = [
    {"name": "error-rate", "query": 'label_replace(vector(0.05), "service", "api", "", "")', "op": "<", "value": 0.01},
    {"name": "typo", "query": "sum(http_requests_totl)", "op": "<", "value": 1},
]


@pytest.fixture(scope="module")
def result(stack, tmp_path_factory):
    started = time.monotonic()
    inventory = {
        "environment": "selftest-monitoring",
        "prometheus": [
            {
                "name": "prom",
                "url": stack["healthy"].url,
                "expected_jobs": ["prometheus", "alertmanager"],
                "queries": QUERIES,
            },
            {
                "name": "prom-bad",
                "url": stack["broken"].url,
                "expected_jobs": ["prometheus", "node"],
                "rule_grace_s": 0,
                "queries": BAD_QUERIES,
            },
            {"name": "prom-down", "url": f"http://127.0.0.1:{closed_port()}"},
        ],
        "alertmanager": [
            {"name": "am", "url": stack["am_ok"].url},
            {"name": "am-bad", "url": stack["am_bad"].url, "max_active_alerts": 1},
        ],
    }
    res = run_suite(
        inventory, tmp_path_factory.mktemp("monitoring"), "-m", "monitoring", "-k", "prometheus or alertmanager"
    )
    res.seconds = time.monotonic() - started
    return res


HEALTHY_PROM = [
    "test_prometheus_ready",
    "test_prometheus_targets_up",
    "test_prometheus_expected_jobs_present",
    "test_prometheus_rules_healthy",
    "test_prometheus_config_reloaded",
    "test_prometheus_alertmanager_connected",
    "test_prometheus_no_firing_warning_alerts",
    "test_prometheus_no_firing_critical_alerts",
    "test_prometheus_watchdog_firing",
]
HEALTHY_AM = [
    "test_alertmanager_ready",
    "test_alertmanager_cluster_ready",
    "test_alertmanager_watchdog_received",
    "test_alertmanager_no_recent_alerts",
    "test_alertmanager_active_alerts_within_budget",
    "test_alertmanager_silences_hygienic",
]


def test_healthy_stack_passes(result):
    result.assert_passed(
        *[f"{c}[prom]" for c in HEALTHY_PROM],
        *[f"{c}[am]" for c in HEALTHY_AM],
        "test_prometheus_query[prom:targets-up]",
        "test_prometheus_query[prom:error-rate]",
        "test_prometheus_query[prom:disk-7-days]",
    )


def test_broken_prometheus_fails_for_the_right_reasons(result):
    result.assert_failed(
        "test_prometheus_targets_up[prom-bad]", "api/127.0.0.1:", "connection refused", "1 of 2 targets unhealthy"
    )
    result.assert_failed("test_prometheus_expected_jobs_present[prom-bad]", "node")
    result.assert_failed(
        "test_prometheus_rules_healthy[prom-bad]",
        "main/Duplicated: err:",
        "same labelset",
        "nightly/x:nightly: never evaluated",
        "2 of 4 rules",
    )
    result.assert_failed("test_prometheus_alertmanager_connected[prom-bad]", "0 Alertmanager(s) connected")
    result.assert_failed("test_prometheus_no_firing_critical_alerts[prom-bad]", "HighErrorRate", 'severity="critical"')
    message = result.assert_failed(
        "test_prometheus_no_firing_warning_alerts[prom-bad]", "2 alert(s)", "SlowRequests", "HighErrorRate"
    )
    assert "Watchdog{" not in message  # allow-listed
    result.assert_failed("test_prometheus_watchdog_firing[prom-bad]", "Watchdog alert is absent")
    result.assert_passed("test_prometheus_ready[prom-bad]", "test_prometheus_config_reloaded[prom-bad]")


def test_promql_assertions_fail_on_value_and_on_no_series(result):
    result.assert_failed("test_prometheus_query[prom-bad:error-rate]", 'service="api"', "= 0.05", "< 0.01")
    result.assert_failed("test_prometheus_query[prom-bad:typo]", "returned no series", "http_requests_totl")


def test_promql_assertions_carry_inventory_markers(result):
    checks = result.checks
    assert checks["test_prometheus_query[prom:error-rate]"]["severity"] == "p1"
    assert checks["test_prometheus_query[prom:error-rate]"]["runbook"] == "5xx ratio over 1 %"
    assert checks["test_prometheus_query[prom:disk-7-days]"]["schedule"] == "weekly"


def test_unreachable_prometheus_fails_once_then_blocks(result):
    result.assert_failed("test_prometheus_ready[prom-down]", "cannot connect")
    for check in HEALTHY_PROM[1:]:
        if check == "test_prometheus_expected_jobs_present":
            continue  # no expected_jobs given for prom-down
        result.assert_failed(f"{check}[prom-down]", "blocked:")


def test_alertmanager_problems_fail(result):
    message = result.assert_failed(
        "test_alertmanager_no_recent_alerts[am-bad]",
        "1 active alert(s)",
        'QueueBacklog{queue="jobs",severity="warning"}',
        "since",
    )
    assert "OldProblem" not in message  # started two days ago: not overnight
    result.assert_failed("test_alertmanager_active_alerts_within_budget[am-bad]", "2 active alerts > budget 1")
    result.assert_failed("test_alertmanager_watchdog_received[am-bad]", "Watchdog alert has not arrived")
    result.assert_failed(
        "test_alertmanager_silences_hygienic[am-bad]", "alertname=Noise", "lasts 30.0 days > 7", "has no comment"
    )
    result.assert_passed("test_alertmanager_ready[am-bad]", "test_alertmanager_cluster_ready[am-bad]")


def test_full_monitoring_run_is_fast(result):
    print(f"monitoring family run: {result.seconds:.1f} s")
    assert result.seconds < 30, result.output


def endless_json(conn, stop):
    """200 with a JSON body that never ends, sent as fast as it goes."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[")
    chunk = b"0," * 32768
    while not stop.is_set():
        conn.sendall(chunk)


def test_an_endless_answer_is_cut_not_kept(tmp_path):
    """A JSON API that never stops sending: read up to its limit (32 MB) or its deadline, then a
    failure that says so; it filled 9 GB in a minute before."""
    with Misbehaving(endless_json) as server:
        inventory = {
            "environment": "selftest-endless",
            "defaults": {"timeout": 2},
            "prometheus": [{"name": "endless", "url": f"http://127.0.0.1:{server.port}", "expected_jobs": ["x"]}],
        }
        started = time.monotonic()
        result = run_suite(inventory, tmp_path, "-m", "daily", "-p", "no:randomly")
        took = time.monotonic() - started
    assert result.rc == 1, result.output[-3000:]
    failed = [c for c in result.summary["checks"] if c["outcome"] == "failed"]
    assert failed and all(
        "larger than 32 MB" in c["message"] or "not complete within" in c["message"] or "blocked" in c["message"]
        for c in failed
    ), [c["message"][:200] for c in failed]
    assert took < 60, f"{took:.0f} s"
