"""Waivers: a waived failure is xfailed with the waiver's text; a waived check that passes
fails (stale waiver); an expired waiver no longer applies and is named; a malformed waiver
file stops the run. Exercised on sign-off checks, which need no server."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.conftest import run_suite

NOW = datetime.now(UTC)
ITEMS = [
    {"name": n, "checklist": "Weekly", "schedule": ["weekly"]}
    for n in ("known-gap", "fixed-now", "old-waiver", "other-gap", "glob-a", "glob-b")
]
SIGNOFFS = {"signoffs": [{"item": "fixed-now", "by": "alice", "at": (NOW - timedelta(days=1)).isoformat()}]}
TOMORROW = (NOW + timedelta(days=1)).date().isoformat()
WAIVERS = {
    "waivers": [
        {
            "check": "test_checklist_signed_off[known-gap]",
            "owner": "bob",
            "reason": "rotation tool migration, OPS-7",
            "expires": TOMORROW,
        },
        {
            "check": "test_checklist_signed_off",
            "target": "fixed-now",
            "owner": "carol",
            "reason": "was missing",
            "expires": TOMORROW,
        },
        {
            "check": "test_checklist_signed_off",
            "target": "old-waiver",
            "owner": "dave",
            "reason": "long gone",
            "expires": (NOW - timedelta(days=3)).date().isoformat(),
        },
        {
            "check": "test_checklist_*",
            "target": "glob-*",
            "owner": "erin",
            "reason": "pattern",
            "expires": (NOW + timedelta(hours=2)).isoformat(),
        },
    ]
}


def _run(tmp_path, waivers):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "inventory.signoffs.yml").write_text(yaml.safe_dump(SIGNOFFS))
    (tmp_path / "inventory.waivers.yml").write_text(waivers if isinstance(waivers, str) else yaml.safe_dump(waivers))
    return run_suite({"environment": "selftest-waivers", "checklists": ITEMS}, tmp_path, "-m", "ops")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("waivers"), WAIVERS)


def test_waived_failure_is_xfailed_with_the_waiver_text(result):
    assert result.outcome("test_checklist_signed_off[known-gap]") == "xfailed"
    message = result.message("test_checklist_signed_off[known-gap]")
    assert f"waived until {TOMORROW} by bob: rotation tool migration, OPS-7" in message
    assert "no sign-off recorded" in message  # the failure it hides is still shown
    assert result.outcome("test_checklist_signed_off[glob-a]") == "xfailed"
    assert result.outcome("test_checklist_signed_off[glob-b]") == "xfailed"
    assert "XFAIL" in result.output and "waived until" in result.output


def test_waived_check_that_passes_fails_as_stale(result):
    result.assert_failed("test_checklist_signed_off[fixed-now]", "the waiver is stale", "by carol")


def test_expired_waiver_no_longer_applies_and_is_named(result):
    result.assert_failed("test_checklist_signed_off[old-waiver]", "no sign-off recorded", "the waiver by dave expired")
    assert "EXPIRED waiver for test_checklist_signed_off on old-waiver" in result.output


def test_unwaived_failure_still_fails(result):
    result.assert_failed("test_checklist_signed_off[other-gap]", "no sign-off recorded")
    assert result.rc == 1


def test_malformed_waivers_stop_the_run(tmp_path):
    bad = "waivers:\n- check: test_x\n  owner: bob\n  expires: someday\n"
    res = _run(tmp_path, bad)
    assert res.rc == 4, res.output
    assert "inventory.waivers.yml:2: waivers[0].reason: Field required" in res.output
    assert "inventory.waivers.yml:4: waivers[0].expires" in res.output
