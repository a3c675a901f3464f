"""Host family over ssh:// against a real sshd: every host check from ONE remote command.

sshd logs each accepted login; ten host checks on one host must cost exactly one.
"""

import contextlib
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_suite
from tests.servers import closed_port
from tests.servers_ssh import SshServer


@pytest.fixture(scope="module")
def sshd():
    with SshServer() as server:
        yield server


@pytest.fixture(scope="module")
def result(sshd, tmp_path_factory):
    inventory = {
        "environment": "selftest-ssh",
        "hosts": [
            {
                "name": "remote",
                "spec": sshd.spec(),
                "mounts": ["/"],
                "processes": ["sshd"],
                "ports": [sshd.port],
                "load_per_core_max": 1000,  # the self-tests' own load is not what is judged
            },
            {"name": "unreachable", "spec": sshd.spec(closed_port()), "processes": ["sshd"]},
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("ssh"))


def test_remote_host_passes(result, sshd):
    result.assert_passed(
        "test_filesystem_usage_below_warning[remote]",
        "test_filesystem_usage_below_critical[remote]",
        "test_inode_usage_below_warning[remote]",
        "test_inode_usage_below_critical[remote]",
        "test_memory_available[remote]",
        "test_load_per_core_below_limit[remote]",
        "test_process_running[remote:sshd]",
        f"test_port_listening[remote:{sshd.port}]",
    )


def test_one_login_for_all_checks_of_a_host(result, sshd):
    with open(f"{sshd.dir}/log") as log:
        logins = sum("Accepted publickey" in line for line in log)
    assert logins == 1, f"{logins} ssh logins for 8 checks on one host"


def test_unreachable_host_fails_then_blocks(result):
    first = result.assert_failed("test_filesystem_usage_below_warning[unreachable]", "cannot read facts")
    assert "blocked:" not in first
    result.assert_failed("test_memory_available[unreachable]", 'blocked: host "unreachable"')
    result.assert_failed("test_process_running[unreachable:sshd]", "blocked:")


def _masters(spec: str) -> list[str]:
    """Command lines of the OpenSSH ControlMasters opscheck opened for a host spec."""
    socket_name = hashlib.sha256(spec.encode()).hexdigest()[:16]  # as Transport names it
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if socket_name in text and "ssh" in text:
                found.append(text)
    return found


def _persistent(spec: str, timeout: int) -> str:
    """The spec with OpenSSH's ControlPersist as opscheck sets it (the fixture's spec turns it off)."""
    return spec.replace("&controlpersist=0", "").replace("timeout=3", f"timeout={timeout}")


def test_the_ssh_connection_is_closed_when_the_run_ends(sshd, tmp_path):
    spec = _persistent(sshd.spec(), 5)
    result = run_suite({"environment": "selftest-ssh-close", "hosts": [{"name": "h", "spec": spec}]}, tmp_path)
    result.assert_passed("test_memory_available[h]")
    assert _masters(spec) == []


def test_the_ssh_connection_is_closed_at_interpreter_exit(sshd):
    """A process that reads a host without pytest (the CLI) closes its connection at exit,
    where a thread pool would refuse the work."""
    spec = _persistent(sshd.spec(), 4)
    script = (
        "import sys; sys.path.insert(0, '.'); from opscheck.families.hosts import run_script\n"
        "from tests.test_hosts_ssh import _masters\n"
        f"print(run_script({spec!r}, 'echo up', 5).stdout.strip(), len(_masters({spec!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout == "up 1\n", out.stdout + out.stderr  # the connection was kept open
    deadline = time.monotonic() + 5  # `ssh -O exit` returns before the master is gone
    while _masters(spec) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _masters(spec) == []
