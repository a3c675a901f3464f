"""Logs family against a private Docker engine and a log file on this host: the runbooks'
signatures (TASK_PANIC on stderr, the NOTIFY listener line, connection disconnects), a quiet
container missing its required lines, 100 MB of logs behind a byte cap, windows since the
last run, and a host file read incrementally."""

import json
import subprocess
import time

import pytest

from tests.conftest import run_suite
from tests.servers_docker import docker_server  # noqa: F401 - the session's engine

# starting a private engine and a dozen containers is charged to the first test
pytestmark = pytest.mark.timeout(240)

LISTENING = "Listening for PostgreSQL NOTIFY events on channel 'new_event'"
FILLER = "x" * 1000
CONTAINERS = {
    "logger": (
        f'echo "{LISTENING}"; echo "INFO scheduler: cron trigger fired for workflow 42"; '
        'echo "TASK_PANIC: task 7 panicked: index out of range" >&2; '
        'echo "WARN LISTENER connection to postgres lost: disconnect"; '
        'echo "ERROR failed to reach redis" >&2; sleep 100000',
        {},
    ),
    "quiet": (
        'echo "starting up"; i=0; while [ $i -lt 20 ]; do echo "ERROR request $i failed"; '
        "i=$((i+1)); done; sleep 100000",
        {},
    ),
    # 100 MB of logs after the listener line: a byte cap must bound the read
    "biglog": (f'echo "{LISTENING}"; yes "{FILLER}" | head -c 100000000; echo "tail line"; sleep 100000', {}),
}


@pytest.fixture(scope="module")
def log_containers(docker_server):  # noqa: F811
    docker_server.run_many(CONTAINERS)
    api = docker_server.client.api
    for name, last, tail in (
        ("logger", b"redis", "all"),
        ("logger", b"disconnect", "all"),
        ("quiet", b"request 19", "all"),
        ("biglog", b"tail line", 1),
    ):
        docker_server.wait(name, lambda a, n=name, w=last, t=tail: w in api.logs(n, tail=t), 30, "its log lines")
    time.sleep(1.1)  # a run's start (whole seconds) is later than every line above
    return docker_server


def _patterns(required=True):
    return {
        "forbidden": [
            {"name": "task_panic", "pattern": "TASK_PANIC", "severity": "p0"},
            {"name": "polling_aborted", "pattern": "POLLING_FALLBACK_BATCH_ABORTED"},
            {"name": "disconnect", "pattern": "disconnect", "ignore_case": True, "window": "1h"},
        ],
        "required": [
            {
                "name": "notify_listener",
                "pattern": "Listening for PostgreSQL NOTIFY events on channel 'new_event'",
                "severity": "p0",
                "schedule": ["smoke"],
            },
            {
                "name": "scheduler_alive",
                "pattern": "scheduler|cron.*trigger|schedule.*task",
                "ignore_case": True,
                "window": "1h",
            },
        ]
        if required
        else [],
        "error_rate": {"pattern": "(?i)\\berror\\b", "max_per_hour": 10},
    }


# correlation checks over the capped window of the 100 MB log (benchmarks/log_correlation.py
# measures their time and memory on the whole window)
BIG_CORRELATIONS = {
    "sequences": [{"name": "tail_answered", "first": "tail line", "then": "never written", "within": "1s"}],
    "ratios": [{"name": "filler_share", "matching": "^x+$", "min_pct": 99}],
    "forbidden": [{"name": "json_errors", "fields": [{"path": "level", "op": "==", "value": "error"}]}],
}


def file_logs(environment: str, name: str, log_file, **entry) -> dict:
    """An inventory with one log file on this machine (`logs: [{name, host, file, **entry}]`)."""
    return {
        "environment": environment,
        "hosts": [{"name": "here", "spec": "local://"}],
        "logs": [{"name": name, "host": "here", "file": str(log_file), **entry}],
    }


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("logfile") / "app.log"
    path.write_text("INFO started\nERROR TASK_PANIC in worker\nINFO scheduler tick\n")
    return path


