"""Reports: the run directory, latest, junit properties, summary, pruning, xdist, --no-skips."""

import json
import os
import re
import xml.etree.ElementTree as ET
from html import unescape

import pytest

from tests.conftest import LOCAL, run_suite

FAILING = LOCAL.replace("spec: local://", "spec: local://\n    memory_min_available_pct: 100")


def test_run_writes_html_junit_summary_and_latest(run_checks):
    result = run_checks(LOCAL, "-m", "daily")
    assert result.rc == 0, result.output
    env_dir = result.reports_dir / "local"
    latest = env_dir / "latest"
    assert latest.is_symlink()
    assert {p.name for p in latest.iterdir()} == {"report.html", "details.html", "junit.xml", "summary.json"}
    html = (latest / "report.html").read_text()
    for header in ("Environment", "Inventory", "Git revision", "Runner host", "Started (UTC)", "Checks by family"):
        assert header in html, header
    assert 'id="verdict" class="verdict good">no check failing: ' in html
    details = (latest / "details.html").read_text()  # pytest-html: every check in detail
    assert "Git revision" in details and 'href="report.html"' in details
    text = (latest / "summary.json").read_text()
    summary = json.loads(text)
    assert summary["environment"] == "local" and summary["exit_status"] == 0
    assert summary["counts"]["passed"] == len(summary["checks"]) > 0
    lines = text.splitlines()  # indented, one line per check (grep finds a check with its result)
    assert lines[1].startswith('  "environment": ') and lines[-2:] == ["  ]", "}"]
    assert [json.loads(line.strip().removesuffix(",")) for line in lines[-2 - len(summary["checks"]) : -2]] == summary[
        "checks"
    ]
    suite = ET.parse(latest / "junit.xml").getroot().find("testsuite")
    assert suite.get("name") == "local", "one testsuite per environment"
    props = {p.get("name") for p in suite.find("testcase").iter("property")}
    assert {"severity", "target", "runbook", "family", "schedule"} <= props
    assert json.loads((env_dir / "state.json").read_text())["last_run"] == summary["started"]


def test_failure_shows_runbook_hint_everywhere(run_checks):
    result = run_checks(FAILING, "-m", "daily")
    assert result.rc == 1
    assert "runbook: Little available memory" in result.output
    latest = result.reports_dir / "local" / "latest"
    assert "runbook: Little available memory" in (latest / "details.html").read_text()
    assert "<b>runbook:</b> Little available memory" in (latest / "report.html").read_text()
    failure = ET.parse(latest / "junit.xml").getroot().find(".//failure")
    assert "runbook: Little available memory" in (failure.get("message", "") + (failure.text or ""))
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["families"]["hosts"]["failed"] == 1
    assert summary["verdict"].startswith("1 p1") and summary["verdict"].endswith("failing on 1 target")
    assert f"opscheck local: {summary['verdict']}" in result.output, "the verdict ends the terminal output"


