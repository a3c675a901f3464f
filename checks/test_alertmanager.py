"""alertmanager checks, judged from its HTTP API v2: ready, cluster ready (or disabled on a
single node), the Watchdog received, recent active alerts, the alert budget and silence
hygiene. API v2 never reports state "firing" (active, suppressed, unprocessed): an alert
counts when its state is "active", i.e. neither silenced nor inhibited.
"""

from datetime import UTC, datetime, timedelta

import pytest

from opscheck.core.checking import expect, fmt, listed
from opscheck.core.redact import clip
from opscheck.core.times import ago, parse_time
from opscheck.families.prometheus import labels_text

pytestmark = [pytest.mark.monitoring]


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "Alertmanager is not ready (runbook: `curl -s http://localhost:9093/-/healthy`; assert the "
    "status, `curl -s` does not). Alerts queue in Prometheus and nobody is notified. Look at the "
    "pod/process and its log (a config error stops it)."
)
def test_alertmanager_ready(alertmanager, am):
    status, body = am.get("/-/ready")
    expect(status == 200, f"{am.shown}: /-/ready answered {status}, expected 200: {clip(str(body), 200)!r}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The Alertmanager cluster is not settled: peers cannot gossip, so silences and "
    "notification state diverge (duplicate or lost pages). 'disabled' (one node, no "
    "clustering) is normal. Look at /api/v2/status .cluster.peers and the cluster port (9094)."
)
def test_alertmanager_cluster_ready(alertmanager, am):
    cluster = am.json("/api/v2/status").get("cluster", {})
    status = cluster.get("status")
    expect(
        status in ("ready", "disabled"),
        f"{am.shown}: cluster status {status!r} with {len(cluster.get('peers') or [])} peer(s), "
        "expected 'ready' (or 'disabled' on a single node)",
    )


def _active(am, alertmanager) -> list[dict]:
    """Alerts neither silenced nor inhibited. API v2 has no 'firing' state: 'active' it is."""
    alerts = am.json("/api/v2/alerts", active="true", silenced="false", inhibited="false")
    return [
        a
        for a in alerts
        if a.get("status", {}).get("state") == "active"
        and a.get("labels", {}).get("alertname") not in alertmanager.alert_allow
    ]


def _alert_line(alert: dict, now: datetime) -> str:
    started = parse_time(alert.get("startsAt"))
    return f"{labels_text(alert.get('labels', {}))} since {alert.get('startsAt', '?')[:19]}Z ({ago(started, now)})"


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The Watchdog alert does not reach Alertmanager: the path Prometheus → Alertmanager is "
    "broken (wrong alerting config, network, TLS), so real alerts are not delivered either. "
    "Look at prometheus_notifications_errors_total and the Prometheus log."
)
def test_alertmanager_watchdog_received(alertmanager_watchdog, am):
    name = alertmanager_watchdog.watchdog_alert
    alerts = am.json("/api/v2/alerts")
    found = [a for a in alerts if a.get("labels", {}).get("alertname") == name]
    expect(
        found,
        f"{am.shown}: the {name} alert has not arrived ({len(alerts)} alert(s) present): "
        "no Prometheus delivers alerts here",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "Alerts started overnight and are still active (neither silenced nor inhibited): the daily "
    "checklist's 'Review overnight alerts and incidents'. Each line gives the labels and since "
    "when. Work them, or silence the accepted ones with a comment and an end date."
)
def test_alertmanager_no_recent_alerts(alertmanager, am):
    now = datetime.now(UTC)
    window = timedelta(hours=alertmanager.recent_hours)
    recent = [a for a in _active(am, alertmanager) if (parse_time(a.get("startsAt")) or now) >= now - window]
    lines = [_alert_line(a, now) for a in sorted(recent, key=lambda a: a.get("startsAt", ""))]
    expect(
        not recent,
        f"{am.shown}: {len(recent)} active alert(s) started within the last "
        f"{fmt(alertmanager.recent_hours)} h: {listed(lines)}",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "More active alerts than the alert-fatigue budget (runbook: Alert Fatigue): people stop "
    "reading them. Tune thresholds and `for:` durations, group and inhibit related alerts, "
    "and silence what is accepted."
)
def test_alertmanager_active_alerts_within_budget(alertmanager, am):
    now = datetime.now(UTC)
    active = _active(am, alertmanager)
    lines = [_alert_line(a, now) for a in active]
    expect(
        len(active) <= alertmanager.max_active_alerts,
        f"{am.shown}: {len(active)} active alerts > budget {alertmanager.max_active_alerts}: {listed(lines)}",
    )


@pytest.mark.p3
@pytest.mark.weekly
@pytest.mark.runbook(
    "A silence lasts longer than allowed or carries no comment: a problem hidden for weeks, with "
    "nobody saying why. Shorten it, give it a comment with the ticket, or expire it."
)
def test_alertmanager_silences_hygienic(alertmanager, am):
    silences = [s for s in am.json("/api/v2/silences") if s.get("status", {}).get("state") == "active"]
    limit = timedelta(days=alertmanager.silence_max_days)
    bad = []
    for s in silences:
        starts, ends = parse_time(s.get("startsAt")), parse_time(s.get("endsAt"))
        matchers = ",".join(f"{m['name']}{'=~' if m.get('isRegex') else '='}{m['value']}" for m in s["matchers"])
        problems = []
        if starts and ends and ends - starts > limit:
            days = (ends - starts).total_seconds() / 86400
            problems.append(f"lasts {days:.1f} days > {fmt(alertmanager.silence_max_days)}")
        if not (s.get("comment") or "").strip():
            problems.append("has no comment")
        if problems:
            bad.append(f"silence {s['id'][:8]} {{{matchers}}} by {s.get('createdBy') or '?'} " + " and ".join(problems))
    expect(not bad, f"{am.shown}: {len(bad)} of {len(silences)} active silences: {listed(bad)}")
