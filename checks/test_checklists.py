"""Checklists family: each human checklist item of the runbooks is a fresh sign-off record.

The check never performs the activity; it reads the newest record of its item from
`<inventory>.signoffs.yml` (fixtures/checklists.py) and fails when there is none, when it
is older than the item's period (daily 26 h, weekly 8 days, monthly 32 days), or, for an
adhoc item (a debugging checklist), when it was signed before the incident start given
as `--param incident_start=TIME`. Severity, schedule and hint come from the inventory.
"""

from datetime import UTC, datetime

import pytest

from opscheck.core.checking import expect
from opscheck.families.checklists import FUTURE_SLACK, INCIDENT_PARAM, signoff_command

pytestmark = [pytest.mark.ops]


def _days(delta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


@pytest.mark.runbook(
    "A human checklist item has no fresh sign-off: do the item, then record it with "
    "`opscheck signoff ITEM --by NAME --evidence URL` (or --outcome not-applicable --reason ...)."
)
def test_checklist_signed_off(checklist_item, signoffs):
    item, now = checklist_item, datetime.now(UTC)
    what = f'checklist "{item.checklist}": {item.name}' + (f" ({item.description})" if item.description else "")
    record = signoffs.records.get(item.name)
    expect(
        record is not None,
        f"{what}: no sign-off recorded in {signoffs.path}; record one with: "
        f"{signoff_command(item.name, signoffs.inventory_path)}",
    )
    signed = (
        f"signed by {record.by} at {record.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
        f"({record.outcome}{': ' + record.reason if record.reason else ''})"
    )
    expect(record.at <= now + FUTURE_SLACK, f"{what}: {signed}, which is in the future (clock or typo)")
    period = item.period()
    if period is not None:
        age = now - record.at
        expect(
            age <= period,
            f"{what}: last {signed}, {_days(age)} ago > period {_days(period)}; record a "
            f"new one with: {signoff_command(item.name, signoffs.inventory_path)}",
        )
    else:
        start = signoffs.incident_start
        expect(start is not None, f"{what}: adhoc item needs --param {INCIDENT_PARAM}=TIME")
        expect(
            record.at >= start,
            f"{what}: last {signed}, before the incident start "
            f"{start.astimezone(UTC):%Y-%m-%d %H:%M} UTC; sign it for this incident",
        )