def test_old_runs_are_pruned(run_checks, tmp_path):
    reports = tmp_path / "shared-reports"
    for _ in range(3):
        run_checks(LOCAL, "-m", "daily", f"--reports-dir={reports}", "--keep-runs", "2")
    runs = [p for p in (reports / "local").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 2


def test_xdist_writes_one_run_directory(run_checks):
    result = run_checks(LOCAL, "-m", "daily", "-n", "2")
    assert result.rc == 0, result.output
    runs = [p for p in (result.reports_dir / "local").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1
    assert result.summary["counts"]["passed"] == len(result.summary["checks"]) > 0


def test_no_skips_turns_a_skip_into_a_failing_run(run_checks):
    args = ["-m", "daily", "--timeout", "30"]
    skip_all = ["-p", "tests.skip_plugin"]
    plain = run_checks(LOCAL, *args, *skip_all)
    assert plain.rc == 0 and plain.summary["counts"].get("skipped")
    strict = run_checks(LOCAL, *args, *skip_all, "--no-skips")
    assert strict.rc == 1
    assert "--no-skips is set: the run fails" in strict.output


def test_no_state_leaves_state_alone(run_checks):
    result = run_checks(LOCAL, "-m", "daily", "--no-state")
    assert not (result.reports_dir / "local" / "state.json").exists()


def test_severity_override_from_inventory(run_checks):
    text = LOCAL.replace("spec: local://", "spec: local://\n    severity_overrides: {test_memory_available: p3}")
    result = run_checks(text, "-m", "p3")
    assert result.rc == 0
    assert list(result.checks) == ["test_memory_available[localhost]"]


def test_a_check_that_times_out_is_a_failure_not_a_lost_run(run_checks):
    """pytest-timeout's signal method turns a hung check into a failure; the reports are written."""
    from tests.servers import HttpServer, Route

    with HttpServer({"/hang": Route(body={"status": "ok"}, delay=5)}) as server:
        inventory = {
            "environment": "selftest-timeout",
            "http": [{"name": "hangs", "url": server.url("/hang"), "timeout": 30}],
        }
        result = run_checks(inventory, "--timeout", "1", "-k", "status")
    assert result.rc == 1, result.output
    result.assert_failed("test_http_status[hangs]", "Timeout")
    assert result.summary["counts"]["failed"] == 1


def test_details_page_has_every_check_once_with_its_result(run_checks):
    """pytest-html's page (details.html): one row per check, its result as the run's, the
    failure with its log; opscheck drops the passed setup and teardown rows pytest-html
    would build and then throw away."""
    result = run_checks(FAILING, "-m", "daily")
    latest = result.reports_dir / "local" / "latest"
    page = (latest / "details.html").read_text()
    blob = json.loads(unescape(re.search(r'data-jsonblob="([^"]*)"', page).group(1)))
    summary = json.loads((latest / "summary.json").read_text())
    expected = {c["id"]: c["outcome"].capitalize() for c in summary["checks"]}
    rows = {test_id: [row["result"] for row in rows] for test_id, rows in blob["tests"].items()}
    assert rows == {test_id: [outcome] for test_id, outcome in expected.items()}
    failed = [row for rows in blob["tests"].values() for row in rows if row["result"] == "Failed"]
    assert len(failed) == 1 and "runbook: Little available memory" in failed[0]["log"]


def test_damaged_earlier_runs_are_passed_over(tmp_path):
    """The history reads every kept run's summary.json: a truncated one, one nested 100,000
    deep (json.loads raised RecursionError at the end of the run) and one that is not UTF-8
    are each left out, and the run ends as usual; so is a state.json nested as deep."""
    first = run_suite(LOCAL, tmp_path, "-m", "daily")
    assert first.rc == 0, first.output
    env_dir = tmp_path / "reports" / "local"
    for name, body in (
        ("20200101T000000Z", b'{"checks": ['),
        ("20200102T000000Z", b"[" * 100_000),
        ("20200103T000000Z", b"\xff\xfe{}"),
        ("20200104T000000Z", b'{"checks": []}'),  # JSON of the wrong shape: every later run failed on it
        ("20200105T000000Z", b'{"checks": [1], "started": "x", "duration_s": 1, "exit_status": 0}'),
        ("20200106T000000Z", b'{"checks": [{"outcome": "failed"}], "started": "x", "duration_s": 1, "exit_status": 0}'),
    ):
        (env_dir / name).mkdir()
        (env_dir / name / "summary.json").write_bytes(body)
    (env_dir / "20200107T000000Z").mkdir()
    os.mkfifo(env_dir / "20200107T000000Z" / "summary.json")  # a FIFO waits for a writer forever
    (env_dir / "state.json").write_bytes(b"[" * 100_000)
    again = run_suite(LOCAL, tmp_path, "-m", "daily", timeout=120)
    assert again.rc == 0 and "Traceback" not in again.output, again.output[-3000:]
    assert again.summary["previous_run"] == first.summary["run"]
    assert first.summary["run"] in (env_dir / "index.html").read_text()
    assert json.loads((env_dir / "state.json").read_text())["last_run"] == again.summary["started"]


@pytest.mark.parametrize("recorded", ["2099-01-01T00:00:00+00:00", "zzz", 5])
def test_a_damaged_last_run_gives_way(tmp_path, recorded):
    """state.json's last_run from a wrong clock (the future), or damaged, is replaced by this run's start."""
    (tmp_path / "reports" / "local").mkdir(parents=True)
    (tmp_path / "reports" / "local" / "state.json").write_text(json.dumps({"last_run": recorded}))
    result = run_suite(LOCAL, tmp_path, "-m", "daily")
    assert result.rc == 0, result.output[-3000:]
    state = json.loads((tmp_path / "reports" / "local" / "state.json").read_text())
    assert state["last_run"] == result.summary["started"]


def test_latest_that_is_a_folder_is_left_and_the_run_kept(tmp_path):
    (tmp_path / "reports" / "local" / "latest").mkdir(parents=True)
    result = run_suite(LOCAL, tmp_path, "-m", "daily")
    assert result.rc == 0 and "latest not moved" in result.output, result.output[-3000:]
    assert (tmp_path / "reports" / "local" / result.summary["run"] / "report.html").is_file()
