"""Prometheus over its HTTP API: readiness, scrape targets, rules, alerts, PromQL assertions.

Every answer is fetched once per run and shared by the checks that judge it (one
`/api/v1/targets` for the targets checks, one `/api/v1/alerts` for the alert checks).
A target that cannot be reached costs one timeout, once: later checks fail at once
with "blocked: <first error>". Only GET requests are sent.
"""

from typing import Literal

from pydantic import Field

from opscheck.core.model import Condition, InventoryCheck, Item, Name, Param, check_marks
from opscheck.core.web import ApiTarget

# Severity labels from lowest to highest; an alert "at or above" a level is judged by this order.
SEVERITY_ORDER = ["none", "info", "low", "warning", "medium", "high", "error", "critical", "page"]
ALLOW_DEFAULT = ["Watchdog", "InfoInhibitor"]


class PromQuery(InventoryCheck, Condition):
    """A PromQL assertion: every series the instant query returns must meet the condition.

    A query that returns no series fails (a typo in a metric name is not a pass).
    """

    name: str = Name
    query: str = Field(description="PromQL instant query, e.g. sum(rate(http_requests_total{code=~'5..'}[5m]))")
    op: Literal["==", "!=", "<", "<=", ">", ">="] = "<"
    value: float = Field(description="the limit each returned sample is compared with")
    allow_empty: bool = Field(default=False, description="an empty result passes (default: it fails)")


class Prometheus(ApiTarget):
    """A Prometheus server: readiness, scrape targets, rules, alerts and PromQL assertions."""

    expected_jobs: list[str] = Field(default_factory=list, description="jobs that must have active targets")
    scrape_max_age_factor: float = Field(
        default=3, gt=0, description="a target's last scrape must be younger than this many scrape intervals"
    )
    rule_grace_s: float | None = Field(
        default=None,
        ge=0,
        description="a rule may stay 'unknown' (never evaluated) this long after start or reload "
        "(default: 300 s or two evaluation intervals of its group, whichever is longer)",
    )
    min_alertmanagers: int = Field(default=1, ge=0, description="Alertmanagers Prometheus must know")
    alert_allow: list[str] = Field(
        default_factory=lambda: list(ALLOW_DEFAULT), description="alert names that may fire (Watchdog)"
    )
    alert_warn_severity: str = Field(default="warning", description="firing at or above this: p2 check fails")
    alert_crit_severity: str = Field(default="critical", description="firing at or above this: p0 check fails")
    watchdog_alert: str | None = Field(
        default="Watchdog", description="an always-firing alert that proves the alerting path (null: none)"
    )
    queries: list[PromQuery] = Field(default_factory=list)


# --- helpers the checks share ---------------------------------------------------------------


def severity_rank(severity: str | None) -> int:
    """Position of a severity label; unknown labels rank as 'warning' (judged, not ignored)."""
    if severity is None or severity == "":
        return SEVERITY_ORDER.index("none")
    severity = severity.lower()
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else SEVERITY_ORDER.index("warning")


def labels_text(labels: dict) -> str:
    name = labels.get("alertname", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "alertname")
    return f"{name}{{{rest}}}"


SECTION = list[Prometheus]  # the inventory's `prometheus:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the prometheus family."""
    proms = inventory.prometheus
    return {
        "prometheus": [Param(p, p.name, p) for p in proms],
        "prometheus_watchdog": [Param(p, p.name, p) for p in proms if p.watchdog_alert],
        "prometheus_jobs": [Param(p, p.name, p) for p in proms if p.expected_jobs],
        "prometheus_query": [
            Param(Item(p, q), f"{p.name}:{q.name}", p, check_marks(q)) for p in proms for q in p.queries
        ],
    }
