"""The pytest plugin opscheck installs: its options, and the decision to act.

Loaded through the `pytest11` entry point in every pytest run of the environment, it acts
only in an opscheck project: the rootdir's configuration names the checks folder
(`opscheck_checks = "checks"` under [tool.pytest.ini_options]) and the run collects from
it, or --env/--inventory is given. Then it registers opscheck.session, which holds the
hooks of an opscheck run; any other suite run with the same pytest is left alone and
imports none of opscheck's inventory, families or reports.
"""

from pathlib import Path

import pytest

from opscheck.core.gather import DEFAULT_WORKERS, GatherSpec
from opscheck.core.names import env_name
from opscheck.core.options import option_type

# --- options and configuration -------------------------------------------------------------


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(GatherSpec)


def _nonempty_path(text: str) -> str:
    if not text.strip():
        raise ValueError("empty: give a path")
    return text


def _at_least_one(text: str) -> int:
    if not text.strip().lstrip("-").isdigit() or int(text) < 1:
        raise ValueError("a whole number of runs, at least 1 (the run itself)")
    return int(text)


def pytest_addoption(parser):
    parser.addini("opscheck_checks", "opscheck project: the folder that holds the checks (e.g. checks)")
    group = parser.getgroup("opscheck")
    group.addoption(
        "--env",
        default=None,
        metavar="NAME",
        type=option_type(env_name),
        help="environment: inventories/NAME.yml (default $OPSCHECK_ENV or local)",
    )
    group.addoption(
        "--inventory",
        default=None,
        metavar="PATH",
        type=option_type(_nonempty_path),
        help="an inventory file anywhere; the report's environment is its 'environment'",
    )
    group.addoption(
        "--reports-dir",
        default=None,
        metavar="DIR",
        type=option_type(_nonempty_path),
        help="where runs write report.html, junit.xml, summary.json (default reports/)",
    )
    group.addoption(
        "--keep-runs",
        type=option_type(_at_least_one),
        default=30,
        metavar="N",
        help="runs kept per environment in the reports directory",
    )
    group.addoption(
        "--no-skips", action="store_true", help="a skipped check fails the run (exit 1): nothing may silently not run"
    )
    group.addoption(
        "--no-state", action="store_true", help="do not advance reports/<env>/state.json (windows 'since the last run')"
    )
    group.addoption(
        "--gather-workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help="threads that read the selected targets at once after collection (0: each check reads when it runs)",
    )
    group.addoption(
        "--metrics-file",
        default=None,
        metavar="PATH",
        help="also write the results as Prometheus metrics to PATH (*.prom, for node_exporter's textfile collector)",
    )
    group.addoption(
        "--pushgateway",
        default=None,
        metavar="URL",
        help="also push the results to this Prometheus Pushgateway (job opscheck, environment <env>)",
    )
    group.addoption(
        "--pushgateway-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds for the Pushgateway to connect and to answer (default 10)",
    )
    group.addoption(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="incident-time parameter for adhoc checks, e.g. --param workflow_id=42",
    )


def _active(config) -> bool:
    """Whether this run is an opscheck run (see the module's docstring)."""
    if config.getoption("env") is not None or config.getoption("inventory") is not None:
        return True
    folder = config.getini("opscheck_checks")
    if not folder:
        return False
    checks = (config.rootpath / folder).resolve()
    args = [Path(a.split("::")[0]) for a in config.args]
    paths = [(config.invocation_params.dir / a).resolve() for a in args] or [checks]
    return all(checks == p or checks in p.parents for p in paths)


def run_families(config) -> list[str]:
    """The families this run checks: those its inventory has targets for; every family when
    pytest runs without opscheck (a project's own tests, --help)."""
    from opscheck.families import FAMILIES  # the registry only: no family module

    if config.pluginmanager.has_plugin("opscheck-session"):
        from opscheck.core.model import INVENTORY_KEY

        if INVENTORY_KEY in config.stash:
            return config.stash[INVENTORY_KEY].families()
    return list(FAMILIES)


@pytest.hookimpl(trylast=True)  # after opscheck's pytest_configure has read the inventory
def load_fixture_modules(config) -> None:
    """A project's pytest_configure (its conftest.py): load the project's fixture modules
    (fixtures/<stem>.py) of the families this run checks."""
    from opscheck.families import fixture_modules

    for module in fixture_modules(run_families(config)):
        config.pluginmanager.import_plugin(module)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if not _active(config):
        return
    from opscheck import session  # only now: an opscheck run (the module's docstring says why)

    config.pluginmanager.register(session, "opscheck-session")
    session.start(config)
