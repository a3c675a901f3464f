"""Checklists family: fresh, stale, missing, not-applicable, adhoc and malformed sign-off
records, and the `opscheck signoff` command that records them (round trip through the suite)."""

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_suite

NOW = datetime.now(UTC)
INCIDENT = NOW - timedelta(hours=2)

ITEMS = [
    {
        "name": "daily-fresh",
        "checklist": "Daily",
        "description": "Review overnight alerts",
        "schedule": ["daily"],
        "severity": "p2",
    },
    {"name": "daily-stale", "checklist": "Daily", "schedule": ["daily"]},
    {
        "name": "weekly-missing",
        "checklist": "Weekly",
        "description": "Review team on-call rotation",
        "schedule": ["weekly"],
    },
    {"name": "weekly-fresh", "checklist": "Weekly", "schedule": ["weekly"]},
    {"name": "monthly-na", "checklist": "Monthly", "schedule": ["monthly"], "severity": "p1"},
    {"name": "monthly-stale", "checklist": "Monthly", "schedule": ["monthly"]},
    {"name": "debug-after", "checklist": "Debugging", "schedule": ["adhoc"]},
    {"name": "debug-before", "checklist": "Debugging", "schedule": ["adhoc"]},
    {"name": "automated", "checklist": "Daily", "schedule": ["daily"], "automated_by": ["test_tls_expiry[api]"]},
]


def _record(item, ago, by="alice", **extra):
    return {"item": item, "by": by, "at": (NOW - ago).isoformat(timespec="seconds"), **extra}


SIGNOFFS = {
    "signoffs": [
        _record("daily-fresh", timedelta(hours=30), by="old"),  # superseded by the newer one below
        _record("daily-fresh", timedelta(hours=3), evidence="https://tickets.example/OPS-1"),
        _record("daily-stale", timedelta(hours=27), by="bob"),
        _record("weekly-fresh", timedelta(days=7, hours=20)),
        _record("monthly-na", timedelta(days=3), outcome="not-applicable", reason="no vendor contracts this quarter"),
        _record("monthly-stale", timedelta(days=33), by="carol"),
        _record("debug-after", timedelta(hours=1)),
        _record("debug-before", timedelta(hours=5), by="dave"),
    ]
}


def _run(tmp_path: Path, signoffs, *args, items=ITEMS):
    tmp_path.mkdir(parents=True, exist_ok=True)
    if signoffs is not None:
        text = signoffs if isinstance(signoffs, str) else yaml.safe_dump(signoffs, sort_keys=False)
        (tmp_path / "inventory.signoffs.yml").write_text(text)
    return run_suite({"environment": "selftest-checklists", "checklists": items}, tmp_path, "-m", "ops", *args)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return _run(
        tmp_path_factory.mktemp("checklists"),
        SIGNOFFS,
        f"--param=incident_start={INCIDENT.isoformat(timespec='seconds')}",
    )


def test_fresh_signoffs_pass(result):
    result.assert_passed(
        "test_checklist_signed_off[daily-fresh]",
        "test_checklist_signed_off[weekly-fresh]",
        "test_checklist_signed_off[monthly-na]",
        "test_checklist_signed_off[debug-after]",
    )


def test_stale_signoffs_fail_naming_who_and_when(result):
    message = result.assert_failed(
        "test_checklist_signed_off[daily-stale]",
        "signed by bob",
        " h ago > period 26.0 h",
        "opscheck signoff daily-stale --by",
    )
    assert re.search(r"27\.\d h ago", message), message  # signed 27 h before the run, however slow the run
    result.assert_failed(
        "test_checklist_signed_off[monthly-stale]", "signed by carol", "33.0 days ago", "> period 32.0 days"
    )


def test_missing_signoff_fails_with_the_command(result):
    result.assert_failed(
        "test_checklist_signed_off[weekly-missing]",
        "Review team on-call rotation",
        "no sign-off recorded",
        "opscheck signoff weekly-missing --by YOUR_NAME --inventory",
    )


def test_adhoc_item_must_follow_the_incident_start(result):
    result.assert_failed("test_checklist_signed_off[debug-before]", "signed by dave", "before the incident start")


def test_items_carry_inventory_markers_and_automated_items_have_no_signoff_check(result):
    assert result.checks["test_checklist_signed_off[daily-fresh]"]["severity"] == "p2"
    assert result.checks["test_checklist_signed_off[monthly-na]"]["severity"] == "p1"
    assert result.checks["test_checklist_signed_off[monthly-na]"]["schedule"] == "monthly"
    assert "test_checklist_signed_off[automated]" not in result.checks


def test_adhoc_items_are_deselected_without_the_incident_start(tmp_path):
    res = _run(tmp_path, SIGNOFFS, "-m", "daily")
    assert "test_checklist_signed_off[debug-after]" not in res.checks
    res.assert_passed("test_checklist_signed_off[daily-fresh]")


def test_malformed_signoffs_stop_the_run(tmp_path):
    bad = (
        "signoffs:\n- item: daily-fresh\n  by: alice\n  at: yesterday\n- item: monthly-na\n  by: bob\n"
        "  at: '2026-01-01T00:00:00+00:00'\n  outcome: not-applicable\n"
    )
    res = _run(tmp_path, bad)
    assert res.rc == 4, res.output
    assert "inventory.signoffs.yml:4: signoffs[0].at" in res.output
    assert "inventory.signoffs.yml:5: signoffs[1]" in res.output and "needs a reason" in res.output
    assert "Traceback" not in res.output


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "opscheck.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_signoff_command_validates_and_round_trips(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"environment": "selftest-checklists", "checklists": ITEMS}))
    unknown = _cli("signoff", "weekly-mising", "--by", "erin", f"--inventory={inventory}")
    assert unknown.returncode == 4 and "did you mean weekly-missing" in unknown.stderr
    automated = _cli("signoff", "automated", "--by", "erin", f"--inventory={inventory}")
    assert automated.returncode == 4 and "automated by test_tls_expiry[api]" in automated.stderr
    no_reason = _cli(
        "signoff", "monthly-stale", "--by", "erin", "--outcome", "not-applicable", f"--inventory={inventory}"
    )
    assert no_reason.returncode == 4 and "needs a reason" in no_reason.stderr
    assert not (tmp_path / "inventory.signoffs.yml").exists()

    ok = _cli(
        "signoff",
        "weekly-missing",
        "--by",
        "erin",
        "--evidence",
        "https://tickets.example/OPS-9",
        "--note",
        "rotation covered",
        f"--inventory={inventory}",
    )
    assert ok.returncode == 0, ok.stderr
    assert "recorded: weekly-missing done by erin" in ok.stdout
    second = _cli(
        "signoff",
        "monthly-stale",
        "--by",
        "erin",
        "--outcome",
        "not-applicable",
        "--reason",
        "no DR site yet",
        f"--inventory={inventory}",
    )
    assert second.returncode == 0, second.stderr
    stored = yaml.safe_load((tmp_path / "inventory.signoffs.yml").read_text())["signoffs"]
    assert [(r["item"], r["by"], r["outcome"]) for r in stored] == [
        ("weekly-missing", "erin", "done"),
        ("monthly-stale", "erin", "not-applicable"),
    ]
    assert stored[0]["evidence"] == "https://tickets.example/OPS-9" and stored[1]["reason"] == "no DR site yet"

    res = _run(tmp_path, None, "-k", "weekly-missing or monthly-stale")
    res.assert_passed("test_checklist_signed_off[weekly-missing]", "test_checklist_signed_off[monthly-stale]")
