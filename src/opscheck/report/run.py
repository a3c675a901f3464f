"""Reports of a run: reports/<env>/<timestamp>/{report.html, junit.xml, summary.json}.

Only the controller (not an xdist worker) names the run directory and writes the
summary, so a parallel run still yields one report. `reports/<env>/latest` points at
the newest run, the last N runs are kept, and state.json carries what must survive
between runs (the time of the last completed run).
"""

import contextlib
import json
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opscheck.core.redact import clip
from opscheck.report.charts import family_chart

RUN_NAME = "%Y%m%dT%H%M%SZ"
SKIP_EXIT = {pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR}


REMEMBER = "opscheck_remember"  # a user property carrying {key: value} for the next run's state


def env_dir(config, environment: str) -> Path:
    """reports/<env>/: --reports-dir, else reports/ in the project's root directory."""
    root = config.getoption("reports_dir") or config.rootpath / "reports"
    return Path(root).resolve() / environment


def read_state(config, environment: str) -> dict:
    path = env_dir(config, environment) / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def git_revision(where: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class Run:
    """One run's report directory, results and summary (a plugin on the controller)."""

    def __init__(self, config, inventory, inventory_path: Path):
        self.config = config
        self.inventory = inventory
        self.inventory_path = str(inventory_path)
        self.started = datetime.now(UTC)
        self.env_dir = env_dir(config, inventory.environment)
        self.previous_state = read_state(config, inventory.environment)
        # folders this run creates (reports/<env>/ on a first run): a run that executes no check removes them
        self.created = [p for p in (self.env_dir, *self.env_dir.parents) if not p.exists()]
        self.exitstatus: int = pytest.ExitCode.INTERNAL_ERROR  # until the session says otherwise
        self.dir = self._new_run_dir()
        self.results: dict[str, dict] = {}
        self.counts: Counter = Counter()
        self.deselected = 0
        self.remembered: dict = {}
        self.git = git_revision(Path(inventory_path).resolve().parent)
        self.runner = socket.gethostname()
        if not config.getoption("htmlpath", None):
            config.option.htmlpath = str(self.dir / "report.html")
            config.option.self_contained_html = True
        if not config.getoption("xmlpath", None):
            config.option.xmlpath = str(self.dir / "junit.xml")

    def _new_run_dir(self) -> Path:
        base = self.started.strftime(RUN_NAME)
        for n in range(100):
            path = self.env_dir / (base if n == 0 else f"{base}-{n}")
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                continue
        raise pytest.UsageError(f"cannot create a run directory under {self.env_dir}")

    # --- results ---------------------------------------------------------------------

    def pytest_deselected(self, items):
        self.deselected += len(items)

    def pytest_runtest_logreport(self, report):
        nodeid = report.nodeid.rsplit("]@", 1)[0] + "]" if "]@" in report.nodeid else report.nodeid
        properties = [(k, v) for k, v in report.user_properties if k != REMEMBER]
        for key, value in report.user_properties:
            if key == REMEMBER and report.when == "call":
                self.remembered.update(value)
        entry = self.results.setdefault(nodeid, {"id": nodeid, "outcome": "passed", "duration": 0.0, "message": ""})
        entry.update(properties)  # a check may add properties while it runs (a log window)
        entry["duration"] = round(entry["duration"] + report.duration, 3)
        outcome = _outcome(report)
        if outcome and (entry["outcome"] == "passed" or outcome in ("failed", "error")):
            entry["outcome"] = outcome
            if report.longrepr is not None and outcome != "passed":
                entry["message"] = _message(report)
        if report.when == "teardown":
            self.counts[entry["outcome"]] += 1

    # --- the end of the run ----------------------------------------------------------

    def finish(self) -> None:
        exitstatus = self.exitstatus
        if not self.counts:  # --collect-only, nothing selected: no run to report
            self._discard()
            return
        self._name_junit_suite()
        finished = datetime.now(UTC)
        by_family: defaultdict[str, Counter] = defaultdict(Counter)
        for entry in self.results.values():
            by_family[entry.get("family", "")][entry["outcome"]] += 1
        summary = {
            "environment": self.inventory.environment,
            "inventory": self.inventory_path,
            "git_revision": self.git,
            "runner": self.runner,
            "started": self.started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "duration_s": round((finished - self.started).total_seconds(), 2),
            "exit_status": int(exitstatus),
            "counts": dict(self.counts, deselected=self.deselected),
            "families": {k: dict(v) for k, v in sorted(by_family.items())},
            "checks": sorted(self.results.values(), key=lambda e: e["id"]),
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self._point_latest()
        self._prune()
        if not self.config.getoption("no_state") and exitstatus not in SKIP_EXIT:
            state = dict(self.previous_state, **self.remembered, last_run=summary["started"])
            (self.env_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    def _discard(self) -> None:
        """A run that executed no check leaves no run directory; latest and state stay."""
        shutil.rmtree(self.dir, ignore_errors=True)
        for folder in self.created:  # deepest first; a folder another run filled stays
            with contextlib.suppress(OSError):
                folder.rmdir()

    def _name_junit_suite(self) -> None:
        """One testsuite per environment in junit.xml, named after it (pytest names it 'pytest')."""
        path = Path(self.config.option.xmlpath)
        if not path.is_relative_to(self.dir) or not path.exists():
            return
        tree = ET.parse(path)
        for suite in tree.getroot().iter("testsuite"):
            suite.set("name", self.inventory.environment)
        tree.write(path, encoding="utf-8", xml_declaration=True)

    def _point_latest(self) -> None:
        latest = self.env_dir / "latest"
        tmp = self.env_dir / ".latest.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.dir.name)
        tmp.replace(latest)

    def _prune(self) -> None:
        keep = max(1, self.config.getoption("keep_runs"))
        runs = sorted(p for p in self.env_dir.iterdir() if p.is_dir() and not p.is_symlink() and p.name[:8].isdigit())
        for old in runs[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def pytest_terminal_summary(self, terminalreporter):
        if self.counts:
            terminalreporter.write_line(f"opscheck: reports in {self.dir}")

    # --- the HTML report -------------------------------------------------------------

    def pytest_html_report_title(self, report):
        report.title = f"opscheck: {self.inventory.environment}"

    def pytest_html_results_summary(self, prefix, summary, postfix):
        prefix.append(family_chart(self.results))


def _outcome(report) -> str | None:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.skipped:
        return "skipped"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    return "passed" if report.when == "call" else None


def _message(report) -> str:
    text = str(report.longrepr)
    if report.skipped and isinstance(report.longrepr, tuple):
        text = report.longrepr[2]
    return clip(text, 4000)  # a second net: every message is redacted where it is written
