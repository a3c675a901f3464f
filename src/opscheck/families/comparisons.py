"""Comparisons of two values read from two targets, of the same family or of two: a Ponder
indexer's block (a SQL query) against the chain head (`eth_blockNumber` over JSON-RPC), a
pool size in an env file against the server's max_connections.

A comparison is its own target: its check belongs to neither side, and neither family
learns about the other. Each side names a target of its family and what to read there
(a postgres query, a JMESPath into an http endpoint's JSON answer, a key of a config
file); the value is read through that family's client, so an http endpoint is still
fetched once per run and a dead database still costs one timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

import jmespath
from pydantic import Field, model_validator

from opscheck.core.checking import fmt
from opscheck.core.errors import OpscheckError
from opscheck.core.markers import DOMAINS
from opscheck.core.model import Condition, InventoryCheck, Model, Param, Severity, Target, check_marks
from opscheck.core.redact import clip
from opscheck.core.settings import domain_marks, keep_secret
from opscheck.families.postgres import sql_problem

SIDE_FAMILIES = ("postgres", "http", "config_files")


class Side(Model):
    """One value: a target of a family, and what to read there."""

    postgres: str | None = Field(default=None, description="a postgres target: read `query`")
    query: str | None = Field(default=None, description="read-only SQL: the first column of the first row")
    http: str | None = Field(default=None, description="an http target: read `path` of its JSON answer")
    path: str | None = Field(default=None, description="JMESPath into the JSON answer, e.g. result")
    config_files: str | None = Field(default=None, description="a config_files target: read `key`")
    key: str | None = Field(default=None, description="the key (its value is shown only if it is a number)")
    scale: float = Field(default=1, description="multiply the value, e.g. a per-service pool size x services")

    @model_validator(mode="after")
    def _one_family(self):
        named = [f for f in SIDE_FAMILIES if getattr(self, f)]
        if len(named) != 1:
            raise ValueError("name one target: postgres (with query), http (with path) or config_files (with key)")
        needs = {"postgres": "query", "http": "path", "config_files": "key"}
        for family, what in needs.items():
            given = getattr(self, what) is not None
            if given != (family == named[0]):
                raise ValueError(f"{what} goes with {family}" if given else f"{family} needs {what}")
        problem = sql_problem(self.query) if self.query else None
        if problem:
            raise ValueError(problem)
        if self.path:
            try:
                jmespath.compile(self.path)
            except jmespath.exceptions.JMESPathError:
                raise ValueError("path: not a JMESPath expression") from None
        return self

    @property
    def family(self) -> str:
        return next(f for f in SIDE_FAMILIES if getattr(self, f))

    @property
    def target(self) -> str:
        return getattr(self, self.family)

    @property
    def shown(self) -> str:
        what = {"postgres": "query", "http": self.path, "config_files": self.key}[self.family]
        scaled = f" x {self.scale:g}" if self.scale != 1 else ""
        return f'{self.family} "{self.target}" {what}{scaled}'


class Difference(Condition):
    op: Literal["==", "!=", "<", "<=", ">", ">="] = "<="
    value: float = Field(description="the limit for left - right")


class Comparison(Target, InventoryCheck):
    """Two values of two targets, judged together: `left - right` against a limit, or `left op right`."""

    left: Side
    right: Side
    difference: Difference | None = Field(default=None, description="condition on left - right: lag <= 100")
    op: Literal["==", "!=", "<", "<=", ">", ">="] | None = Field(default=None, description="left op right")
    unit: str = Field(default="", max_length=30, description="shown after the numbers: blocks, connections")
    domain: str = Field(default="monitoring", description="the check's domain marker: " + ", ".join(DOMAINS))
    severity: Severity = "p1"

    @model_validator(mode="after")
    def _one_judgement(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"domain: one of {', '.join(DOMAINS)}")
        if (self.difference is None) == (self.op is None):
            raise ValueError("give difference (a condition on left - right) or op (left op right)")
        return self


def number(value: Any) -> float | None:
    """A number from SQL, JSON or text: 42, Decimal, '42.5', or a JSON-RPC hex quantity '0x1b4'."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return None
    return None


class ComparisonReader:
    """Reads a side through its family's client (shared with that family's own checks)."""

    def __init__(self, inventory: Any, client_for: Callable[[str, Any], Any]):
        self.inventory = inventory
        self.client_for = client_for  # (family, target) -> that family's client for it

    def value(self, side: Side) -> tuple[float, str]:
        """(the side's number, how to show it); a value that is not a number fails."""
        target = next((t for t in self.inventory.targets(side.family) if t.name == side.target), None)
        if target is None:
            raise OpscheckError(f"{side.shown}: no {side.family} target named {side.target!r}")
        client = self.client_for(side.family, target)
        shown_raw = True
        if side.family == "postgres":
            raw = client.scalar(side.query)
        elif side.family == "http":
            answer = client.answer()
            raw = jmespath.search(side.path, answer.json())
            if raw is None:
                body = clip(answer.text, 200)
                raise OpscheckError(
                    f"{side.shown}: no value at {side.path!r} in the answer (HTTP {answer.status}): {body!r}"
                )
        else:
            found, raw = client.value(side.key)
            keep_secret(raw)
            shown_raw = False
            if not found:
                raise OpscheckError(f"{side.shown}: {side.key} is not set")
        value = number(raw)
        if value is None:
            what = repr(raw)[:100] if shown_raw else "(value not shown)"
            raise OpscheckError(f"{side.shown}: not a number: {what}")
        return value * side.scale, f"{side.shown} {fmt(value * side.scale)}"


SECTION = list[Comparison]  # the inventory's `comparisons:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """One check per comparison; its markers (severity, schedule, domain) come from the entry."""
    return {
        "comparison": [Param(c, c.name, c, check_marks(c) + domain_marks([c.domain])) for c in inventory.comparisons]
    }
