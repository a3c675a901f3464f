"""commands family on real places: this machine (local://), a real sshd (ssh://), a busybox
container on a private Docker engine, and a unix-socket REPL the test starts (Ava's storage
REPL protocol), reached directly and through socat over ssh.

Each command passes where its conditions hold and fails for the right reason: exit code,
timeout, output, a JSON field, a dead host or socket (one failure, then "blocked:"); argv is
never parsed by a shell; --param values are data; output shown is scrubbed; write commands
for the REPL are refused when the inventory loads and never reach the server.
"""

import os

import pytest

from tests.conftest import run_suite
from tests.servers import closed_port
from tests.servers_commands import ReplServer
from tests.servers_docker import docker_server  # noqa: F401 - the session's engine
from tests.servers_ssh import SshServer

pytestmark = pytest.mark.timeout(240)  # the private engine's start is charged to the first test
MARKER = "/tmp/opscheck-commands-pwned"
KEYS = {
    "t:a:wf-1": '{"trigger": {"cron": "*/5 * * * *"}}',
    "t:a:wf-2": '{"trigger": {"block": 100}}',
    "t:c:wf-0": "{}",
}


@pytest.fixture(scope="module")
def repl():
    with ReplServer(KEYS) as server:
        yield server


@pytest.fixture(scope="module")
def sshd():
    with SshServer() as server:
        yield server


@pytest.fixture(scope="module")
def app(docker_server):  # noqa: F811
    docker_server.run("cmd-app", "echo ready > /tmp/state; sleep 100000")
    docker_server.wait("cmd-app", lambda a: a["State"]["Running"], 30, "running")
    return docker_server


def cmd(name, **extra):
    return {"name": name, **extra}


