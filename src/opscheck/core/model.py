"""Building blocks of the inventory model, shared by every family's section.

Each family declares its own section model beside its client code
(opscheck/families/http.py has HttpEndpoint, ...); opscheck/inventory.py assembles the
file from them, one explicit field per family.
"""

from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from opscheck.core.values import compiles

# Where the plugin keeps the loaded inventory (config.stash[INVENTORY_KEY]).
INVENTORY_KEY = pytest.StashKey[Any]()
# The inventory file of the run, as the plugin resolved it (sign-offs and waivers sit beside it).
INVENTORY_PATH_KEY = pytest.StashKey[Path]()
# The run's --param NAME=VALUE values: incident-time parameters of adhoc checks.
PARAMS_KEY = pytest.StashKey[dict[str, str]]()
# What the previous completed run left in reports/<env>/state.json ({} on a first run), for
# readers that run before any fixture (a family's gather).
STATE_KEY = pytest.StashKey[dict]()

Severity = Literal["p0", "p1", "p2", "p3"]
Schedule = Literal["smoke", "daily", "weekly", "monthly", "adhoc"]
Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in", "matches", "exists"]
Name = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=100)
# Another target of the inventory, by section and name: "postgres:agentauri-db".
TargetRef = Annotated[str, Field(pattern=r"^[a-z_]+:[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=140)]


class Model(BaseModel):
    """Base for every inventory section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, defer_build=True, allow_inf_nan=False
    )


class Target(Model):
    """One entry of the inventory: something the checks look at."""

    name: str = Name
    description: str = ""
    timeout: float | None = Field(
        default=None, gt=0, le=300, description="seconds for each network call (default: defaults.timeout)"
    )
    severity_overrides: dict[str, Severity] = Field(
        default_factory=dict,
        description="raise or lower a built-in check's severity for this target: {check_name: p1}",
    )
    depends_on: list[TargetRef] = Field(
        default_factory=list,
        description="targets this one needs, as section:name (postgres:app-db): when one is unreachable, "
        "this target's failures are reported as likely caused by it",
    )

    def secrets(self) -> list[str]:
        """Values that must never appear in a report (passwords, tokens, keys); redacted."""
        return []


class Condition(Model):
    """A comparison read like the runbook: `checks.database == "ok"`, `depth < 10000`."""

    op: Operator = "=="
    value: Any = None

    @model_validator(mode="after")
    def _pattern_compiles(self):
        if self.op == "matches" and self.value is not None:
            compiles(str(self.value))
        return self


class InventoryCheck(Model):
    """A check the inventory itself defines: it carries the markers the inventory gives it."""

    severity: Severity = "p2"
    schedule: list[Schedule] = Field(default_factory=lambda: list[Schedule](["daily"]), min_length=1)
    hint: str = Field(default="", description="runbook hint shown on failure")


@dataclass(frozen=True)
class Item:
    """A parameter that belongs to a target: (host, process name), (postgres, assertion), ..."""

    target: Target
    value: Any

    @property
    def name(self) -> str:
        return getattr(self.value, "name", str(self.value))


@dataclass
class Param:
    """One parametrization of a check: its value, test id, target and inventory markers."""

    value: Any
    id: str
    target: Target
    marks: list = field(default_factory=list)


def check_marks(check: InventoryCheck) -> list:
    """Markers an inventory-defined check carries: its severity, schedule and hint."""
    marks = [getattr(pytest.mark, check.severity)]
    marks += [getattr(pytest.mark, s) for s in check.schedule if s != "adhoc"]
    if "adhoc" in check.schedule:
        marks.append(pytest.mark.adhoc(*getattr(check, "placeholders", [])))
    if check.hint:
        marks.append(pytest.mark.runbook(check.hint))
    return marks


def mark(name: str) -> Any:
    """A marker by name, e.g. a check's domain chosen by its target (families hold no pytest)."""
    return getattr(pytest.mark, name)


def target_of(item) -> Target | None:
    """The inventory target a check is parametrized with (None for a check without one)."""
    for value in getattr(getattr(item, "callspec", None), "params", {}).values():
        if isinstance(value, Target):
            return value
        if isinstance(value, Item):
            return value.target
    return None


# The check pytest is setting up, running or tearing down: the plugin sets it as each one starts.
_RUNNING_CHECK: ContextVar[pytest.Item] = ContextVar("opscheck_running_check")


def start_check(item: pytest.Item) -> None:
    _RUNNING_CHECK.set(item)


def running_check() -> pytest.Item:
    """The check being run, for a family's fixture: it finds its target here, not through
    `request` (pytest builds two fixture definitions for each fixture that asks for
    `request`: a quarter of what opscheck adds to a check, benchmarks/overhead.py)."""
    try:
        return _RUNNING_CHECK.get()
    except LookupError:
        raise RuntimeError("an opscheck fixture was used outside a check run by the opscheck plugin") from None
