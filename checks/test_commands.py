"""Read-only commands: exit code and output of what the inventory names, on a host or in
a container, and one-line requests to a unix socket's REPL (an allow-list of read-only
commands, checked when the inventory loads).

A command check runs what the inventory says: the inventory is the trust boundary.
Severity, schedule and hint come from the inventory entry; the domain from where the
command runs (host or containers) unless the entry names one. Each command runs once per
run (fixtures/commands.py); both checks judge that one run.
"""

import pytest

from opscheck.core.checking import expect, fmt, holds
from opscheck.core.errors import OpscheckError
from opscheck.core.redact import redact
from opscheck.families.commands import excerpt


@pytest.mark.runbook(
    "A diagnostic command failed (its exit code is not one the inventory accepts) or did not "
    "finish in time. Run it by hand where it runs (the failure names the host or container) "
    "and read its error output; a timeout points at a hung dependency or an overloaded host."
)
def test_command_exit_code(command, command_runner):
    check = command.value
    ran = command_runner.result(check)
    shown = command_runner.shown(check)
    expect(
        not ran.timed_out,
        f"{shown}: did not finish within {check.timeout_s:g} s (exit {ran.exit_code}); {excerpt(check, ran)}",
    )
    expect(
        ran.exit_code in check.exit_codes,
        f"{shown}: exit {ran.exit_code}, expected {' or '.join(map(str, check.exit_codes))} "
        f"({fmt(ran.seconds)} s); {excerpt(check, ran)}",
    )


@pytest.mark.runbook(
    "A diagnostic command's output does not say what a healthy system says. The failing "
    "condition names what was read; run the command by hand to see all of it."
)
def test_command_output(command_output, command_runner):
    check = command_output.value
    ran = command_runner.result(check)
    shown = command_runner.shown(check)
    expect(not ran.timed_out, f"blocked: {shown}: did not finish within {check.timeout_s:g} s")
    failed = []
    for condition in check.output:
        text = ran.stdout if condition.stream == "stdout" else ran.stderr
        try:
            actual = condition.actual(text)
        except OpscheckError as exc:
            failed.append(str(exc))
            continue
        if not holds(actual, condition.op, condition.value):
            if condition.op == "exists":  # value null/true: must be printed; false: must not
                wanted = "present" if condition.value is None or condition.value else "absent"
                found = "not found" if actual is None else f"found ({_short(actual, check)})"
                failed.append(f"{condition.describe()} {found}, expected {wanted}")
            else:
                failed.append(
                    f"{condition.describe()} is {_short(actual, check)}, expected {condition.op} {condition.value!r}"
                )
    expect(not failed, f"{shown}: " + "; ".join(failed) + f"; {excerpt(check, ran)}")


def _short(actual, check) -> str:
    if not check.show_output and isinstance(actual, str):
        return f"a text of {len(actual)} characters"
    text = redact(repr(actual))  # masked, then cut
    return text if len(text) <= 120 else text[:117] + "..."