def inventory(repl, sshd, app) -> dict:
    return {
        "environment": "selftest-commands",
        "defaults": {"timeout": 3},
        "hosts": [{"name": "this-machine", "spec": "local://"}],
        "docker": [{"name": "engine", "engine": app.url, "containers": [{"name": "cmd-app"}]}],
        "commands": [
            {
                "name": "local",
                "host": "this-machine",
                "run": [
                    cmd(
                        "literal-argv",
                        argv=["echo", "$HOME", "*", "a;b", "`id`"],
                        output=[{"value": "$HOME * a;b `id`"}],
                    ),
                    cmd("shell-pipe", shell="printf 'a\\nb\\nc\\n' | wc -l", output=[{"op": "==", "value": 3}]),
                    cmd("exit-3", argv=["sh", "-c", "echo boom >&2; exit 3"], severity="p1"),
                    cmd("exit-3-accepted", argv=["sh", "-c", "exit 3"], exit_codes=[0, 3]),
                    cmd("slow", argv=["sleep", "5"], timeout_s=1),
                    cmd("missing-binary", argv=["no-such-binary-opscheck"]),
                    cmd(
                        "json",
                        argv=["printf", '{"status": "ok", "open": 5}'],
                        output=[
                            {"path": "status", "op": "==", "value": "ok"},
                            {"path": "open", "op": "<", "value": 3},
                        ],
                    ),
                    cmd(  # nested past Python's recursion limit: json raised RecursionError
                        "deep-json",
                        shell="head -c 10000 /dev/zero | tr '\\0' '['",
                        output=[{"path": "status", "op": "exists"}],
                    ),
                    cmd(
                        "leaks",
                        argv=[
                            "printf",
                            "DB_PASSWORD=hunter2-opscheck\\nAuthorization: Bearer abcdef123456\\nERROR x\\n",
                        ],
                        output=[{"capture": "^ERROR", "op": "exists", "value": False}],
                    ),
                    cmd(
                        "not-at-head", argv=["echo", "8c4e7d21aa05"], output=[{"capture": "\\(head\\)", "op": "exists"}]
                    ),
                    cmd(
                        "hidden",
                        argv=["cat", "/proc/sys/kernel/ostype"],
                        output=[{"op": "==", "value": "other"}],
                        show_output=False,
                    ),
                    cmd(
                        "param-as-data",
                        argv=["printf", "%s", "{note}"],
                        schedule=["adhoc"],
                        output=[{"op": "==", "value": f"$(touch {MARKER}); wf-42"}],
                    ),
                    cmd("param-option", argv=["printf", "%s", "{flag}"], schedule=["adhoc"]),
                    cmd(
                        "stderr-condition",
                        argv=["sh", "-c", "echo warn: disk >&2"],
                        output=[
                            {"stream": "stderr", "capture": "warn: (\\w+)", "op": "==", "value": "disk"},
                            {"count": ".", "op": "==", "value": 0},
                        ],
                    ),
                ],
            },
            {
                "name": "remote",
                "spec": sshd.spec(),
                "run": [cmd("kernel", argv=["cat", "/proc/sys/kernel/ostype"], output=[{"value": "Linux"}])],
            },
            {
                "name": "unreachable",
                "spec": sshd.spec(closed_port()),
                "run": [cmd("first", argv=["true"]), cmd("second", argv=["true"])],
            },
            {
                "name": "container",
                "docker": "engine",
                "container": "cmd-app",
                "run": [
                    cmd("state", argv=["cat", "/tmp/state"], output=[{"value": "ready"}], domain="containers"),
                    cmd("missing-file", argv=["cat", "/no/such/file"]),
                    cmd("slow", argv=["sleep", "5"], timeout_s=1),
                    cmd("literal-argv", argv=["echo", "$PATH", "*"], output=[{"value": "$PATH *"}]),
                ],
            },
            {
                "name": "repl",
                "spec": "local://",
                "socket": repl.path,
                "protocol": "ava-storage",
                "run": [
                    cmd(
                        "active-workflows",
                        send="list t:a:*",
                        output=[{"count": "^t:a:", "op": ">=", "value": 2}],
                        domain="database",
                    ),
                    cmd("no-completed", send="list t:x:*", output=[{"count": ".", "op": ">", "value": 0}]),
                    cmd(
                        "workflow-stored",
                        send="get t:a:{workflow_id}",
                        schedule=["adhoc"],
                        output=[{"path": "trigger.cron", "op": "exists"}],
                    ),
                ],
            },
            {
                "name": "repl-over-ssh",
                "spec": sshd.spec(),
                "socket": repl.path,
                "protocol": "ava-storage",
                "run": [
                    cmd("active-workflows", send="list t:a:*", output=[{"count": "^t:a:", "op": "==", "value": 2}])
                ],
            },
            {
                "name": "repl-dead",
                "spec": "local://",
                "socket": "/tmp/opscheck-no-such.sock",
                "protocol": "ava-storage",
                "run": [cmd("first", send="list t:a:*"), cmd("second", send="get t:a:wf-1")],
            },
        ],
    }


@pytest.fixture(scope="module")
def result(repl, sshd, app, tmp_path_factory):
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    params = [f"note=$(touch {MARKER}); wf-42", "flag=-n", "workflow_id=wf-1"]
    args = [a for p in params for a in ("--param", p)]
    return run_suite(inventory(repl, sshd, app), tmp_path_factory.mktemp("commands"), *args)


def test_commands_pass_on_a_healthy_host_container_and_repl(result):
    result.assert_passed(
        "test_command_exit_code[local:literal-argv]",
        "test_command_output[local:literal-argv]",
        "test_command_output[local:shell-pipe]",
        "test_command_exit_code[local:exit-3-accepted]",
        "test_command_output[local:stderr-condition]",
        "test_command_output[remote:kernel]",
        "test_command_output[container:state]",
        "test_command_output[container:literal-argv]",
        "test_command_output[repl:active-workflows]",
        "test_command_output[repl-over-ssh:active-workflows]",
    )


def test_markers_come_from_the_inventory_and_the_place(result):
    checks = result.checks
    assert checks["test_command_exit_code[local:exit-3]"]["severity"] == "p1"
    assert checks["test_command_exit_code[local:literal-argv]"]["family"] == "commands"
    assert "test_command_output[local:exit-3]" not in checks, "no output conditions: no output check"


def test_exit_code_failure_shows_stderr(result):
    result.assert_failed("test_command_exit_code[local:exit-3]", "exit 3, expected 0", "stderr: 'boom'", "runbook:")
    result.assert_failed("test_command_exit_code[local:missing-binary]", "exit 127")
    result.assert_failed("test_command_exit_code[container:missing-file]", "exit 1", "No such file")


