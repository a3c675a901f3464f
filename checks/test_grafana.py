"""grafana checks: /api/health with database "ok"."""

import pytest

from opscheck.core.checking import expect
from opscheck.core.redact import clip

pytestmark = [pytest.mark.monitoring]


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    'Grafana\'s health endpoint does not say database "ok" (runbook: `curl -s '
    "http://localhost:3000/api/health`; assert the status). Dashboards do not load while its "
    "database (SQLite volume, PostgreSQL/MySQL) fails; look at the Grafana log."
)
def test_grafana_healthy(grafana, grafana_api):
    status, body = grafana_api.get("/api/health")
    database = body.get("database") if isinstance(body, dict) else None
    expect(
        status == 200 and database == "ok",
        f"{grafana_api.shown}: /api/health answered {status} with database {database!r}, expected 200 "
        f"and 'ok'"
        + (
            f" (version {body.get('version')})"
            if isinstance(body, dict) and body.get("version")
            else f": {clip(str(body), 200)!r}"
        ),
    )
