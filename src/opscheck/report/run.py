"""Reports of a run: reports/<env>/<timestamp>/{report.html, details.html, junit.xml, summary.json}.

Only the controller (not an xdist worker) names the run directory and writes the
summary, so a parallel run still yields one report. `reports/<env>/latest` points at
the newest run, the last N runs are kept, and state.json carries what must survive
between runs (the time of the last completed run). Each run also rebuilds the history
page of its environment (reports/<env>/index.html) and the list of environments
(reports/index.html) from the kept runs' summaries, and can write its results as
Prometheus metrics (a textfile, a Pushgateway).
"""

import contextlib
import html
import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opscheck.core.redact import redact
from opscheck.inventory import sections
from opscheck.report import history, metrics
from opscheck.report.verdict import (
    failing,
    failing_by_severity,
    first_line,
    measured,
    name,
    root_causes,
    status,
    target_ref,
    verdict_line,
)

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
        self.metrics_file = _metrics_file(config)  # refused before a run directory exists
        self.dir = self._new_run_dir()
        self.results: dict[str, dict] = {}
        self.counts: Counter = Counter()
        self.deselected = 0
        self.remembered: dict = {}
        self.git = git_revision(Path(inventory_path).resolve().parent)
        self.runner = socket.gethostname()
        self._analysis: dict | None = None
        if not config.getoption("htmlpath", None):  # pytest-html: every check in detail, beside the run page
            config.option.htmlpath = str(self.dir / "details.html")
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

    def analyse(self) -> dict:
        """The run read against its history: statuses, failing since, root causes, changes, flapping.

        Computed once, when the terminal summary or the summary file first needs it.
        """
        if self._analysis is not None:
            return self._analysis
        runs = history.load_runs(self.env_dir, exclude=self.dir)
        checks = sorted((dict(e) for e in self.results.values()), key=lambda e: e["id"])
        for entry in checks:
            entry["status"] = status(entry)
        history.mark_failing_since(runs, checks, self.started.isoformat(timespec="seconds"), self.dir.name)
        causes = root_causes(checks, self._depends_on())
        current = {"checks": checks}
        flaps = history.flapping([*runs, current])
        for entry in checks:
            if entry["id"] in flaps:
                entry["flapping"] = flaps[entry["id"]]
        durations: defaultdict[str, float] = defaultdict(float)
        for entry in checks:
            durations[entry.get("family") or "other"] += entry["duration"]
        self._analysis = {
            "history": runs,
            "summary": {
                "verdict": verdict_line(checks),
                "failing": failing_by_severity(checks),
                "failing_targets": sorted({target_ref(c) for c in checks if failing(c)}),
                "causes": causes,
                "previous_run": runs[-1]["run"] if runs else None,
                "changes": history.changes(runs[-1] if runs else None, current),
                "family_durations_s": {k: round(v, 3) for k, v in sorted(durations.items())},
                "checks": checks,
            },
        }
        return self._analysis

    def _depends_on(self) -> dict[str, list[str]]:
        return {
            f"{section}:{target.name}": list(target.depends_on)
            for section in sections()
            for target in self.inventory.targets(section)
            if target.depends_on
        }

    def finish(self) -> None:
        exitstatus = self.exitstatus
        if not self.counts:  # --collect-only, nothing selected: no run to report
            self._discard()
            return
        self._name_junit_suite()
        finished = datetime.now(UTC)
        analysis = self.analyse()
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
            "run": self.dir.name,
            "counts": dict(self.counts, deselected=self.deselected),
            "families": {k: dict(v) for k, v in sorted(by_family.items())},
            **analysis["summary"],
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self._point_latest()
        self._prune()
        self._write_pages(summary, analysis["history"])
        self._write_metrics(summary, finished)
        if not self.config.getoption("no_state") and exitstatus not in SKIP_EXIT:
            state = dict(self.previous_state, **self.remembered, last_run=summary["started"])
            (self.env_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    def _write_pages(self, summary: dict, runs: list[dict]) -> None:
        """The run page, the environment's history page and the list of environments."""
        from opscheck.report import pages  # Jinja2 and the templates: at the end of a run, not at start-up

        html = Path(self.config.option.htmlpath)
        details = html.name if html.parent == self.dir and html.exists() else ""
        pages.run_page(summary, self.dir / "report.html", details)
        kept = [r for r in runs if (self.env_dir / r["run"]).is_dir()]
        pages.history_page(self.inventory.environment, [*kept, summary], self.env_dir / "index.html")
        pages.environments_page(self.env_dir.parent)

    def _write_metrics(self, summary: dict, finished: datetime) -> None:
        url = self.config.getoption("pushgateway")
        if not self.metrics_file and not url:
            return
        text = metrics.exposition(summary, finished.timestamp())
        problems = []
        if self.metrics_file:
            try:
                metrics.write_textfile(self.metrics_file, text)
            except OSError as exc:
                problems.append(f"cannot write the metrics file {self.metrics_file}: {exc.strerror or exc}")
        if url:
            problem = metrics.push(url, self.inventory.environment, text, self.config.getoption("pushgateway_timeout"))
            if problem:
                problems.append(redact(problem))
        for problem in problems:  # the checks' verdict stands; the metrics did not arrive
            print(f"opscheck: WARNING: {problem}", file=sys.stderr)

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
        for old in history.run_dirs(self.env_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def pytest_terminal_summary(self, terminalreporter):
        """The verdict line and the p0/p1 failures, so a CI log or a cron mail reads without the HTML."""
        if not self.counts:
            return
        summary = self.analyse()["summary"]
        bad = any(failing(c) for c in summary["checks"])
        terminalreporter.write_sep(
            "=", f"opscheck {self.inventory.environment}: {summary['verdict']}", red=bad, green=not bad, bold=True
        )
        for line in terminal_lines(summary):
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"opscheck: run page {self.dir / 'report.html'}")
        terminalreporter.write_line(f"opscheck: history {self.env_dir / 'index.html'}")

    # --- pytest-html's page (details.html) ---------------------------------------------

    def pytest_html_report_title(self, report):
        report.title = f"opscheck: {self.inventory.environment}, every check in detail"

    def pytest_html_results_summary(self, prefix, summary, postfix):
        verdict = self.analyse()["summary"]["verdict"] if self.counts else ""
        page = os.path.relpath(self.dir / "report.html", Path(self.config.option.htmlpath).resolve().parent)
        prefix.append(f'<p><a href="{html.escape(page)}">The run page</a>: {html.escape(verdict)}</p>')


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
    return redact(text)[:4000]  # a second net: every message is redacted where it is written


def terminal_lines(summary: dict, limit: int = 20) -> list[str]:
    """The p0 and p1 failures, worst first, one line each with target, message and since when;
    checks blocked by their target's first connection error folded into one line per target."""
    bad = [c for c in summary["checks"] if failing(c)]
    urgent = sorted((c for c in bad if c.get("severity") in ("p0", "p1")), key=lambda c: (c["severity"], c["id"]))
    lines = [f"  {cause['text']}" for cause in summary.get("causes", [])]
    shown: list[dict] = []
    blocked: dict[str, list[dict]] = {}
    for entry in urgent:
        if measured(entry).startswith("blocked: "):
            blocked.setdefault(target_ref(entry), []).append(entry)
        else:
            shown.append(entry)
    for entry in shown[:limit]:
        since = entry.get("failing_since", "")[:16].replace("T", " ")
        runs = int(entry.get("failing_runs") or 1)
        tail = f"since {since} UTC ({runs} runs)" if runs > 1 else "new in this run"
        if entry.get("caused_by"):
            tail += f"; likely caused by {entry['caused_by']}"
        what = first_line(measured(entry), 160)
        lines.append(f"  {entry['severity']} {target_ref(entry) or '-'} {name(entry)}: {what} [{tail}]")
    if len(shown) > limit:
        lines.append(f"  ... and {len(shown) - limit} more p0/p1 failures")
    for ref, entries in blocked.items():
        names = ", ".join(name(c).split("[")[0] for c in entries)
        lines.append(f"  {len(entries)} more p0/p1 on {ref} blocked by its first connection error: {names}")
    rest = len(bad) - len(urgent)
    if rest:
        lines.append(f"  and {rest} p2/p3 failure{'s' if rest != 1 else ''}: see the run page")
    return lines


def _metrics_file(config) -> Path | None:
    """--metrics-file: its folder must exist (a textfile collector's directory); exit 4 otherwise."""
    given = config.getoption("metrics_file")
    if not given:
        return None
    path = Path(given)
    path = path if path.is_absolute() else config.invocation_params.dir / path
    if not path.parent.is_dir():
        raise pytest.UsageError(f"--metrics-file {path}: the folder {path.parent} does not exist")
    if path.suffix != ".prom":
        raise pytest.UsageError(f"--metrics-file {path}: node_exporter's textfile collector reads only *.prom files")
    return path