def test_timeouts_fail(result):
    result.assert_failed("test_command_exit_code[local:slow]", "did not finish within 1 s")
    result.assert_failed("test_command_exit_code[container:slow]", "did not finish within 1 s")


def test_output_conditions_fail_naming_what_was_read(result):
    message = result.assert_failed("test_command_output[local:json]", "stdout JSON open is 5, expected < 3")
    assert "JSON status" not in message, "a condition that holds is not listed"
    result.assert_failed("test_command_output[repl:no-completed]", "stdout lines matching /./ is 0, expected > 0")
    result.assert_failed("test_command_output[local:not-at-head]", "stdout /\\(head\\)/ not found, expected present")
    result.assert_failed("test_command_output[local:leaks]", "stdout /^ERROR/ found ('ERROR'), expected absent")
    result.assert_failed("test_command_output[local:deep-json]", "stdout is not JSON")


def test_shown_output_is_scrubbed_or_hidden(result):
    message = result.assert_failed("test_command_output[local:leaks]", "DB_PASSWORD=***", "Authorization: ***")
    assert "hunter2-opscheck" not in result.output and "abcdef123456" not in result.output
    hidden = result.assert_failed("test_command_output[local:hidden]", "output hidden (show_output: false)")
    assert "Linux" not in hidden
    assert message


def test_params_are_arguments_never_shell(result):
    result.assert_passed("test_command_output[local:param-as-data]")
    assert not os.path.exists(MARKER), "a --param value was run by a shell"
    result.assert_failed("test_command_exit_code[local:param-option]", "--param flag starts with '-'")


def test_repl_reads_a_workflow_by_param(result, repl):
    result.assert_passed("test_command_output[repl:workflow-stored]")
    assert "get t:a:wf-1" in repl.received


def test_only_allowed_lines_reach_the_repl(result, repl):
    verbs = {line.split(" ", 1)[0] for line in repl.received}
    assert verbs <= {"list", "get", "exit"}, repl.received


def test_unreachable_places_fail_once_then_block(result):
    result.assert_failed("test_command_exit_code[unreachable:first]", "cannot reach the host")
    result.assert_failed("test_command_exit_code[unreachable:second]", "blocked: ")
    result.assert_failed("test_command_exit_code[repl-dead:first]", "cannot connect")
    result.assert_failed("test_command_exit_code[repl-dead:second]", "blocked: ")


def test_adhoc_commands_are_deselected_without_their_param(repl, sshd, app, run_checks):
    run = run_checks(inventory(repl, sshd, app), "-k", "repl and not dead and not ssh")
    assert "test_command_output[repl:active-workflows]" in run.checks
    assert "test_command_output[repl:workflow-stored]" not in run.checks
    assert "deselected" in run.output


@pytest.mark.parametrize(
    ("send", "why"),
    [
        ("gc", "'gc' runs BadgerDB value-log garbage collection"),
        ("rm t:a:*", "'rm' deletes keys"),
        ("backup /tmp/x", "'backup' writes a backup"),
        ("set t:a:1 x", "'set' writes a key"),
        ("list *", "list needs one argument"),
        ("flushall", "not a read-only command of this protocol"),
    ],
)
def test_write_commands_are_refused_when_the_inventory_loads(send, why, repl, run_checks):
    broken = {
        "environment": "selftest-commands-refused",
        "commands": [
            {
                "name": "repl",
                "spec": "local://",
                "socket": repl.path,
                "protocol": "ava-storage",
                "run": [cmd("x", send=send)],
            }
        ],
    }
    before = list(repl.received)
    run = run_checks(broken)
    assert run.rc == 4, run.output
    assert "refused:" in run.output and why in run.output, run.output
    assert "Traceback" not in run.output
    assert repl.received == before, "nothing was sent"


def test_a_shell_script_takes_no_placeholder(run_checks):
    broken = {
        "environment": "selftest-commands-shell",
        "commands": [{"name": "h", "spec": "local://", "run": [cmd("x", shell="echo {id}", schedule=["adhoc"])]}],
    }
    run = run_checks(broken)
    assert run.rc == 4 and "a shell script cannot take {placeholders}" in run.output, run.output
