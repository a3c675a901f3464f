"""Reports of a run: reports/<env>/<timestamp>/{report.html, details.html, junit.xml, summary.json}.

Only the controller (not an xdist worker) names the run directory and writes the
summary, so a parallel run still yields one report. `reports/<env>/latest` points at
the newest run, the last N runs are kept, and state.json carries what must survive
between runs (the time of the last completed run). Each run also rebuilds the history
page of its environment (reports/<env>/index.html) and the list of environments
(reports/index.html) from the kept runs' summaries, and can write its results as
Prometheus metrics (a textfile, a Pushgateway).

Faults do not lose a run silently. A reports directory that cannot be written (disk full,
gone, replaced by a file) ends the run with exit code REPORTS_NOT_WRITTEN (6) and a line
saying so, after the terminal summary; the truncated files are removed and `latest` and
state.json stay where they were. An interrupted run (Ctrl-C) is marked interrupted in
every report and moves neither. Runs sharing a reports directory take a lock for
latest, state.json and pruning, and replace both atomically (unique temporary names).
"""

import contextlib
import html
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opscheck.core.redact import clip_middle, redact
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
REPORTS_NOT_WRITTEN = 6  # the checks ran, their reports could not be written: see the terminal
LOCK_SECONDS = 60


REMEMBER = "opscheck_remember"  # a user property carrying {key: value} for the next run's state


def env_dir(config, environment: str) -> Path:
    """reports/<env>/: --reports-dir, else reports/ in the project's root directory."""
    root = config.getoption("reports_dir") or config.rootpath / "reports"
    return Path(root).resolve() / environment


STATE_MAX_BYTES = 4 * 1024 * 1024  # what the checks remember: a few KB; a larger file is damaged


def read_state(config, environment: str) -> dict:
    return _read_json(env_dir(config, environment) / "state.json")


def _read_json(path: Path) -> dict:
    found = history.read_json(path, STATE_MAX_BYTES)
    return found if isinstance(found, dict) else {}


def _newest_start(started: str, recorded: object, now: str) -> str:
    """state.json's last_run: a concurrent run that started after this one keeps its start;
    anything else (a damaged value, a start in the future from a wrong clock) gives way."""
    return recorded if isinstance(recorded, str) and started < recorded <= now else started


