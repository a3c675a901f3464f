"""Grafana over its HTTP API: /api/health says the database is ok."""

from opscheck.core.model import Param
from opscheck.core.web import ApiTarget


class Grafana(ApiTarget):
    """A Grafana server: /api/health says the database is ok."""


SECTION = list[Grafana]  # the inventory's `grafana:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the grafana family."""
    return {"grafana": [Param(g, g.name, g) for g in inventory.grafana]}
