"""Human checklist items, checked as fresh sign-off records.

"Review team on-call rotation" cannot be automated, yet it is a check: it reads the
newest sign-off record of its item (who, when, outcome done / not-applicable with a
reason, note, evidence link) from `<inventory>.signoffs.yml` beside the inventory, in
version control, and fails when the record is older than the item's period (daily 26 h,
weekly 8 days, monthly 32 days). An adhoc item (a debugging checklist) must be signed
after the incident start given as `--param incident_start=2026-11-25T09:30Z`.

Records are written by `opscheck signoff ITEM --by NAME ...` (opscheck/cli/signoff.py), which
validates the item against the inventory; the file is plain YAML a reviewer can read:

    signoffs:
    - item: accunode-weekly-oncall-rotation
      by: alice
      at: '2026-11-24T09:12:00+00:00'
      outcome: done
      note: next two weeks covered
      evidence: https://tickets.example.com/OPS-311
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from opscheck.core import records
from opscheck.core.model import InventoryCheck, Model, Param, Severity, Target, check_marks
from opscheck.core.times import PERIODS, parse_time
from opscheck.core.values import MAX_HOURS

INCIDENT_PARAM = "incident_start"
FUTURE_SLACK = timedelta(minutes=5)


class ChecklistItem(Target, InventoryCheck):
    """One line of a runbook checklist. Without `automated_by` it is a sign-off check."""

    checklist: str = Field(description="the checklist it belongs to, e.g. 'AccuNode Weekly'")
    severity: Severity = "p3"
    automated_by: list[str] = Field(
        default_factory=list,
        description="checks that automate this line (then no sign-off is needed or accepted)",
    )
    manual_reason: str = Field(default="", description="why it is a sign-off (e.g. 'needs the CloudWatch API')")
    max_age_hours: float | None = Field(
        default=None, gt=0, le=MAX_HOURS, description="default: daily 26 h, weekly 8 days, monthly 32 days"
    )

    @property
    def placeholders(self) -> list[str]:
        return [INCIDENT_PARAM] if "adhoc" in self.schedule else []

    @property
    def signed(self) -> bool:
        return not self.automated_by

    def period(self) -> timedelta | None:
        """How old a sign-off may be (None for adhoc: it must follow the incident start)."""
        if self.max_age_hours:
            return timedelta(hours=self.max_age_hours)
        periods = [PERIODS[s] for s in self.schedule if s in PERIODS]
        return min(periods) if periods else None


class SignOff(Model):
    """A sign-off record."""

    item: str
    by: str = Field(min_length=1, pattern=r"\S", description="who signed (not blank)")
    at: AwareDatetime
    outcome: Literal["done", "not-applicable"] = "done"
    reason: str = Field(default="", description="required when the outcome is not-applicable")
    note: str = ""
    evidence: str = ""

    @model_validator(mode="after")
    def _reason_for_not_applicable(self):
        if self.outcome == "not-applicable" and not self.reason.strip():
            raise ValueError("outcome not-applicable needs a reason")
        return self


class SignOffFile(Model):
    signoffs: list[SignOff] = Field(default_factory=list)


def signoffs_path(inventory_path: str | Path) -> Path:
    """`inventories/prod.yml` → `inventories/prod.signoffs.yml` ($OPSCHECK_SIGNOFFS overrides)."""
    return records.beside(inventory_path, "signoffs", "OPSCHECK_SIGNOFFS")


def load_signoffs(path: Path, inventory=None) -> list[SignOff]:
    """Every record in the file ([] when it does not exist); ConfigError naming line and field.

    With the inventory, a record of an item it does not have (a typo, a renamed item) and a
    record dated in the future are refused too.
    """

    def check(loaded: SignOffFile, document) -> list[str]:
        items = {i.name for i in inventory.checklists} if inventory is not None else None
        now = datetime.now(UTC) + FUTURE_SLACK
        problems = []
        for i, record in enumerate(loaded.signoffs):
            if items is not None and record.item not in items:
                problems.append(document.problem(("signoffs", i, "item"), f"{record.item!r} is not a checklist item"))
            if record.at > now:
                problems.append(document.problem(("signoffs", i, "at"), "a sign-off in the future"))
        return problems

    loaded = records.load(path, SignOffFile, "sign-offs", check)
    return loaded.signoffs if loaded else []


def latest(records: list[SignOff]) -> dict[str, SignOff]:
    newest: dict[str, SignOff] = {}
    for record in records:
        if record.item not in newest or record.at >= newest[record.item].at:
            newest[record.item] = record
    return newest


def parse_instant(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC. ValueError when it is not one."""
    when = parse_time(text)
    if when is None:
        raise ValueError("empty")
    return when


def signoff_command(item: str, inventory_path: str | Path) -> str:
    return f"opscheck signoff {item} --by YOUR_NAME --inventory {inventory_path} [--evidence URL] [--note TEXT]"


SECTION = list[ChecklistItem]  # the inventory's `checklists:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the checklists family: one sign-off check per manual item."""
    return {
        "checklist_item": [Param(i, i.name, i, check_marks(i)) for i in inventory.checklists if i.signed],
    }


class SignOffs:
    """The sign-off store of a run: read once, newest record per item."""

    def __init__(self, inventory_path: Path, params: dict[str, str], inventory=None):
        self.inventory_path = inventory_path
        self.path = signoffs_path(inventory_path)
        self.records = latest(load_signoffs(self.path, inventory))
        self.incident_start = parse_instant(params[INCIDENT_PARAM]) if params.get(INCIDENT_PARAM) else None
