"""prometheus checks, judged from its HTTP API: ready, every target up and freshly scraped,
each expected job present, every rule healthy, config reloaded, an Alertmanager
connected, no firing alert at or above a severity (warning p2, critical p0) except an
allow-list, the Watchdog firing, and the inventory's PromQL assertions.
"""

from datetime import UTC, datetime

import pytest

from opscheck.core.checking import expect, fmt, holds, listed
from opscheck.core.redact import clip
from opscheck.core.times import ago, duration_seconds, parse_time
from opscheck.families.prometheus import labels_text, severity_rank

pytestmark = [pytest.mark.monitoring]


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "Prometheus is not ready (runbook: `curl http://localhost:9090/-/healthy`; /-/healthy only "
    "says the process runs, /-/ready that it serves queries). Is the pod/process up "
    "(`kubectl get pods -n monitoring`), is the TSDB replaying its WAL after a restart, is the "
    "volume full? Without it there are no alerts."
)
def test_prometheus_ready(prometheus, prom):
    status, body = prom.get("/-/ready")
    expect(status == 200, f"{prom.shown}: /-/ready answered {status}, expected 200: {clip(str(body), 200)!r}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A scrape target is down or has not been scraped recently (runbook: `curl "
    "localhost:9090/api/v1/targets | jq '.data.activeTargets[] | select(.health != \"up\")'`). "
    "Its metrics are missing and its alerts cannot fire. Look at lastError: connection refused "
    "(service down, wrong port), 404 (no /metrics), timeout; check the pod's scrape annotations."
)
def test_prometheus_targets_up(prometheus, prom):
    targets = prom.json("/api/v1/targets", state="active")["activeTargets"]
    now = datetime.now(UTC)
    bad = []
    for t in targets:
        labels = t.get("labels", {})
        who = f"{labels.get('job', t.get('scrapePool'))}/{labels.get('instance', t.get('scrapeUrl'))}"
        last = parse_time(t.get("lastScrape"))
        max_age = prometheus.scrape_max_age_factor * max(duration_seconds(t.get("scrapeInterval") or "60s"), 1)
        if t.get("health") != "up" or t.get("lastError"):
            bad.append(f"{who} {t.get('health')}: {t.get('lastError') or 'no error given'}")
        elif last is None or (now - last).total_seconds() > max_age:
            bad.append(f"{who} last scraped {ago(last, now)} (limit {fmt(max_age)} s)")
    expect(targets, f"{prom.shown}: no active scrape targets at all")
    expect(not bad, f"{prom.shown}: {len(bad)} of {len(targets)} targets unhealthy: {listed(bad)}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "An expected job has no active scrape target: its service discovery finds nothing (pod "
    "labels or annotations changed, ServiceMonitor missing, static config lost in a reload). "
    "Look at Status > Service Discovery in the Prometheus UI."
)
def test_prometheus_expected_jobs_present(prometheus_jobs, prom):
    targets = prom.json("/api/v1/targets", state="active")["activeTargets"]
    jobs = {t.get("labels", {}).get("job") or t.get("scrapePool") for t in targets}
    missing = [j for j in prometheus_jobs.expected_jobs if j not in jobs]
    expect(
        not missing,
        f"{prom.shown}: expected job(s) with no active target: {', '.join(missing)}; "
        f"jobs present: {', '.join(sorted(j for j in jobs if j)) or 'none'}",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.weekly
@pytest.mark.runbook(
    "A recording or alerting rule does not evaluate (runbook: `curl localhost:9090/api/v1/rules "
    "| jq '.data.groups[]'`). A rule in error never fires: the alert it carries is blind. Look "
    "at lastError (a many-to-many match, a duplicate label set, a renamed metric) and test the "
    "expression with `promtool test rules`."
)
def test_prometheus_rules_healthy(prometheus, prom):
    groups = prom.json("/api/v1/rules")["groups"]
    info = prom.json("/api/v1/status/runtimeinfo")
    now = datetime.now(UTC)
    loaded = [t for t in (parse_time(info.get("startTime")), parse_time(info.get("lastConfigTime"))) if t]
    since = max(loaded, default=now)  # rules restart evaluating at start and at every reload
    bad, count = [], 0
    for group in groups:
        grace = prometheus.rule_grace_s
        if grace is None:
            grace = max(300.0, 2 * float(group.get("interval") or 0))
        for rule in group.get("rules", []):
            count += 1
            health = rule.get("health")
            name = f"{group['name']}/{rule.get('name')}"
            if health == "err" or rule.get("lastError"):
                bad.append(f"{name}: err: {rule.get('lastError', '')}")
            elif health == "unknown" and (now - since).total_seconds() > grace:
                bad.append(
                    f"{name}: never evaluated ('unknown') {fmt((now - since).total_seconds())} s "
                    f"after start/reload (grace {fmt(grace)} s)"
                )
            elif health not in ("ok", "unknown"):
                bad.append(f"{name}: health {health!r}")
    expect(count, f"{prom.shown}: no rules loaded (0 rule groups): alerts cannot fire")
    expect(not bad, f"{prom.shown}: {len(bad)} of {count} rules unhealthy: {listed(bad)}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The last configuration reload failed: Prometheus runs an older configuration than the one "
    "deployed. Run `promtool check config` on the file and look for 'Error reloading config' "
    "in the Prometheus log."
)
def test_prometheus_config_reloaded(prometheus, prom):
    info = prom.json("/api/v1/status/runtimeinfo")
    expect(
        info.get("reloadConfigSuccess") is True,
        f"{prom.shown}: reloadConfigSuccess is {info.get('reloadConfigSuccess')!r} "
        f"(last successful config at {info.get('lastConfigTime')})",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Prometheus knows no Alertmanager: alerts fire in Prometheus and reach nobody. Look at the "
    "`alerting:` section of prometheus.yml and its service discovery (Status > Runtime & Build "
    "Information lists the Alertmanagers)."
)
def test_prometheus_alertmanager_connected(prometheus, prom):
    found = prom.json("/api/v1/alertmanagers").get("activeAlertmanagers") or []
    expect(
        len(found) >= prometheus.min_alertmanagers,
        f"{prom.shown}: {len(found)} Alertmanager(s) connected < required {prometheus.min_alertmanagers}",
    )


def _firing_at_or_above(prometheus, prom, level: str, what: str):
    alerts = prom.json("/api/v1/alerts")["alerts"]
    limit = severity_rank(level)
    bad = [
        a
        for a in alerts
        if a.get("state") == "firing"
        and a.get("labels", {}).get("alertname") not in prometheus.alert_allow
        and severity_rank(a.get("labels", {}).get("severity")) >= limit
    ]
    lines = [f"{labels_text(a['labels'])} since {a.get('activeAt', '?')[:19]}Z" for a in bad]
    expect(
        not bad,
        f"{prom.shown}: {len(bad)} alert(s) firing at severity >= {what} {level!r} "
        f"(allowed: {', '.join(prometheus.alert_allow) or 'none'}): {listed(lines)}",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "An alert of warning severity (or higher) is firing. Read its annotations (summary, "
    "runbook_url) in Prometheus's Alerts page; known and accepted ones belong in a silence "
    "with a comment, not in a permanently red report."
)
def test_prometheus_no_firing_warning_alerts(prometheus, prom):
    _firing_at_or_above(prometheus, prom, prometheus.alert_warn_severity, "warning")


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(
    "A critical alert is firing: the on-call should already be paged. Read its annotations in "
    "Prometheus's Alerts page and follow its runbook_url; check Alertmanager delivered it."
)
def test_prometheus_no_firing_critical_alerts(prometheus, prom):
    _firing_at_or_above(prometheus, prom, prometheus.alert_crit_severity, "critical")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The Watchdog alert (an always-firing `vector(1)` rule) is not firing: rule evaluation is "
    "broken or the rule was removed, so no other alert can be trusted either. Look at the rule "
    "files and at rule health (`/api/v1/rules`)."
)
def test_prometheus_watchdog_firing(prometheus_watchdog, prom):
    name = prometheus_watchdog.watchdog_alert
    alerts = prom.json("/api/v1/alerts")["alerts"]
    states = [a.get("state") for a in alerts if a.get("labels", {}).get("alertname") == name]
    expect(
        "firing" in states,
        f"{prom.shown}: the {name} alert is {'in state ' + '/'.join(states) if states else 'absent'}, expected firing",
    )


@pytest.mark.runbook(
    "A PromQL assertion from the inventory does not hold. The failing series' labels say where "
    "to look; run the query in Prometheus's Graph page over the last hours for the trend."
)
def test_prometheus_query(prometheus_query, prom):
    query = prometheus_query.value
    result = prom.json("/api/v1/query", query=query.query)
    kind, data = result.get("resultType"), result.get("result")
    if kind == "scalar":
        series = [({}, data[1])]
    elif kind == "vector":
        series = [(s.get("metric", {}), s["value"][1]) for s in data]
    else:
        series = []
        expect(False, f"{prom.shown}: query {query.name!r} returned a {kind}, expected an instant vector or scalar")
    if not series:
        expect(
            query.allow_empty,
            f"{prom.shown}: query {query.name!r} returned no series (a missing metric "
            f"or a label typo is not a pass): {query.query}",
        )
        return
    bad = []
    for labels, text in series:
        value = float(text)
        if not holds(value, query.op, query.value):
            bad.append(f"{labels_text(labels) if labels else 'value'} = {value:g}")
    expect(
        not bad,
        f"{prom.shown}: {query.name}: {len(bad)} of {len(series)} series fail "
        f"{query.op} {query.value:g}: {listed(bad)} (query: {query.query})",
    )