@pytest.fixture(scope="module")
def runs(log_containers, log_file, tmp_path_factory):
    """Two runs sharing state: the second reads only what is new since the first."""
    tmp = tmp_path_factory.mktemp("logs")
    inventory = {
        "environment": "selftest-logs",
        "hosts": [{"name": "here", "spec": "local://"}],
        "docker": [{"name": "engine", "engine": log_containers.url}],
        "logs": [
            {"name": "logger", "docker": "engine", "container": "logger", **_patterns()},
            {"name": "quiet", "docker": "engine", "container": "quiet", **_patterns()},
            {
                "name": "biglog",
                "docker": "engine",
                "container": "biglog",
                "max_bytes": 1048576,
                "required": [
                    {"name": "notify_listener", "pattern": "Listening for PostgreSQL NOTIFY", "window": "start"}
                ],
                **BIG_CORRELATIONS,
            },
            {
                "name": "app-file",
                "host": "here",
                "file": str(log_file),
                "forbidden": [{"name": "task_panic", "pattern": "TASK_PANIC"}],
                "required": [{"name": "scheduler_alive", "pattern": "scheduler"}],
            },
            {"name": "small-cap", "host": "here", "file": str(log_file), "max_bytes": 1024},
        ],
    }
    first = run_suite(inventory, tmp, "-m", "logs")
    with log_file.open("a") as f:
        f.write("INFO scheduler tick\n" + "INFO all quiet\n" * 100)
    time.sleep(1.1)
    second = run_suite(inventory, tmp, "-m", "logs")
    return first, second


def test_forbidden_signature_fails_with_its_lines(runs):
    first, _ = runs
    # TASK_PANIC is written to stderr: the runbook's `docker logs | grep` (no 2>&1) misses it
    first.assert_failed(
        "test_log_forbidden_pattern_absent[logger:task_panic]",
        "1 line(s) matching 'TASK_PANIC'",
        "> limit 0",
        "task 7 panicked",
    )
    first.assert_failed("test_log_forbidden_pattern_absent[logger:disconnect]", "connection to postgres lost")
    first.assert_passed(
        "test_log_forbidden_pattern_absent[logger:polling_aborted]",
        "test_log_forbidden_pattern_absent[quiet:task_panic]",
    )


def test_required_line_present_or_missing(runs):
    first, _ = runs
    first.assert_passed(
        "test_log_required_pattern_present[logger:notify_listener]",
        "test_log_required_pattern_present[logger:scheduler_alive]",
    )
    first.assert_failed(
        "test_log_required_pattern_present[quiet:notify_listener]", "0 line(s) matching", "expected at least 1"
    )
    first.assert_failed("test_log_required_pattern_present[quiet:scheduler_alive]", "0 line(s) matching")


def test_error_rate(runs):
    first, _ = runs
    first.assert_passed("test_log_error_rate_below_limit[logger:errors]")
    first.assert_failed(
        "test_log_error_rate_below_limit[quiet:errors]",
        "20.0 error line(s) per hour",
        "> limit 10/h",
        "ERROR request 19 failed",
    )


def test_huge_log_is_capped_and_says_so(runs):
    first, _ = runs
    # the listener line is 100 MB back: outside the 1 MiB kept, and the result says why
    first.assert_failed(
        "test_log_required_pattern_present[biglog:notify_listener]",
        "0 line(s) matching",
        "window truncated",
        "max_bytes 1,048,576",
    )
    first.assert_failed("test_log_window_complete[biglog]", "max_bytes 1,048,576")
    first.assert_passed("test_log_window_complete[logger]", "test_log_window_complete[quiet]")
    # what each check looked at travels with its result, passed or failed
    assert "lines kept" in first.checks["test_log_window_complete[logger]"]["log_window"]
    assert "truncated: more than max_bytes" in first.checks["test_log_window_complete[biglog]"]["log_window"]
    duration = first.checks["test_log_window_complete[biglog]"]["duration"]
    assert duration < 10, f"reading the capped window of 100 MB of logs took {duration} s"


def test_correlations_on_the_huge_log(runs):
    first, _ = runs
    first.assert_failed("test_log_sequence_completed[biglog:tail_answered]", "1 of 1 line(s) matching 'tail line'")
    first.assert_passed(
        "test_log_ratio_within_limit[biglog:filler_share]", "test_log_forbidden_pattern_absent[biglog:json_errors]"
    )
    for check in ("test_log_sequence_completed", "test_log_ratio_within_limit"):
        name = next(c for c in first.checks if c.startswith(f"{check}[biglog:"))
        assert first.checks[name]["duration"] < 10, first.checks[name]


def test_missing_engine_stops_the_run(tmp_path):
    inventory = {
        "environment": "selftest-logs-bad",
        "logs": [{"name": "nowhere", "docker": "missing-engine", "container": "logger", **_patterns(required=False)}],
    }
    result = run_suite(inventory, tmp_path, "-m", "logs")
    assert result.rc == 4 and not result.summary, result.output
    assert "logs 'nowhere': docker: 'missing-engine' is not a target of the docker section" in result.output


