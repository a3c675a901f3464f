"""The deploy gate's command line, read out of docs/ci/github-actions.yml and
docs/ci/gitlab-ci.yml (so the recipes cannot drift from what is tested), run against the
agentauri replica in a project directory like the one the recipes check out: it passes on
the healthy replica, exits 1 on a p0 fault, and writes junit.xml and report.html either way.

The gate runs the seed inventory itself (`--env agentauri` is the recipes' `--env "<environment>"`
exactly): the replica's one adapted field (the compose host's load limit, a p2 check) is outside
the gate's selection. The command's `pytest` is this interpreter's.
"""

import json
import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.replica_drills import drill_tests

pytestmark = pytest.mark.timeout(300)

replica = drill_tests("agentauri")[0]
ENVIRONMENT = "agentauri"


def gate_commands() -> dict[str, list[str]]:
    """The `pytest ...` line of each recipe, its environment expression replaced by ENVIRONMENT."""
    github = yaml.safe_load((REPO / "docs" / "ci" / "github-actions.yml").read_text())
    gitlab = yaml.safe_load((REPO / "docs" / "ci" / "gitlab-ci.yml").read_text())
    lines = {
        "github-actions": [s["run"] for s in github["jobs"]["deploy-gate"]["steps"] if "pytest" in s.get("run", "")],
        "gitlab-ci": [line for line in gitlab["deploy-gate"]["script"] if line.startswith("pytest")],
    }
    found = {}
    for recipe, commands in lines.items():
        assert len(commands) == 1, f"{recipe}: {len(commands)} pytest lines"
        line = commands[0].replace("${{ inputs.environment }}", ENVIRONMENT).replace("$OPSCHECK_ENV", ENVIRONMENT)
        argv = shlex.split(line)
        assert argv[0] == "pytest" and "$" not in line, f"{recipe}: {line}"
        found[recipe] = argv
    return found


def project(tmp_path: Path) -> Path:
    """A checkout of an opscheck project (as `opscheck init` makes it): this repository's files."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("pyproject.toml", "conftest.py", "checks", "fixtures", "inventories"):
        (folder / name).symlink_to(REPO / name)
    return folder


def gate(replica, tmp_path: Path, argv: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    cwd = project(tmp_path)
    env = {k: v for k, v in {**os.environ, **replica.env}.items() if k not in replica.unset}
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    runs = sorted((cwd / "reports").glob("*/2*/"))
    assert runs, f"no run directory under reports/: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc, runs[-1]


def failing(run_dir: Path) -> dict[str, str]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {c["id"].split("::", 1)[1]: c["severity"] for c in summary["checks"] if c["outcome"] != "passed"}


def junit_failures(run_dir: Path) -> set[str]:
    root = ET.parse(run_dir / "junit.xml").getroot()
    return {case.get("name") for case in root.iter("testcase") if case.find("failure") is not None}


@pytest.mark.parametrize("recipe", sorted(gate_commands()))
def test_gate_passes_on_the_healthy_replica(replica, tmp_path, recipe):
    proc, run_dir = gate(replica, tmp_path, gate_commands()[recipe])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (run_dir / "report.html").stat().st_size > 0
    root = ET.parse(run_dir / "junit.xml").getroot()
    cases = list(root.iter("testcase"))
    assert cases and not junit_failures(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {c["severity"] for c in summary["checks"]} == {"p0"}, "the gate selects the p0 smoke checks only"


@pytest.mark.parametrize("recipe", sorted(gate_commands()))
def test_gate_fails_on_a_p0_fault(replica, tmp_path, recipe):
    drill = replica.drill("notify-trigger-disabled")  # the NOTIFY trigger: a p0 smoke check
    try:
        drill.inject(replica)
        proc, run_dir = gate(replica, tmp_path, gate_commands()[recipe])
    finally:
        drill.reset(replica)
    assert proc.returncode == 1, proc.stdout[-3000:]
    failed = failing(run_dir)
    wanted = "test_postgres_required_trigger_enabled[agentauri-db:notify_new_event_trigger]"
    assert failed == {wanted: "p0"}, failed
    assert any(wanted in name for name in junit_failures(run_dir)), junit_failures(run_dir)
    assert wanted in (run_dir / "report.html").read_text()
