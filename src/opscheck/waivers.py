"""Waivers: a known failure reported as "waived until <date> by <owner>: <reason>" (xfail).

Waivers live beside the inventory, in version control (`<inventory>.waivers.yml`;
$OPSCHECK_WAIVERS overrides):

    waivers:
    - check: test_http_latency_below_limit     # a check name, a check id, or a glob (test_tls_*)
      target: status-page                      # optional: only this target (a glob too)
      owner: alice
      reason: vendor status page is slow, ticket OPS-42
      expires: 2026-12-15                      # a date (midnight UTC) or a time

A waived check that fails is reported as xfailed with the waiver's text; one that passes
fails ("the waiver is stale: remove it"), like a strict xfail, so waivers do not outlive
their problem. Once expired, the waiver no longer applies: the check fails again, with a
note naming the expired waiver, and the run's header lists every expired waiver. A
malformed waiver file stops the run (exit 4); nothing is silently ignored.
"""

import fnmatch
import os
from datetime import UTC, date, datetime, time
from pathlib import Path

from pydantic import Field

from opscheck.core import records
from opscheck.core.errors import ConfigError
from opscheck.core.model import Model, target_of


class Waiver(Model):
    check: str = Field(min_length=1, description="check name, check id or glob")
    target: str | None = Field(default=None, description="target name or glob (default: every target)")
    owner: str = Field(min_length=1, pattern=r"\S", description="who owns the known problem (not blank)")
    reason: str = Field(min_length=1, pattern=r"\S")
    expires: date | datetime

    @property
    def until(self) -> datetime:
        if isinstance(self.expires, datetime):
            return self.expires if self.expires.tzinfo else self.expires.replace(tzinfo=UTC)
        return datetime.combine(self.expires, time(), tzinfo=UTC)

    def expired(self, now: datetime) -> bool:
        return now >= self.until

    def shown_until(self) -> str:
        return str(self.expires) if not isinstance(self.expires, datetime) else f"{self.until:%Y-%m-%d %H:%M} UTC"

    def text(self) -> str:
        return f"waived until {self.shown_until()} by {self.owner}: {self.reason}"

    def matches(self, item) -> bool:
        names = (item.name, getattr(item, "originalname", item.name))
        if not any(self.check == n or fnmatch.fnmatchcase(n, self.check) for n in names):
            return False
        if self.target is None:
            return True
        target = target_of(item)
        return target is not None and (self.target == target.name or fnmatch.fnmatchcase(target.name, self.target))


class WaiverFile(Model):
    waivers: list[Waiver] = Field(default_factory=list)


def waivers_path(inventory_path: str | Path) -> Path:
    return records.beside(inventory_path, "waivers", "OPSCHECK_WAIVERS")


def load_waivers(path: Path) -> list[Waiver]:
    named = os.environ.get("OPSCHECK_WAIVERS")
    if named and Path(named) == path and not path.exists() and not path.is_symlink():
        raise ConfigError([f"{path}: the waivers file OPSCHECK_WAIVERS names does not exist"])
    loaded = records.load(path, WaiverFile, "waivers")
    return loaded.waivers if loaded else []


def waiver_of(waivers: list[Waiver], item, now: datetime) -> tuple[Waiver | None, Waiver | None]:
    """(the active waiver covering this check, an expired one) or Nones."""
    active = next((w for w in waivers if not w.expired(now) and w.matches(item)), None)
    expired = next((w for w in waivers if w.expired(now) and w.matches(item)), None)
    return active, expired


def header_lines(waivers: list[Waiver], path: Path, now: datetime) -> list[str]:
    """What the run's header says: every expired waiver, and how many are active."""
    lines = []
    for w in waivers:
        if w.expired(now):
            target = f" on {w.target}" if w.target else ""
            lines.append(
                f"opscheck: EXPIRED waiver for {w.check}{target} (owner {w.owner}, expired "
                f"{w.shown_until()}: {w.reason}) in {path}: its checks count again"
            )
    active = sum(1 for w in waivers if not w.expired(now))
    if active:
        lines.append(f"opscheck: {active} active waiver(s) from {path}")
    return lines


def apply(report, active: Waiver | None, expired: Waiver | None) -> None:
    """A waived failure becomes xfailed; a waived pass fails as stale; an expired one is named."""
    if active and report.failed:
        report.outcome = "skipped"
        report.wasxfail = active.text()
        report.longrepr = f"{active.text()}\n\n{report.longrepr}"
    elif active and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"the check passes, but a waiver still covers it ({active.text()}): the waiver is "
            "stale, remove it from the waivers file"
        )
    elif expired and report.failed:
        report.longrepr = (
            f"{report.longrepr}\n\n(the waiver by {expired.owner} expired {expired.shown_until()}: {expired.reason})"
        )