def _write_atomically(path: Path, text: str) -> None:
    """Write beside, then rename over: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def summary_text(summary: dict) -> str:
    """summary.json: indented, one line per check. json writes a line with its C encoder and
    an indented document in Python: 2,000 checks take 10 ms rather than 18."""
    head = json.dumps({k: v for k, v in summary.items() if k != "checks"}, indent=2).removesuffix("\n}")
    rows = ",".join(f"\n    {json.dumps(check)}" for check in summary.get("checks", []))
    closing = "\n  ]" if rows else "]"
    return f'{head},\n  "checks": [{rows}{closing}\n}}\n'


def bare_nodeid(nodeid: str) -> str:
    """A check's id without pytest-xdist's `@group` suffix: serial and parallel runs agree."""
    return nodeid.rsplit("]@", 1)[0] + "]" if "]@" in nodeid else nodeid


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
        self._pages_ready: threading.Thread | None = None
        # folders this run creates (reports/<env>/ on a first run): a run that executes no check removes them
        self.created = [p for p in (self.env_dir, *self.env_dir.parents) if not p.exists()]
        self.exitstatus: int = pytest.ExitCode.INTERNAL_ERROR  # until the session says otherwise
        self.session = None
        self.interrupted = False
        self.write_errors: list[str] = []
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
            except OSError as exc:
                raise pytest.UsageError(
                    f"cannot create a run directory under {self.env_dir}: {exc.strerror or type(exc).__name__} "
                    "(--reports-dir must be a writable directory)"
                ) from None
        raise pytest.UsageError(f"cannot create a run directory under {self.env_dir}")

    # --- results ---------------------------------------------------------------------

    def pytest_sessionstart(self, session):
        self.session = session

    def pytest_deselected(self, items):
        self.deselected += len(items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """Under xdist the workers collect and deselect (each the same items): take one count."""
        self.deselected = max(self.deselected, getattr(node, "workeroutput", {}).get("opscheck_deselected", 0))

    def pytest_keyboard_interrupt(self, excinfo):
        self.interrupted = True

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, session):
        """junit.xml and report.html are written here (by their plugins): a full or vanished
        directory is recorded, not raised, so the terminal summary is still printed."""
        try:
            return (yield)
        except OSError as exc:
            self.write_errors.append(f"{exc.filename or self.dir}: {exc.strerror or type(exc).__name__}")
            return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report):
        report.nodeid = bare_nodeid(report.nodeid)  # before junitxml and pytest-html read it
        nodeid = report.nodeid
        properties = [(k, v) for k, v in report.user_properties if k != REMEMBER]
        for key, value in report.user_properties:
            if key == REMEMBER and report.when == "call":
                self.remembered.update(value)
        entry = self.results.setdefault(nodeid, {"id": nodeid, "outcome": UNFINISHED, "duration": 0.0, "message": ""})
        entry.update(properties)  # a check may add properties while it runs (a log window)
        entry["duration"] = round(entry["duration"] + report.duration, 3)
        outcome = _outcome(report)
        if outcome and (entry["outcome"] in (UNFINISHED, "passed") or outcome in ("failed", "error")):
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
        if not self.counts and not self.interrupted:  # --collect-only, nothing selected: no run to report
            self._discard()
            return
        try:
            self._write_reports()
        except OSError as exc:
            self.write_errors.append(f"{exc.filename or self.dir}: {exc.strerror or type(exc).__name__}")
        if self.write_errors:
            self._reports_lost()

    def _write_reports(self) -> None:
        exitstatus = int(pytest.ExitCode.INTERRUPTED) if self.interrupted else int(self.exitstatus)
        for entry in self.results.values():
            if entry["outcome"] == UNFINISHED:  # a check cut off by Ctrl-C: neither passed nor failed
                entry["outcome"] = "interrupted"
                self.counts["interrupted"] += 1
        if self.write_errors:
            return
        self._name_junit_suite()
        analysis = self.analyse()
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
            "exit_status": exitstatus,
            "interrupted": self.interrupted,
            "run": self.dir.name,
            "counts": dict(self.counts, deselected=self.deselected),
            "families": {k: dict(v) for k, v in sorted(by_family.items())},
            **analysis["summary"],
        }
        _write_atomically(self.dir / "summary.json", summary_text(summary))
        self._write_pages(summary, analysis["history"])
        if self.interrupted:
            return  # an interrupted run is reported, but latest, state.json and metrics stay where they were
        self._write_metrics(summary, finished)
        from filelock import FileLock, Timeout  # here: a dry run does not import it

        try:
            lock = FileLock(str(self.env_dir / ".lock"), timeout=LOCK_SECONDS)
            with lock:
                self._point_latest()
                self._prune()
                if not self.config.getoption("no_state") and exitstatus not in SKIP_EXIT:
                    state = dict(_read_json(self.env_dir / "state.json"), **self.remembered)
                    previous = self.previous_state.get("last_run", "")
                    recorded = state.get("last_run", previous)
                    now = datetime.now(UTC).isoformat(timespec="seconds")  # under the lock: a later run's start counts
                    state["last_run"] = _newest_start(summary["started"], recorded, now)
                    _write_atomically(self.env_dir / "state.json", json.dumps(state, indent=2) + "\n")
        except Timeout:
            self.write_errors.append(f"{self.env_dir}/.lock: held by another run for over {LOCK_SECONDS} s")

    def prepare_pages(self) -> None:
        """Import Jinja2 and compile the pages' templates on a thread of their own, while the
        checks wait for their targets' reads: off the end of the run, where the pages are
        written. A failure here is left for the end, where it is reported."""

        def prepare() -> None:
            with contextlib.suppress(Exception):
                from opscheck.report import pages

                pages.prepare()

        self._pages_ready = threading.Thread(target=prepare, name="opscheck-pages", daemon=True)
        self._pages_ready.start()

    def _write_pages(self, summary: dict, runs: list[dict]) -> None:
        """The run page, the environment's history page and the list of environments."""
        if self._pages_ready is not None:
            self._pages_ready.join()
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

    def _reports_lost(self) -> None:
        """Say it, exit REPORTS_NOT_WRITTEN, and leave no truncated report behind."""
        for page in ("report.html", "details.html", "junit.xml", "summary.json"):
            with contextlib.suppress(OSError):
                (self.dir / page).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.dir.rmdir()  # empty now, unless something else is in it
        print(
            f"opscheck: the reports of this run could not be written ({'; '.join(self.write_errors)}): "
            f"latest and state.json are unchanged; exit {REPORTS_NOT_WRITTEN}",
            file=sys.stderr,
        )
        if self.session is not None:
            self.session.exitstatus = REPORTS_NOT_WRITTEN

    def _discard(self) -> None:
        """A run that executed no check leaves no run directory; latest and state stay."""
        shutil.rmtree(self.dir, ignore_errors=True)
        for folder in self.created:  # deepest first; a folder another run filled stays
            with contextlib.suppress(OSError):
                folder.rmdir()

    def _name_junit_suite(self) -> None:
        """One testsuite per environment in junit.xml, named after it (pytest names it 'pytest').

        A complete run only renames the suite: a bounded edit of the file's head, not a parse
        of the whole file (10,000 checks make a few MB). An interrupted run's file is parsed:
        its nameless testcase goes and an `interrupted` property is added."""
        path = Path(self.config.option.xmlpath)
        if not path.is_relative_to(self.dir) or not path.exists():
            return
        data = path.read_bytes()
        if not data.rstrip().endswith(b"</testsuites>"):
            self.write_errors.append(f"{path}: truncated (the disk is full?)")
            return
        if not self.interrupted:
            head, rest = data[:4096], data[4096:]
            # the environment name is [A-Za-z0-9][A-Za-z0-9_.-]*: safe in an XML attribute
            named = head.replace(
                b'<testsuite name="pytest"', f'<testsuite name="{self.inventory.environment}"'.encode(), 1
            )
            if named != head:
                self._replace(path, named + rest)
            return
        try:
            tree = ET.parse(path)
        except ET.ParseError:
            self.write_errors.append(f"{path}: truncated (the disk is full?)")
            return
        for suite in tree.getroot().iter("testsuite"):
            suite.set("name", self.inventory.environment)
            for case in [c for c in suite.iter("testcase") if not c.get("name")]:
                suite.remove(case)  # what an interrupt leaves: a testcase of no check
            properties = suite.find("properties")
            if properties is None:
                properties = ET.Element("properties")
                suite.insert(0, properties)
            ET.SubElement(properties, "property", name="interrupted", value="true")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tree.write(tmp, encoding="utf-8", xml_declaration=True)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _replace(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def _point_latest(self) -> None:
        """latest -> this run, unless a run that started later already finished (under the lock)."""
        latest = self.env_dir / "latest"
        if latest.is_dir() and not latest.is_symlink():  # not opscheck's: a user's folder is never replaced
            print(f"opscheck: WARNING: {latest} is a folder, not opscheck's link: latest not moved", file=sys.stderr)
            return
        with contextlib.suppress(OSError):
            pointed = os.readlink(latest)
            if history.run_key(pointed) > history.run_key(self.dir.name) and (self.env_dir / pointed).is_dir():
                return
        tmp = self.env_dir / f".latest.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            tmp.symlink_to(self.dir.name)
            tmp.replace(latest)
        finally:
            tmp.unlink(missing_ok=True)

    def _prune(self) -> None:
        """Keep the newest N finished runs; a run still in progress (no summary yet) is left alone."""
        keep = max(1, self.config.getoption("keep_runs"))
        runs = [p for p in history.run_dirs(self.env_dir) if (p / "summary.json").exists()]
        for old in runs[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def pytest_terminal_summary(self, terminalreporter):
        """The verdict line and the p0/p1 failures, so a CI log or a cron mail reads without the HTML."""
        if self.interrupted:
            terminalreporter.write_line(
                f"opscheck: run interrupted: reported as such in {self.dir}; latest and state.json unchanged", red=True
            )
        if not self.counts:
            return
        summary = self.analyse()["summary"]
        bad = any(failing(c) for c in summary["checks"])
        terminalreporter.write_sep(
            "=", f"opscheck {self.inventory.environment}: {summary['verdict']}", red=bad, green=not bad, bold=True
        )
        for line in terminal_lines(summary):
            terminalreporter.write_line(line)
        if not self.write_errors:
            terminalreporter.write_line(f"opscheck: run page {self.dir / 'report.html'}")
            terminalreporter.write_line(f"opscheck: history {self.env_dir / 'index.html'}")

    # --- pytest-html's page (details.html) ---------------------------------------------

    def pytest_html_report_title(self, report):
        report.title = f"opscheck: {self.inventory.environment}, every check in detail"

    @pytest.hookimpl(tryfirst=True)
    def pytest_html_results_table_row(self, report, cells):
        """pytest-html builds a row for every phase, then discards a passed setup's or
        teardown's (keeping only a teardown's captured output): emptying the cells here, its
        documented way to drop a row, skips that work."""
        if report.passed and report.when != "call" and not any("teardown" in h for h, _ in report.sections):
            del cells[:]

    def pytest_html_results_summary(self, prefix, summary, postfix):
        if self.interrupted:
            prefix.append(
                '<p style="color:#b00;font-weight:bold">INTERRUPTED: this run was stopped (Ctrl-C) before every '
                "check ran; it is not a complete result.</p>"
            )
        verdict = self.analyse()["summary"]["verdict"] if self.counts else ""
        page = os.path.relpath(self.dir / "report.html", Path(self.config.option.htmlpath).resolve().parent)
        prefix.append(f'<p><a href="{html.escape(page)}">The run page</a>: {html.escape(verdict)}</p>')


UNFINISHED = "unfinished"


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
    return clip_middle(text, 4000)  # a second net: every message is redacted where it is written


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