def test_second_run_reads_only_since_the_last_run(runs):
    first, second = runs
    # default window: since the last run; the panic was before it
    second.assert_passed(
        "test_log_forbidden_pattern_absent[logger:task_panic]", "test_log_error_rate_below_limit[quiet:errors]"
    )
    # explicit windows (1h, since start) still see the older lines
    second.assert_failed("test_log_forbidden_pattern_absent[logger:disconnect]")
    second.assert_passed("test_log_required_pattern_present[logger:notify_listener]")


def test_host_file_read_incrementally(runs):
    first, second = runs
    first.assert_failed("test_log_forbidden_pattern_absent[app-file:task_panic]", "ERROR TASK_PANIC in worker")
    first.assert_passed("test_log_required_pattern_present[app-file:scheduler_alive]")
    # the second run reads only the lines appended since: no panic among them, a scheduler tick
    second.assert_passed(
        "test_log_forbidden_pattern_absent[app-file:task_panic]",
        "test_log_required_pattern_present[app-file:scheduler_alive]",
    )
    state = json.loads((second.reports_dir / "selftest-logs" / "state.json").read_text())
    assert state["logs:app-file:file"]["offset"] > 0


def test_host_file_over_the_cap_says_so(runs):
    first, second = runs
    first.assert_passed("test_log_window_complete[small-cap]")
    # 1,500 new bytes with a 1,024-byte cap: the oldest are not read, and the check says so
    second.assert_failed("test_log_window_complete[small-cap]", "not read", "max_bytes 1,024")


def test_bad_log_and_docker_sections_stop_the_run(tmp_path):
    """A log source that names neither a container nor a file, a bad regex, a bad window, a
    service without a Compose project: a configuration error (exit 4) before any check."""
    inventory = {
        "environment": "selftest-log-config",
        "docker": [{"name": "d", "containers": [{"name": "api", "service": "api"}]}],
        "logs": [
            {"name": "neither"},
            {
                "name": "bad-regex",
                "docker": "d",
                "container": "x",
                "forbidden": [{"name": "p", "pattern": "(unclosed"}],
            },
            {
                "name": "bad-window",
                "host": "h",
                "file": "/var/log/x",
                "required": [{"name": "p", "pattern": "x", "window": "since lunch"}],
            },
        ],
    }
    result = run_suite(inventory, tmp_path)
    assert result.rc == 4, result.output
    for fragment in (
        "logs[0]: Value error, give either docker + container (or service), or host + file",
        "logs[1].forbidden[0].pattern: Value error, invalid regular expression",
        "logs[2].required[0].window: Value error, window:",
        "docker[0]: Value error, containers with `service` need compose_project",
    ):
        assert fragment in result.output, result.output


def test_incident_pattern_takes_its_value_from_the_command_line(tmp_path):
    """`{trigger_id}` makes a pattern adhoc: deselected without --param, filled in (literally) with it."""
    log_file = tmp_path / "event-processor.log"
    log_file.write_text(
        "INFO trigger_id=7 processed\nERROR trigger_id=42 action failed: timeout\n"
        "ERROR trigger_id=42 action failed: 503\nERROR trigger_id=420 unrelated\n"
    )
    inventory = {
        "environment": "selftest-log-incident",
        "hosts": [{"name": "here", "spec": "local://"}],
        "logs": [
            {
                "name": "processor",
                "host": "here",
                "file": str(log_file),
                "forbidden": [
                    {
                        "name": "trigger-errors",
                        "pattern": r"ERROR trigger_id={trigger_id}\b",
                        "schedule": ["adhoc"],
                        "severity": "p2",
                    }
                ],
            }
        ],
    }
    check = "test_log_forbidden_pattern_absent[processor:trigger-errors]"
    without = run_suite(inventory, tmp_path / "none", "-m", "logs")
    assert check not in without.checks
    failing = run_suite(inventory, tmp_path / "42", "-m", "logs", "--param", "trigger_id=42")
    failing.assert_failed(check, "2 line(s) matching", "action failed: 503")
    passing = run_suite(inventory, tmp_path / "7", "-m", "logs", "--param", "trigger_id=7")
    passing.assert_passed(check)


