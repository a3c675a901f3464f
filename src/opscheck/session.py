"""The hooks of an opscheck run: the inventory, parametrization, marker rules, waivers, the
gather phase, failures as one message and a hint, reports; and the fixtures every family uses.

opscheck.plugin registers this module when a run is an opscheck run (see its docstring), so
a pytest run of any other suite imports none of it.

Families are not named here: their sections, check arguments and check modules come from
the registry (opscheck.families.FAMILIES); their fixtures from the project's fixtures/.
"""

import gc
import os
import platform
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_metadata.plugin import metadata_key
from pytest_timeout import get_env_settings  # type: ignore[import-untyped]

from opscheck import waivers
from opscheck.core import markers, web
from opscheck.core import redact as redaction
from opscheck.core.cache import forget_across_workers
from opscheck.core.errors import ConfigError, OpscheckError, TargetUnreachable
from opscheck.core.gather import Gatherer, Selection, guard_logger_table
from opscheck.core.model import (
    INVENTORY_KEY,
    INVENTORY_PATH_KEY,
    PARAMS_KEY,
    STATE_KEY,
    Param,
    Target,
    running_check,
    start_check,
    target_of,
)
from opscheck.core.names import env_name
from opscheck.core.redact import redact
from opscheck.families import FAMILIES, check_module, family
from opscheck.inventory import Inventory, load, path_for_env
from opscheck.report import run as reporting

RUN_KEY = pytest.StashKey[reporting.Run]()
INDEX_KEY = pytest.StashKey["ParameterIndex"]()
WAIVERS_KEY = pytest.StashKey[list[waivers.Waiver]]()
WAIVER_OF = pytest.StashKey[tuple[waivers.Waiver | None, waivers.Waiver | None]]()
GATHER_KEY = pytest.StashKey["GatherPhase"]()


class NoTarget:
    """Stands in for an empty parameter list, so the check is deselected instead of skipped."""

    def __repr__(self) -> str:
        return "no-target"


NO_TARGET = NoTarget()
NO_TARGET_PARAMS = [pytest.param(NO_TARGET, id="no-target")]


def inventory_path(config) -> Path:
    """The inventory file of this run: --inventory, else inventories/<env>.yml in the rootdir."""
    given = config.getoption("inventory")
    if given is not None:
        path = Path(given)
        return path if path.is_absolute() else config.invocation_params.dir / path
    env = config.getoption("env") or os.environ.get("OPSCHECK_ENV") or "local"
    return path_for_env(env, config.rootpath / "inventories")


def start(config) -> None:
    """Load the inventory, index the check arguments, start the run's reports (exit 4 if the
    inventory is broken). Called by opscheck.plugin's pytest_configure."""
    markers.register(config)
    _refuse_misrooted_run(config)
    _refuse_bad_options(config)
    path = inventory_path(config)
    try:  # --collect-only or --setup-plan runs no check: the local files they read need not be here
        inventory = load(path, here=judges_checks(config))
    except ConfigError as exc:
        raise pytest.UsageError(
            f"invalid inventory {path} ({len(exc.problems)} problem(s)):\n  " + "\n  ".join(exc.problems)
        ) from None
    config.stash[INVENTORY_KEY] = inventory
    if config.getoption("pushgateway"):
        redaction.register(config.getoption("pushgateway"))  # its credentials, if the URL has any
    config.stash[INVENTORY_PATH_KEY] = path
    config.stash[PARAMS_KEY] = _parse_params(config.getoption("param"))
    if getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput"):
        _read_waivers(config)  # the xdist controller: a worker's refusal would be an INTERNALERROR
    under_xdist = hasattr(config, "workerinput") or getattr(config.option, "dist", "no") != "no"
    config.stash[INDEX_KEY] = ParameterIndex(inventory, grouped=under_xdist)
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"  # keep a target's checks on one worker
    if getattr(config, "workerinput", {}).get("opscheck_loadgroup"):
        config.option.loadgroup = True  # workers parse their own --dist; follow the controller
    if judges_checks(config):
        web.read_environment()  # here, in the main thread: not in the gather's threads, as requests would
        guard_logger_table()
    if not hasattr(config, "workerinput") and judges_checks(config):
        run = reporting.Run(config, inventory, path)
        config.stash[RUN_KEY] = run
        config.pluginmanager.register(run, "opscheck-run")
        _fill_metadata(config)
        config.stash[STATE_KEY] = run.previous_state
    else:
        config.stash[STATE_KEY] = reporting.read_state(config, inventory.environment)


