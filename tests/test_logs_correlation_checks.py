"""Log correlation against real containers and real log files: a CreateTask left without its
"completed successfully", a circuit breaker that stayed OPEN (paired by trigger), caddy's
5xx share of JSON access-log lines, completions under 95 % of ExecuteTask lines, JSON lines
judged by field (level == "error", active_tasks > 100), and a cron schedule whose runs left
no line at their expected times (with the workflow id and schedule from --param)."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import run_suite
from tests.servers_docker import docker_server  # noqa: F401 - the session's engine

pytestmark = pytest.mark.timeout(240)

WITHIN_S = 2


def _lines(count: int, line: str) -> str:
    return f"i=0; while [ $i -lt {count} ]; do echo {line}; i=$((i+1)); done; "


def _access(count: int, status: int) -> str:
    return _lines(count, f'\'{{"logger":"http.log.access","msg":"handled request","status":{status}}}\'')


CONTAINERS = {
    "corr-ok": (
        'echo "CreateTask id=1 workflow=wf-42"; echo "✅ task 1 completed successfully"; '
        'echo "Circuit breaker OPEN trigger=t1"; sleep 1; echo "Circuit breaker transitioned to HALF_OPEN trigger=t1"; '
        + _access(199, 200)
        + _access(1, 503)
        + _lines(20, '"ExecuteTask $i"')
        + _lines(20, '"✅ task $i completed"')
        + 'echo \'{"level":"info","msg":"tick","active_tasks":12}\'; echo corr-done; sleep 100000',
        {},
    ),
    "corr-bad": (
        'echo "CreateTask id=1"; echo "✅ task 1 completed successfully"; echo "CreateTask id=2"; '
        'echo "Circuit breaker OPEN trigger=t1"; echo "Circuit breaker OPEN trigger=t2"; '
        'echo "Circuit breaker transitioned to HALF_OPEN trigger=t2"; '
        + _access(190, 200)
        + _access(10, 502)
        + _lines(20, '"ExecuteTask $i"')
        + _lines(15, '"✅ task $i completed"')
        + 'echo \'{"level":"error","msg":"db down"}\'; '
        + 'echo \'INFO {"level":"info","msg":"tick","active_tasks":140}\'; echo corr-done; sleep 100000',
        {},
    ),
}

CORRELATIONS = {
    "forbidden": [
        {"name": "error_level", "fields": [{"path": "level", "op": "==", "value": "error"}]},
        {
            "name": "active_tasks",
            "pattern": "active_tasks",
            "fields": [{"path": "active_tasks", "op": ">", "value": 100}],
        },
    ],
    "sequences": [
        {
            "name": "create_task",
            "first": r"CreateTask id=(?P<task>\d+)",
            "then": r"✅ task (?P<task>\d+) completed successfully",
            "key": "task",
            "within": f"{WITHIN_S}s",
        },
        {
            "name": "breaker_half_open",
            "first": r"Circuit breaker OPEN trigger=(?P<trigger>\w+)",
            "then": r"transitioned to HALF_OPEN trigger=(?P<trigger>\w+)",
            "key": "trigger",
            "within": f"{WITHIN_S}s",
        },
        # without a key any HALF_OPEN line follows every OPEN before it
        {"name": "breaker_any", "first": "Circuit breaker OPEN", "then": "HALF_OPEN", "within": f"{WITHIN_S}s"},
        # an hour to complete: CreateTask id=2 is still waiting, not late
        {"name": "create_task_1h", "first": "CreateTask", "then": "completed successfully", "within": "1h"},
    ],
    "ratios": [
        {
            "name": "caddy_5xx",
            "matching": {"pattern": '"status"', "fields": [{"path": "status", "op": ">=", "value": 500}]},
            "of": {"fields": [{"path": "logger", "op": "==", "value": "http.log.access"}]},
            "max_pct": 1,
        },
        {"name": "tasks_completed", "matching": r"✅ task \d+ completed$", "of": "ExecuteTask", "min_pct": 95},
        {"name": "nothing_to_judge", "matching": "x", "of": "NO_SUCH_LINE", "max_pct": 50},
    ],
}


@pytest.fixture(scope="module")
def correlated(docker_server, tmp_path_factory):  # noqa: F811
    docker_server.run_many(CONTAINERS)
    api = docker_server.client.api
    for name in CONTAINERS:
        docker_server.wait(name, lambda a, n=name: b"corr-done" in api.logs(n), 30, "its log lines")
    time.sleep(WITHIN_S + 1)  # the unfollowed lines are now older than `within`
    inventory = {
        "environment": "selftest-log-correlation",
        "docker": [{"name": "engine", "engine": docker_server.url}],
        "logs": [{"name": n, "docker": "engine", "container": n, **CORRELATIONS} for n in CONTAINERS],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("correlation"), "-m", "logs")


def test_followed_by_within(correlated):
    correlated.assert_passed(
        "test_log_sequence_completed[corr-ok:create_task]",
        "test_log_sequence_completed[corr-ok:breaker_half_open]",
        "test_log_sequence_completed[corr-bad:breaker_any]",
        "test_log_sequence_completed[corr-bad:create_task_1h]",
    )
    message = correlated.assert_failed(
        "test_log_sequence_completed[corr-bad:create_task]",
        "1 of 2 line(s) matching 'CreateTask id=(?P<task>\\\\d+)'",
        "not followed by a line matching",
        "with the same task within 2s",
        " UTC CreateTask id=2",
    )
    assert "CreateTask id=1" not in message
    message = correlated.assert_failed(
        "test_log_sequence_completed[corr-bad:breaker_half_open]", "1 of 2 line(s)", "Circuit breaker OPEN trigger=t1"
    )
    assert "trigger=t2" not in message


def test_ratio(correlated):
    correlated.assert_passed(
        "test_log_ratio_within_limit[corr-ok:caddy_5xx]", "test_log_ratio_within_limit[corr-ok:tasks_completed]"
    )
    correlated.assert_failed(
        "test_log_ratio_within_limit[corr-bad:caddy_5xx]",
        "5 % of 200 line(s) matching logger == 'http.log.access'",
        "status >= 500 (10) > limit 1 %",
        '"status":502',
    )
    correlated.assert_failed(
        "test_log_ratio_within_limit[corr-bad:tasks_completed]",
        "75 % of 20 line(s) matching 'ExecuteTask'",
        "< minimum 95 %",
    )
    correlated.assert_failed(
        "test_log_ratio_within_limit[corr-ok:nothing_to_judge]", "0 line(s) matching 'NO_SUCH_LINE'", "min_total 1"
    )


def test_structured_lines(correlated):
    correlated.assert_passed(
        "test_log_forbidden_pattern_absent[corr-ok:error_level]",
        "test_log_forbidden_pattern_absent[corr-ok:active_tasks]",
    )
    correlated.assert_failed(
        "test_log_forbidden_pattern_absent[corr-bad:error_level]", "1 line(s) matching level == 'error'", "db down"
    )
    # a prefix before the JSON object is allowed
    correlated.assert_failed(
        "test_log_forbidden_pattern_absent[corr-bad:active_tasks]",
        "matching 'active_tasks' and active_tasks > 100",
        '"active_tasks":140',
    )


def _slot(now: datetime, back: int) -> datetime:
    """The start of the 10-minute slot `back` slots before the current one."""
    return now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0) - timedelta(minutes=10 * back)


def test_lines_at_expected_times(tmp_path):
    """A workflow on `*/10 * * * *`: its trigger line 30 s after each run, two runs missing."""
    now = datetime.now(UTC)
    runs = [_slot(now, back) for back in range(8, -1, -1)]  # the last 80 minutes and this slot, oldest first
    missing = {runs[3], runs[4]}
    stamp = "%Y-%m-%dT%H:%M:%S.000Z"
    healthy, broken = tmp_path / "healthy.log", tmp_path / "broken.log"
    healthy.write_text(
        "".join(f"{(t + timedelta(seconds=30)).strftime(stamp)} INFO trigger fired for workflow wf-42\n" for t in runs)
    )
    broken.write_text(
        "".join(
            f"{(t + timedelta(seconds=30)).strftime(stamp)} INFO trigger fired for workflow wf-42\n"
            for t in runs
            if t not in missing
        )
        # JSON lines with an epoch `ts`: an OPEN without its HALF_OPEN
        + f'{{"ts": {runs[-3].timestamp() + 40}, "msg": "Circuit breaker OPEN"}}\n'
    )
    entry = {
        "name": "wf-42",
        "cron": "*/10 * * * *",
        "matching": {"pattern": "trigger fired for workflow wf-42"},
        "tolerance": "5m",
        "window": "2h",
    }
    adhoc = {
        "name": "workflow",
        "cron": "{cron}",
        "matching": "trigger fired for workflow {workflow_id}",
        "not_before": "{start_at}",
        "window": "24h",
        "schedule": ["adhoc"],
        "severity": "p2",
    }
    breaker = {"name": "breaker", "first": "Circuit breaker OPEN", "then": "HALF_OPEN", "within": "90s"}
    inventory = {
        "environment": "selftest-log-schedule",
        "hosts": [{"name": "here", "spec": "local://"}],
        "logs": [
            {"name": "healthy", "host": "here", "file": str(healthy), "expected_at": [entry, adhoc]},
            {"name": "broken", "host": "here", "file": str(broken), "expected_at": [entry], "sequences": [breaker]},
        ],
    }
    result = run_suite(inventory, tmp_path / "daily", "-m", "logs")
    result.assert_passed("test_log_lines_at_expected_times[healthy:wf-42]")
    assert "test_log_lines_at_expected_times[healthy:workflow]" not in result.checks  # adhoc: no --param
    result.assert_failed(
        "test_log_lines_at_expected_times[broken:wf-42]",
        "2 of ",
        "expected time(s) of cron '*/10 * * * *' (UTC)",
        "without a line matching 'trigger fired for workflow wf-42' within 5m",
        *(f"{t:%Y-%m-%d %H:%M} UTC" for t in sorted(missing)),
    )
    result.assert_failed("test_log_sequence_completed[broken:breaker]", "1 of 1 line(s)", "Circuit breaker OPEN")

    start_at = f"{runs[0]:%Y-%m-%dT%H:%M:%SZ}"
    params = ["--param", "cron=*/10 * * * *", "--param", f"start_at={start_at}", "--no-state"]
    found = run_suite(inventory, tmp_path / "wf42", "-m", "logs", "--param", "workflow_id=wf-42", *params)
    found.assert_passed("test_log_lines_at_expected_times[healthy:workflow]")
    other = run_suite(inventory, tmp_path / "wf7", "-m", "logs", "--param", "workflow_id=wf-7", *params)
    other.assert_failed(
        "test_log_lines_at_expected_times[healthy:workflow]",
        "expected time(s) of cron '*/10 * * * *'",
        "'trigger fired for workflow wf\\\\-7'",
        "0 matching line(s), the last at none",
    )
    bad = run_suite(
        inventory,
        tmp_path / "badcron",
        "-m",
        "logs",
        "--param",
        "workflow_id=wf-42",
        "--param",
        "cron=every hour",
        "--param",
        f"start_at={start_at}",
    )
    bad.assert_failed("test_log_lines_at_expected_times[healthy:workflow]", "'every hour' is not a cron expression")


def test_bad_correlations_stop_the_run(tmp_path):
    source = {"name": "s", "host": "here", "file": "/var/log/x"}
    inventory = {
        "environment": "selftest-log-correlation-config",
        "hosts": [{"name": "here", "spec": "local://"}],
        "logs": [
            {**source, "name": "a", "expected_at": [{"name": "x", "cron": "every hour", "matching": "x"}]},
            {**source, "name": "b", "ratios": [{"name": "x", "matching": "x"}]},
            {**source, "name": "c", "sequences": [{"name": "x", "first": {"ignore_case": True}, "then": "y"}]},
            {**source, "name": "d", "forbidden": [{"name": "x", "fields": [{"path": "a[", "op": "=="}]}]},
            {**source, "name": "e", "sequences": [{"name": "x", "first": "{trigger_id}", "then": "y"}]},
            {
                **source,
                "name": "f",
                "expected_at": [{"name": "x", "cron": "* * * * *", "matching": "x", "timezone": "Mars"}],
            },
        ],
    }
    result = run_suite(inventory, tmp_path)
    assert result.rc == 4, result.output
    for fragment in (
        "logs[0].expected_at[0].cron: Value error, not a cron expression",
        "logs[1].ratios[0]: Value error, give max_pct or min_pct",
        "logs[2].sequences[0].first: Value error, give a pattern, or fields",
        "logs[3].forbidden[0].fields[0].path: Value error, invalid JMESPath expression",
        "logs[4].sequences[0]: Value error, {trigger_id} needs schedule [adhoc]",
        "logs[5].expected_at[0].timezone: Value error, not an IANA time zone",
    ):
        assert fragment in result.output, result.output
