"""The order checks run in: a check whose target is still being read steps aside for the
checks after it whose targets are read, so one slow target holds back its own checks only
(and the run ends soon after its reads do); with every target read, the order is pytest's.

The order is read from junit.xml, which lists the checks as they ran.
"""

import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from opscheck.core.gather import Gatherer, Job
from tests.conftest import run_suite
from tests.servers import HttpServer, Route

SLOW_SECONDS = 2.0


def ran(result) -> list[str]:
    """The checks' names (with their ids) in the order they ran."""
    junit = result.reports_dir / "selftest-order" / "latest" / "junit.xml"
    return [case.get("name") for case in ET.parse(junit).getroot().iter("testcase")]


def inventory(server, slow_path: str) -> dict:
    return {
        "environment": "selftest-order",
        "http": [  # the slow endpoint first: pytest alone would run its checks first
            {"name": "slow", "url": server.url(slow_path), "max_latency_ms": 10_000},
            {"name": "fast", "url": server.url("/fast")},
        ],
    }


def test_a_slow_target_runs_its_checks_after_the_others(tmp_path):
    routes = {"/slow": Route(body="ok", delay=SLOW_SECONDS), "/fast": Route(body="ok")}
    with HttpServer(routes) as server:
        result = run_suite(inventory(server, "/slow"), tmp_path, "-m", "daily")
    assert result.rc == 0, result.output
    order = ran(result)
    slow = [i for i, name in enumerate(order) if name.endswith("[slow]")]
    fast = [i for i, name in enumerate(order) if name.endswith("[fast]")]
    assert slow and fast, order
    assert max(fast) < min(slow), f"a fast check ran after a slow one: {order}"
    assert all(c["outcome"] == "passed" for c in result.checks.values()), "the slow checks waited for their reads"


def test_a_targets_checks_keep_pytests_order(tmp_path):
    routes = {"/quick": Route(body="ok"), "/fast": Route(body="ok")}
    with HttpServer(routes) as server:
        collected = run_suite(inventory(server, "/quick"), tmp_path / "collect", "-m", "daily", "--collect-only", "-q")
        result = run_suite(inventory(server, "/quick"), tmp_path / "run", "-m", "daily")
    assert result.rc == 0, result.output
    ids = [line.split("::")[-1] for line in collected.output.splitlines() if "::" in line]
    assert ids and set(ran(result)) == set(ids)
    # a target read a moment later than the next one may step aside: compare each target's own order
    for name in ("slow", "fast"):
        assert [i for i in ran(result) if i.endswith(f"[{name}]")] == [i for i in ids if i.endswith(f"[{name}]")]


def test_a_targets_gather_counts_from_when_its_family_was_asked():
    """A family may prepare in its gather hook (docker imports its SDK there): the run's
    "slowest target" figure and the wait deadlines count that time too, and a target's reads
    are done once its jobs are."""

    class Target:
        name = "t"

    target, gatherer = Target(), Gatherer(2)
    asked = time.monotonic() - 3.0  # as if the hook had spent 3 s preparing
    try:
        assert gatherer.start([Job(target, lambda: time.sleep(0.05))], since=asked) == 1
        assert gatherer.wait(target, 10)
        assert gatherer.done(target)
        _, seconds, _ = gatherer.slowest()
        assert seconds >= 3.0, seconds
        assert gatherer.deadline(target, 10) == asked + 10
    finally:
        gatherer.close()


# pytest's log capture walks logging's loggers on the main thread as every check phase starts;
# a gather thread's import adds loggers meanwhile (a healthy check failed so in CI)
LOGGER_RACE = """
import logging, sys, threading, time
from _pytest.logging import LogCaptureHandler, catching_logs
from opscheck.core.gather import guard_logger_table
if sys.argv[1] == "guarded":
    guard_logger_table()
sys.setswitchinterval(1e-6)
for i in range(300):
    logging.getLogger(f"imported.{i}")
stop = threading.Event()
def gather_imports():
    n = 0
    while not stop.is_set():
        logging.getLogger(f"imported.lazily.{n}")
        n += 1
        time.sleep(0.0005)
threading.Thread(target=gather_imports, daemon=True).start()
deadline = time.monotonic() + 2
try:
    while time.monotonic() < deadline:
        with catching_logs(LogCaptureHandler()):
            pass
finally:
    stop.set()
"""


@pytest.mark.parametrize("variant", ["unguarded", "guarded"])
def test_log_capture_meets_loggers_made_by_gather_threads(tmp_path, variant):
    script = tmp_path / "race.py"
    script.write_text(LOGGER_RACE)
    proc = subprocess.run([sys.executable, str(script), variant], capture_output=True, text=True, timeout=60)
    if variant == "unguarded" and PYTEST_WALKS_LOGGERS:  # the race is real, and this test can see it
        assert proc.returncode == 1 and "dictionary changed size during iteration" in proc.stderr, proc.stderr
    else:  # guarded; or a pytest (before 9.1) that does not walk the table
        assert proc.returncode == 0, proc.stderr


def _walks_loggers() -> bool:
    import inspect

    from _pytest.logging import catching_logs

    return "loggerDict" in inspect.getsource(catching_logs.__enter__)


PYTEST_WALKS_LOGGERS = _walks_loggers()