def _journal(directory, unit: str, entries: list[tuple[float, str]]) -> None:
    """A real journal file: journal export format written by systemd-journal-remote."""
    now = time.time()
    export = []
    for i, (age_s, message) in enumerate(entries):
        export += [
            f"__CURSOR=s=opscheck;i={i}",
            f"__REALTIME_TIMESTAMP={int((now - age_s) * 1e6)}",
            f"__MONOTONIC_TIMESTAMP={1000 + i}",
            "_BOOT_ID=0123456789abcdef0123456789abcdef",
            f"_SYSTEMD_UNIT={unit}",
            "_HOSTNAME=selftest",
            "SYSLOG_IDENTIFIER=app",
            "PRIORITY=6",
            f"MESSAGE={message}",
            "",
        ]
    (directory / "export").write_text("\n".join(export) + "\n")
    subprocess.run(
        ["/lib/systemd/systemd-journal-remote", f"--output={directory}/remote.journal", str(directory / "export")],
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_journald_unit_windows(tmp_path):
    journal = tmp_path / "journal"
    journal.mkdir()
    _journal(
        journal,
        "event-processor.service",
        [
            (7200, "TASK_PANIC two hours ago, before the window"),
            (600, "Listening for PostgreSQL NOTIFY events on channel 'new_event'"),
            (60, "ERROR TASK_PANIC in worker 3"),
        ],
    )
    source = {"name": "processor", "host": "here", "unit": "event-processor.service", "journal_dir": str(journal)}
    inventory = {
        "environment": "selftest-journal",
        "hosts": [{"name": "here", "spec": "local://"}],
        "logs": [
            {
                **source,
                "forbidden": [{"name": "panic", "pattern": "TASK_PANIC", "window": "1h"}],
                "required": [
                    {"name": "listener", "pattern": "Listening for PostgreSQL NOTIFY", "window": "1h"},
                    {"name": "recent-listener", "pattern": "Listening for PostgreSQL NOTIFY", "window": "5m"},
                ],
            },
            {
                **source,
                "name": "other-unit",
                "unit": "nothing.service",
                "required": [{"name": "alive", "pattern": ".", "window": "24h"}],
            },
        ],
    }
    result = run_suite(inventory, tmp_path / "run", "-m", "logs")
    result.assert_failed(
        "test_log_forbidden_pattern_absent[processor:panic]", "1 line(s) matching", "ERROR TASK_PANIC in worker 3"
    )
    result.assert_passed("test_log_required_pattern_present[processor:listener]")
    result.assert_failed("test_log_required_pattern_present[processor:recent-listener]", "0 line(s) matching")
    result.assert_failed("test_log_required_pattern_present[other-unit:alive]", "journal of nothing.service")


def test_forbidden_lines_can_be_left_unshown(tmp_path):
    """`show_lines: false` (a secret scan): the failure gives the count, never the matching line."""
    log_file = tmp_path / "aggregator.log"
    log_file.write_text(
        "INFO started\nDEBUG config api_key=sk_live_Leaked123\nINFO tick\nDEBUG config password=hunter2-leaked\n"
    )
    pattern = r"(?i:(password|api[_-]?key)\s*[:=])"
    forbidden = [
        {"name": "secrets", "pattern": pattern, "show_lines": False},
        {"name": "secrets-shown", "pattern": pattern},
        {"name": "panic", "pattern": "PANIC", "show_lines": False},
    ]
    inventory = file_logs("selftest-log-unshown", "agg", log_file, forbidden=forbidden)
    result = run_suite(inventory, tmp_path / "run", "-m", "logs")
    message = result.assert_failed(
        "test_log_forbidden_pattern_absent[agg:secrets]", "2 line(s) matching", "> limit 0", "lines not shown"
    )
    assert "Leaked123" not in message and "hunter2" not in message
    result.assert_failed("test_log_forbidden_pattern_absent[agg:secrets-shown]", "last: ", "api_key=")
    result.assert_passed("test_log_forbidden_pattern_absent[agg:panic]")


def test_a_json_line_nested_past_the_recursion_limit_is_not_an_object(tmp_path):
    """A log line of `{"a": ` and 100,000 `[` (json raised RecursionError: a traceback, not the
    check's verdict): it is not a JSON object, and the real error line after it still counts."""
    log_file = tmp_path / "app.log"
    log_file.write_text('INFO started\n{"a": ' + "[" * 100_000 + '\n{"level": "error", "msg": "boom"}\n')
    json_errors = {"name": "json_errors", "fields": [{"path": "level", "op": "==", "value": "error"}]}
    inventory = file_logs("selftest-log-deep-json", "app", log_file, forbidden=[json_errors])
    result = run_suite(inventory, tmp_path / "run", "-m", "logs")
    result.assert_failed("test_log_forbidden_pattern_absent[app:json_errors]", "1 line(s) matching")
