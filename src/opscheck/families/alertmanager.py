"""Alertmanager over its HTTP API v2: readiness, cluster, active alerts, the Watchdog, silences.

Alertmanager API v2 never reports state "firing" (active, suppressed, unprocessed): an
alert counts when its state is "active", i.e. neither silenced nor inhibited.
"""

from pydantic import Field

from opscheck.core.model import Param
from opscheck.core.values import MAX_DAYS, MAX_HOURS
from opscheck.core.web import ApiTarget
from opscheck.families.prometheus import ALLOW_DEFAULT


class Alertmanager(ApiTarget):
    """An Alertmanager: readiness, cluster, active alerts, the Watchdog, silence hygiene."""

    recent_hours: float = Field(
        default=16, gt=0, le=MAX_HOURS, description="'overnight alerts': started within this window"
    )
    max_active_alerts: int = Field(default=10, ge=0, description="alert-fatigue budget (catalog default)")
    alert_allow: list[str] = Field(default_factory=lambda: list(ALLOW_DEFAULT))
    watchdog_alert: str | None = Field(default="Watchdog", description="must be active here (null: not checked)")
    silence_max_days: float = Field(
        default=7, gt=0, le=MAX_DAYS, description="silences lasting longer are reported (weekly)"
    )


SECTION = list[Alertmanager]  # the inventory's `alertmanager:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the alertmanager family."""
    ams = inventory.alertmanager
    return {
        "alertmanager": [Param(a, a.name, a) for a in ams],
        "alertmanager_watchdog": [Param(a, a.name, a) for a in ams if a.watchdog_alert],
    }
