"""Host family over ssh:// against a real sshd: every host check from ONE remote command.

sshd logs each accepted login; ten host checks on one host must cost exactly one.
"""

import pytest

from tests.conftest import run_suite
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