def _refuse_misrooted_run(config) -> None:
    """`--inventory /elsewhere/x.yml` (with a space) makes pytest pick /elsewhere as rootdir.

    pytest chooses its rootdir from path-like arguments before plugins load, so it reads
    that path as a test path, misses pyproject.toml and would collect the wrong files.
    """
    args = list(config.invocation_params.args)
    for flag in ("--inventory", "--reports-dir"):
        if flag in args and config.inipath is None:
            raise pytest.UsageError(
                f"pytest took the value of {flag} for a test path and lost its configuration "
                f"(rootdir {config.rootpath}); write {flag}=PATH with '=' instead"
            )


MAX_SECONDS = 86_400  # a timeout of a day or more is a typo (and inf overflows the timers)


def _refuse_bad_options(config) -> None:
    """Options whose value would silently change what a run means (pytest-timeout's too)."""
    timeout = config.getoption("timeout", None)
    if timeout is not None and not 0 < float(timeout) < MAX_SECONDS:
        raise pytest.UsageError(
            f"--timeout={timeout}: the per-check timeout must be above 0 s (0 or less would disable it) "
            f"and below {MAX_SECONDS:g} s"
        )
    push_timeout = config.getoption("pushgateway_timeout")
    if not 0 < push_timeout < MAX_SECONDS:
        raise pytest.UsageError(f"--pushgateway-timeout={push_timeout}: must be above 0 s and below {MAX_SECONDS:g} s")
    env = os.environ.get("OPSCHECK_ENV")
    if config.getoption("env") is None and config.getoption("inventory") is None and env is not None:
        try:
            env_name(env)
        except ValueError as exc:
            raise pytest.UsageError(f"$OPSCHECK_ENV: {exc}") from None
    reports = config.getoption("reports_dir")
    if reports is not None and Path(reports).exists() and not Path(reports).is_dir():
        raise pytest.UsageError(f"--reports-dir={reports}: not a directory")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Tell each xdist worker that the controller schedules by target group."""
    if INVENTORY_KEY in node.config.stash:
        node.workerinput["opscheck_loadgroup"] = node.config.option.dist == "loadgroup"


def _parse_params(values: list[str]) -> dict[str, str]:
    params = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise pytest.UsageError(f"--param {value!r}: expected NAME=VALUE")
        params[name] = text
    return params


def pytest_report_header(config):
    if INVENTORY_KEY not in config.stash:
        return None
    inventory = config.stash[INVENTORY_KEY]
    empty = [stem for stem in FAMILIES if not inventory.targets(stem)]
    lines = [f"opscheck: environment {inventory.environment}"]
    if empty:
        lines.append(f"opscheck: no targets for: {', '.join(empty)} (their checks are deselected)")
    return lines


# --- parametrization over the inventory ---------------------------------------------------


class ParameterIndex:
    """Every check argument of every family with targets, built once per run: argname -> its rows.

    (A family without targets has no module imported and no checks collected.) Each
    family's parameters() runs once; pytest_generate_tests then looks an argname up
    in a dict, and the pytest.param rows of an argname are built once and shared by every
    check that uses it. Two families handing out the same argname stop the run (exit 4).
    """

    def __init__(self, inventory: Inventory, grouped: bool = False, stems: Iterable[str] | None = None):
        self.grouped = grouped  # under xdist: mark each row with its target's group
        self.rows: dict[str, list[Param]] = {}
        self.owner: dict[str, str] = {}
        self._built: dict[str, list] = {}
        for stem in inventory.families() if stems is None else stems:
            for argname, rows in family(stem).parameters(inventory).items():
                if argname in self.owner:
                    raise pytest.UsageError(
                        f"check argument {argname!r} is handed out by two families, {self.owner[argname]} and {stem}: "
                        "rename one (argnames are unique across families)"
                    )
                self.owner[argname] = stem
                self.rows[argname] = rows

    def params(self, argname: str) -> list | None:
        """The pytest.param rows of an argname, or None if no family owns it."""
        built = self._built.get(argname)
        if built is None and argname in self.rows:
            rows = self.rows[argname]
            built = [
                pytest.param(r.value, id=r.id, marks=[*r.marks, _group(r.target)]) for r in rows
            ] or NO_TARGET_PARAMS
            self._built[argname] = built
        return built


def _group(target: Target):
    """Keep a target's checks on one xdist worker (--dist loadgroup): one timeout, once."""
    return pytest.mark.xdist_group(f"{type(target).__name__}:{target.name}")


