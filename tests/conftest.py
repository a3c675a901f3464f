"""Self-test fixtures: run the real suite in a subprocess against real services.

A self-test writes an inventory, runs `pytest checks/ --inventory ... --reports-dir ...`
exactly as a user would, and asserts on the exit code, the terminal output and the
run's summary.json.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
# Plugins only the self-tests' own dependencies bring (KMock's, pytest-asyncio, hypothesis')
# cost every suite run they start a second at start-up, and a user's install has none of
# them: the runs these tests start leave them out (the variable is inherited).
TEST_ONLY_PLUGINS = "-p no:kmock -p no:asyncio -p no:hypothesispytest"
os.environ["PYTEST_ADDOPTS"] = f"{os.environ.get('PYTEST_ADDOPTS', '')} {TEST_ONLY_PLUGINS}".strip()
# The default inventory (this machine), without the load limit: while the self-tests run the
# machine's load is theirs, and what these tests judge is opscheck, not this machine.
LOCAL = (
    (REPO / "inventories" / "local.yml")
    .read_text()
    .replace("spec: local://", "spec: local://\n    load_per_core_max: 1000")
)
# The real-cluster self-test exists only where KUBECONFIG names a cluster: absent, not skipped, elsewhere.
collect_ignore = [] if os.environ.get("KUBECONFIG") else ["test_kubernetes_real_cluster.py"]


@dataclass
class Result:
    """What one run of the suite produced."""

    rc: int
    output: str
    reports_dir: Path
    summary: dict = field(default_factory=dict)

    @property
    def checks(self) -> dict[str, dict]:
        return {c["id"].split("::", 1)[1]: c for c in self.summary.get("checks", [])}

    def outcome(self, check_id: str) -> str:
        assert check_id in self.checks, f"{check_id} did not run; ran: {sorted(self.checks)}\n{self.output}"
        return self.checks[check_id]["outcome"]

    def message(self, check_id: str) -> str:
        self.outcome(check_id)
        return self.checks[check_id]["message"]

    def assert_passed(self, *check_ids: str) -> None:
        for check_id in check_ids:
            assert self.outcome(check_id) == "passed", f"{check_id}: {self.message(check_id)}"

    def assert_failed(self, check_id: str, *fragments: str) -> str:
        """The check failed (not errored) and its message contains every fragment."""
        assert self.outcome(check_id) == "failed", f"{check_id} {self.outcome(check_id)}:\n{self.output}"
        message = self.message(check_id)
        for fragment in fragments:
            assert fragment in message, f"{check_id}: {fragment!r} not in {message!r}"
        return message


def run_suite(inventory, tmp_path: Path, *args: str, env: dict | None = None, timeout: int = 300) -> Result:
    """Run the opscheck suite on an inventory (a dict, or YAML text) in a subprocess."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "inventory.yml"
    path.write_text(inventory if isinstance(inventory, str) else yaml.safe_dump(inventory, sort_keys=False))
    reports = tmp_path / "reports"
    command = [sys.executable, "-m", "pytest", f"--inventory={path}", f"--reports-dir={reports}", *args]
    proc = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    result = Result(proc.returncode, proc.stdout + proc.stderr, reports)
    summaries = sorted(reports.glob("*/*/summary.json"))
    if summaries:
        result.summary = json.loads(summaries[-1].read_text())
    return result


@pytest.fixture
def run_checks(tmp_path):
    """run_checks(inventory, *pytest_args) -> Result, in a fresh directory each call."""
    calls = iter(range(1000))

    def run(inventory, *args, **kwargs):
        return run_suite(inventory, tmp_path / f"run{next(calls)}", *args, **kwargs)

    return run


def pytest_sessionfinish(session, exitstatus):
    """In CI nothing may be skipped: a skipped self-test is a check that silently did not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"CI=true: {skipped} self-test(s) skipped; that fails the run", red=True)