def pytest_ignore_collect(collection_path, config):
    """A family without targets: its check module is not even imported (a header line says so)."""
    if INVENTORY_KEY not in config.stash or collection_path.suffix != ".py":
        return None
    return True if collection_path.name in _without_targets(config.stash[INVENTORY_KEY]) else None


def _without_targets(inventory: Inventory) -> set[str]:
    """The check modules (file names) of the families the inventory has no targets for."""
    return {check_module(stem) for stem in FAMILIES if not inventory.targets(stem)}


def pytest_generate_tests(metafunc):
    index = metafunc.config.stash.get(INDEX_KEY, None)
    if index is None:
        return
    for argname in metafunc.fixturenames:
        rows = index.params(argname)
        if rows is not None:
            metafunc.parametrize(argname, rows)


# --- collection: deselect, apply inventory severities, enforce the marker rules -----------


def pytest_sessionstart(session):
    """Live logs (--log-cli-level) and --log-file are masked as the reports are."""
    logging_plugin = session.config.pluginmanager.get_plugin("logging-plugin")
    for name in ("log_cli_handler", "log_file_handler"):
        handler = getattr(logging_plugin, name, None)
        if handler is not None and handler.formatter is not None:
            handler.setFormatter(redaction.MaskedFormatter(handler.formatter))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if INVENTORY_KEY not in config.stash:
        return
    params = config.stash[PARAMS_KEY]
    # A family without targets: none of its fixtures are loaded (a check module named on the
    # command line is collected all the same), so its checks are deselected, as elsewhere.
    absent = _without_targets(config.stash[INVENTORY_KEY])
    keep, deselected, problems = [], [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any(v is NO_TARGET for v in callspec.params.values()):
            deselected.append(item)
            continue
        if item.path.name in absent:
            deselected.append(item)
            continue
        marks = list(item.iter_markers())  # one walk over the node chain per check
        adhoc = next((m for m in marks if m.name == "adhoc"), None)
        if adhoc and not all(name in params for name in adhoc.args):
            deselected.append(item)
            continue
        target = target_of(item)
        if _apply_severity_override(item, target):
            marks = list(item.iter_markers())
        names = [m.name for m in marks]
        if "smoke" in names and "daily" not in names:
            item.add_marker(pytest.mark.daily)
            names.append("daily")
        problems += [f"{item.nodeid}: {p}" for p in markers.problems(names)]
        _attach_properties(item, target, names, _hint(item, marks))
        keep.append(item)
    if problems:
        raise pytest.UsageError(
            "checks that break the marker conventions (see CONTRIBUTING.md):\n  " + "\n  ".join(problems)
        )
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def pytest_deselected(items):
    """An xdist worker tells the controller how many it deselected (the controller collects nothing)."""
    if items and hasattr(items[0].config, "workeroutput") and INVENTORY_KEY in items[0].config.stash:
        output = items[0].config.workeroutput
        output["opscheck_deselected"] = output.get("opscheck_deselected", 0) + len(items)


def _apply_severity_override(item, target: Target | None) -> bool:
    override = target.severity_overrides.get(item.originalname) if target else None
    if override:
        item.own_markers[:] = [m for m in item.own_markers if m.name not in markers.SEVERITIES]
        item.add_marker(getattr(pytest.mark, override))
    return bool(override)


def _hint(item, marks: list) -> str:
    """The runbook hint: the inventory's (parameter marks come last) over the check's own."""
    own = [m.args[0] for m in item.own_markers if m.name == "runbook" and m.args]
    if own:
        return own[-1]
    return next((m.args[0] for m in marks if m.name == "runbook" and m.args), "")


def hint_of(item) -> str:
    """The runbook hint of a check (as attached to it at collection)."""
    return next((value for key, value in item.user_properties if key == "runbook"), "")


def family_of(item) -> str:
    """The family of a check: its module's stem (checks/test_redis.py -> redis)."""
    return item.path.stem.removeprefix("test_") if item.path.suffix == ".py" else ""


def _attach_properties(item, target: Target | None, names: list[str], hint: str) -> None:
    severity = next((n for n in names if n in markers.SEVERITIES), "")
    item.user_properties += [
        ("severity", severity),
        ("schedule", ",".join(sorted({n for n in names if n in markers.SCHEDULES}))),
        ("family", family_of(item)),
        ("target", target.name if target else ""),
        ("runbook", hint),
    ]


# --- waivers: known failures, with an owner and an expiry ---------------------------------


def _read_waivers(config) -> tuple[Path, list]:
    """The waivers file beside the inventory (or $OPSCHECK_WAIVERS), kept in the stash; exit 4 if malformed."""
    path = waivers.waivers_path(config.stash[INVENTORY_PATH_KEY])
    try:
        found = waivers.load_waivers(path)
    except ConfigError as exc:
        raise pytest.UsageError("invalid waivers:\n  " + "\n  ".join(exc.problems)) from None
    config.stash[WAIVERS_KEY] = found
    return path, found


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Read the waivers once the selection is final, and mark the checks they cover."""
    config = session.config
    if INVENTORY_KEY not in config.stash:
        return
    path, found = _read_waivers(config)
    now = datetime.now(UTC)
    for item in session.items if found else ():
        active, expired = waivers.waiver_of(found, item, now)
        if active or expired:
            item.stash[WAIVER_OF] = (active, expired)
        if active:  # the run page shows who waived it, until when, and why
            item.user_properties += [
                ("waived_by", active.owner),
                ("waived_until", active.shown_until()),
                ("waiver_reason", redact(active.reason)),
            ]
    lines = waivers.header_lines(found, path, now)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if lines and reporter is not None:
        for line in lines:
            reporter.write_line(line)
    # The checks, the inventory and every imported module live until the run ends: frozen,
    # they are left out of the collector's sweeps (each automatic one during the run, and
    # pytest's gc.collect() at its end walk only what the run allocates since).
    gc.freeze()


# --- gathering: every selected target read at once, then the checks judge ----------------


class GatherPhase:
    """Starts the families' read jobs: all at once in one process, per target under xdist.

    A single process knows its whole selection before the first check, so every target's
    reads start together. An xdist worker is handed its checks a few at a time, so it
    starts the reads of the targets it was given (the one running and those queued).
    """

    def __init__(self, config, items: list):
        self.config = config
        self.gatherer = Gatherer(config.getoption("gather_workers"))
        self.selection = Selection()
        self.by_target: dict[int, tuple[str, Target]] = {}
        for item in items:
            target = target_of(item)
            if target is not None:
                stem = family_of(item)
                self.selection.add(stem, target, item.originalname)
                self.by_target.setdefault(id(target), (stem, target))
        self.started: set[int] = set()

    def start(self, targets: list[Target] | None = None) -> None:
        """Ask every family for its jobs (for these targets only, if given) and run them."""
        if targets is None:
            chosen = self.selection
        else:
            fresh = [t for t in targets if id(t) not in self.started and id(t) in self.by_target]
            if not fresh:
                return
            chosen = Selection()
            for target in fresh:
                stem = self.by_target[id(target)][0]
                chosen.checks.setdefault(stem, {})[id(target)] = self.selection.checks[stem][id(target)]
        for targets_of in chosen.checks.values():
            self.started.update(targets_of)  # keyed by id(target)
        asked = time.monotonic()  # a family may prepare in its hook (docker imports its SDK)
        for jobs in self.config.hook.pytest_opscheck_gather(config=self.config, selection=chosen):
            self.gatherer.start(jobs or [], since=asked)


def _queued_items(session) -> list:
    """The items an xdist worker was handed and has not run yet (best effort)."""
    for plugin in session.config.pluginmanager.get_plugins():
        torun = getattr(plugin, "torun", None)
        if torun is not None and hasattr(torun, "lock"):
            with torun.lock() as queue:
                indices = [i for i in queue if isinstance(i, int)]
            return [session.items[i] for i in indices if i < len(session.items)]
    return []


def judges_checks(config) -> bool:
    """False for --collect-only, --setup-plan and --setup-only: no check is judged, so no run
    is reported (no run folder, no report, latest and state.json unchanged) and nothing gathered."""
    option = config.option
    return not (option.collectonly or getattr(option, "setupplan", False) or getattr(option, "setuponly", False))


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    config = session.config
    if INVENTORY_KEY not in config.stash or not session.items:
        return None
    if not judges_checks(config):
        return None
    run = config.stash.get(RUN_KEY, None)
    if run is not None:
        run.prepare_pages()  # while the checks wait for their reads
    if config.getoption("gather_workers") <= 0:
        return None
    if getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput"):
        return None  # the xdist controller runs no checks
    phase = config.stash[GATHER_KEY] = GatherPhase(config, session.items)
    if hasattr(config, "workerinput"):
        return None  # xdist's loop hands this worker its checks
    phase.start()
    if session.testsfailed and not config.option.continue_on_collection_errors:
        return None  # pytest's own loop stops the run, with its message
    return _run_ready_first(session, phase.gatherer)


def _run_ready_first(session, gatherer: Gatherer) -> bool:
    """pytest's test loop, except that a check whose target is still being read steps aside
    for the checks after it whose targets are read: one slow target (a Docker engine's two
    stats samples) holds back its own checks only, and the run ends soon after its reads do.
    A target's own checks keep pytest's order."""
    inventory = session.config.stash[INVENTORY_KEY]
    check_timeout = get_env_settings(session.config).timeout  # pytest-timeout's, per check
    order = ReadyFirst(
        session.items, gatherer, lambda t: GATHER_WAIT_TIMEOUTS * inventory.timeout(t) + 5, check_timeout
    )
    item = order.next()
    while item is not None:
        nextitem = order.next()
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        item = nextitem
    return True


class ReadyFirst:
    """The checks in collection order, those of targets not read yet set aside until they are.
    When only those are left, the next is the first of the target read first, waited for no
    longer than a check would wait for its target's reads, nor than a check may take
    (pytest-timeout): then the first set aside runs, and waits in its call."""

    def __init__(
        self, items: list, gatherer: Gatherer, wait_seconds: Callable[[Target], float], check_timeout: float | None
    ):
        self.items = iter(items)
        self.gatherer = gatherer
        self.wait_seconds = wait_seconds
        self.check_timeout = check_timeout  # a wait here is never longer than a check may take
        self.waiting: dict[int, tuple[Target, list]] = {}  # id(target) -> (target, its checks set aside)

    def next(self):
        ready = self._ready()
        if ready is not None:
            return self._take(ready)
        for item in self.items:
            target = target_of(item)
            if target is None or (id(target) not in self.waiting and self.gatherer.done(target)):
                return item
            self.waiting.setdefault(id(target), (target, []))[1].append(item)
        if not self.waiting:
            return None
        targets = [target for target, _ in self.waiting.values()]
        deadline = min(self.gatherer.deadline(t, self.wait_seconds(t)) for t in targets)
        if self.check_timeout:
            deadline = min(deadline, time.monotonic() + self.check_timeout)
        self.gatherer.wait_any(targets, deadline)
        ready = self._ready()
        return self._take(next(iter(self.waiting)) if ready is None else ready)

    def _ready(self) -> int | None:
        return next((key for key, (target, _) in self.waiting.items() if self.gatherer.done(target)), None)

    def _take(self, key: int):
        checks = self.waiting[key][1]
        item = checks.pop(0)
        if not checks:
            del self.waiting[key]
        return item


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    start_check(item)  # the family fixtures' target (opscheck.core.model.running_check)
    phase = item.config.stash.get(GATHER_KEY, None)
    if phase is None or not hasattr(item.config, "workerinput"):
        return
    target = target_of(item)
    if target is not None and id(target) not in phase.started:
        phase.start([target, *(t for t in map(target_of, _queued_items(item.session)) if t is not None)])


def _wait_for_target(item) -> None:
    """A check waits for its own target's gathered reads (only those): then it judges them.

    In the check's call, not its setup: a target that hangs past pytest-timeout is the
    check's failure, not an error."""
    phase = item.config.stash.get(GATHER_KEY, None)
    target = target_of(item) if phase is not None else None
    if target is not None and not phase.gatherer.done(target):
        phase.gatherer.wait(target, GATHER_WAIT_TIMEOUTS * item.config.stash[INVENTORY_KEY].timeout(target) + 5)


# A target's reads end within a few of its timeouts of their start; then its checks read themselves.
GATHER_WAIT_TIMEOUTS = 4


# --- running: failures read as one message plus the runbook hint --------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    _wait_for_target(item)
    try:
        return (yield)
    except OpscheckError as exc:
        if isinstance(exc, TargetUnreachable):  # the report names it as the cause of its dependents' failures
            item.user_properties.append(("unreachable", redact(str(exc))))
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if INVENTORY_KEY not in item.config.stash:
        return report
    if report.when == "call" and WAIVER_OF in item.stash:
        waivers.apply(report, *item.stash[WAIVER_OF])
    if report.longrepr is None:
        _redact_sections(report)
        return report
    if report.failed:
        text = redact(str(report.longrepr))
        hint = hint_of(item)
        if hint and report.when == "call":
            text += f"\n\nrunbook: {hint}"
        report.longrepr = text
    elif isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:  # skipped, or waived (xfail)
        report.longrepr = (*report.longrepr[:2], redact(str(report.longrepr[2])))
    else:
        report.longrepr = redact(str(report.longrepr))
    if getattr(report, "wasxfail", None):
        report.wasxfail = redact(report.wasxfail)
    _redact_sections(report)
    return report


def _redact_sections(report) -> None:
    """Captured output and logs (a library's warning with a URL in it) travel with the report."""
    report.sections = [(title, redact(text)) for title, text in report.sections]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if INVENTORY_KEY not in config.stash or hasattr(config, "workerinput"):
        return
    run = config.stash.get(RUN_KEY, None)
    skipped = run.counts.get("skipped", 0) if run else 0
    if config.getoption("no_skips") and skipped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        config.stash[SKIP_FAILURE_KEY] = skipped
    if run:
        run.exitstatus = session.exitstatus


def pytest_unconfigure(config):
    """The summary, latest and state.json: after every report file is written (pytest-html
    and junitxml write theirs at the very end of the session)."""
    phase = config.stash.get(GATHER_KEY, None)
    if phase is not None:
        phase.gatherer.close()
    forget_across_workers(config)
    run = config.stash.get(RUN_KEY, None)
    if run is not None:
        run.finish()


SKIP_FAILURE_KEY = pytest.StashKey[int]()


def _fill_metadata(config) -> None:
    """The HTML report's header: environment, inventory, git revision, runner, start time."""
    run = config.stash.get(RUN_KEY, None)
    if run is None or metadata_key not in config.stash:
        return
    metadata = config.stash[metadata_key]
    metadata.clear()
    metadata.update(
        {
            "Environment": run.inventory.environment,
            "Inventory": run.inventory_path,
            "Git revision": run.git,
            "Runner host": run.runner,
            "Started (UTC)": run.started.isoformat(timespec="seconds"),
            "Python": platform.python_version(),
        }
    )


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata, config):
    _fill_metadata(config)


def pytest_terminal_summary(terminalreporter, config):
    phase = config.stash.get(GATHER_KEY, None)
    slowest = phase.gatherer.slowest() if phase is not None else None
    if slowest is not None:
        target, seconds, total = slowest
        terminalreporter.write_line(
            f"opscheck: gathered {len(phase.gatherer.spans)} target(s) in {total:.2f} s; "
            f"slowest {type(target).__name__} {target.name!r} {seconds:.2f} s"
        )
    skipped = config.stash.get(SKIP_FAILURE_KEY, 0)
    if skipped:
        terminalreporter.write_line(
            f"opscheck: {skipped} check(s) skipped and --no-skips is set: the run fails", red=True
        )


# --- fixtures every family uses ----------------------------------------------------------


@pytest.fixture(scope="session")
def inventory(pytestconfig) -> Inventory:
    """The run's inventory (validated; secrets registered for redaction)."""
    return pytestconfig.stash[INVENTORY_KEY]


@pytest.fixture(scope="session")
def incident_params(pytestconfig) -> dict[str, str]:
    """The run's --param NAME=VALUE values (incident-time parameters of adhoc checks)."""
    return pytestconfig.stash[PARAMS_KEY]


@pytest.fixture
def remember():
    """remember(key, value): keep a reading (a counter) in state.json for the next run.

    Travels as a user property, so it reaches the controller under xdist too.
    """
    check = running_check()

    def keep(key: str, value) -> None:
        check.user_properties.append((reporting.REMEMBER, {key: value}))

    return keep


@pytest.fixture(scope="session")
def state(pytestconfig) -> dict:
    """What the previous completed run left in reports/<env>/state.json ({} on a first run)."""
    return pytestconfig.stash[STATE_KEY]
