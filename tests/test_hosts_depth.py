"""The host family's declared state on the real local host (local://): files, packages, users,
groups, sysctl, mounts, listening processes, established connections, time sync, failed
units, pending reboot and security updates, each passing where the declaration holds and
failing, for the right reason, where it does not. All from ONE sweep per host.
"""

import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from opscheck.families.hosts import parse_time_state, rpm_compare, version_holds
from tests.conftest import run_suite
from tests.servers import RedisServer

SECRET = "hunter2-never-shown"


@pytest.fixture(scope="module")
def tree():
    folder = tempfile.mkdtemp(prefix="opscheck-hd-", dir="/tmp")
    conf = os.path.join(folder, "app.conf")
    with open(conf, "w") as f:
        f.write(f"listen 8080\npassword={SECRET}\n")
    os.chmod(conf, 0o640)
    yield folder, conf, hashlib.sha256(Path(conf).read_bytes()).hexdigest()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_port():
    with RedisServer() as server:
        client = socket.create_connection(("127.0.0.1", server.port))  # an established connection
        yield server.port
        client.close()


def root_options() -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[3].split(",") for line in f if line.split()[1] == "/"][-1]


@pytest.fixture(scope="module")
def result(tree, redis_port, tmp_path_factory):
    folder, conf, digest = tree
    ostype = Path("/proc/sys/kernel/ostype").read_text().strip()
    healthy = {
        "name": "declared",
        "spec": "local://",
        "files": [
            {
                "path": conf,
                "type": "file",
                "mode": "0640",
                "owner": "root",
                "group": "root",
                "size_min": 1,
                "size_max": 4096,
                "sha256": digest,
                "contains": ["^listen [0-9]+$"],
                "absent": ["^debug"],
            },
            {"path": folder, "type": "directory"},
            {"path": f"{folder}/gone", "exists": False},
        ],
        "packages": [
            {"name": "openssh-server", "version": ">= 1:8.0"},
            {"name": "opscheck-no-such", "installed": False},
        ],
        "users": [{"name": "root", "uid": 0, "shell": "/bin/bash", "home": "/root", "groups": ["root"]}],
        "groups": [{"name": "root", "gid": 0, "members": ["root"]}],
        "sysctl": {"kernel.ostype": ostype},
        "mount_options": [{"mount": "/", "options": root_options()[:1], "absent_options": ["opscheck-none"]}],
        "ports": [{"port": redis_port, "process": "redis-server"}],
        "connections": [{"port": redis_port, "direction": "out"}, {"port": redis_port, "direction": "in"}],
        "reboot_required": False,
        "security_updates_max": 100000,
    }
    broken = {
        "name": "drifted",
        "spec": "local://",
        "files": [
            {
                "path": conf,
                "type": "directory",
                "mode": "0600",
                "owner": "nobody",
                "sha256": "0" * 64,
                "size_max": 2,
                "contains": ["^server_name"],
                "absent": ["^password="],
            },
            {"path": f"{folder}/missing"},
            {"path": folder, "exists": False},
        ],
        "packages": [
            {"name": "opscheck-no-such"},
            {"name": "openssh-server", "version": ">= 1:99"},
            {"name": "openssh-server", "installed": False},
        ],
        "users": [
            {"name": "root", "uid": 5, "shell": "/bin/zsh", "groups": ["opscheck-nogroup"]},
            {"name": "nosuchuser"},
        ],
        "groups": [{"name": "root", "gid": 7, "members": ["nobody"]}, {"name": "opscheck-nogroup"}],
        "sysctl": {"kernel.ostype": "BSD", "kernel.opscheck_nonexistent": 1},
        "mount_options": [{"mount": "/", "options": ["opscheck-opt"], "absent_options": root_options()[:1]}],
        "ports": [{"port": redis_port, "process": "nginx"}],
        "connections": [{"port": 2206}, {"port": redis_port, "max": 0}],
        "time_sync": {},
        "failed_units_max": 0,
        "security_updates_max": 0,
    }
    inventory = {"environment": "selftest-host-depth", "hosts": [healthy, broken]}
    return run_suite(inventory, tmp_path_factory.mktemp("depth"), "-p", "no:randomly")


def test_declared_state_passes(result, tree, redis_port):
    folder, conf, _ = tree
    result.assert_passed(
        f"test_host_file_as_declared[declared:{conf}]",
        f"test_host_file_as_declared[declared:{folder}]",
        f"test_host_file_as_declared[declared:{folder}/gone]",
        "test_host_package_as_declared[declared:openssh-server]",
        "test_host_package_as_declared[declared:opscheck-no-such]",
        "test_host_user_as_declared[declared:root]",
        "test_host_group_as_declared[declared:root]",
        "test_host_sysctl_as_declared[declared:kernel.ostype]",
        "test_host_mount_options[declared:/]",
        f"test_port_listening[declared:{redis_port}:redis-server]",
        f"test_host_connections_established[declared:out:{redis_port}]",
        f"test_host_connections_established[declared:in:{redis_port}]",
        "test_host_no_reboot_required[declared]",
        "test_host_security_updates_below_limit[declared]",
    )


def test_files_fail_without_showing_content(result, tree):
    folder, conf, digest = tree
    message = result.assert_failed(
        f"test_host_file_as_declared[drifted:{conf}]",
        "is a file, expected directory",
        "mode 0640, expected 0600",
        "owner root, expected nobody",
        f"sha256 {digest}, expected {'0' * 64}",
        "> maximum 2 B",
        "no line matches /^server_name/",
        "1 line(s) match /^password=/, which must not appear",
    )
    assert SECRET not in message
    assert SECRET not in result.output
    for report in result.reports_dir.rglob("*.*"):
        assert SECRET not in report.read_text(errors="replace"), report
    result.assert_failed(f"test_host_file_as_declared[drifted:{folder}/missing]", "does not exist")
    result.assert_failed(f"test_host_file_as_declared[drifted:{folder}]", "exists (directory), expected absent")


def test_packages_fail(result):
    result.assert_failed("test_host_package_as_declared[drifted:opscheck-no-such]", "is not installed (dpkg)")
    checks = [c for c in result.checks if c.startswith("test_host_package_as_declared[drifted:openssh-server")]
    messages = " | ".join(result.message(c) for c in checks)
    assert "does not meet >= 1:99 (dpkg order)" in messages and "is installed, expected absent" in messages


def test_users_and_groups_fail(result):
    result.assert_failed(
        "test_host_user_as_declared[drifted:root]",
        "uid 0, expected 5",
        "shell /bin/bash, expected /bin/zsh",
        "not a member of opscheck-nogroup",
    )
    result.assert_failed("test_host_user_as_declared[drifted:nosuchuser]", "user nosuchuser does not exist")
    result.assert_failed("test_host_group_as_declared[drifted:root]", "gid 0, expected 7", "nobody not a member")
    result.assert_failed("test_host_group_as_declared[drifted:opscheck-nogroup]", "does not exist")


def test_sysctl_and_mounts_fail(result):
    result.assert_failed("test_host_sysctl_as_declared[drifted:kernel.ostype]", "= Linux, expected BSD")
    result.assert_failed("test_host_sysctl_as_declared[drifted:kernel.opscheck_nonexistent]", "does not exist")
    result.assert_failed(
        "test_host_mount_options[drifted:/]", "without option(s) opscheck-opt", f"with option(s) {root_options()[0]}"
    )


def test_sockets_and_connections_fail(result, redis_port):
    result.assert_failed(
        f"test_port_listening[drifted:{redis_port}:nginx]", "is held by redis-server, expected 'nginx'"
    )
    result.assert_failed(
        "test_host_connections_established[drifted:any:2206]", "0 established connection(s) on port 2206 < minimum 1"
    )
    result.assert_failed(f"test_host_connections_established[drifted:any:{redis_port}]", "> maximum 0")


def test_time_units_and_updates_fail_here(result):
    """This machine runs no time daemon and no systemd, and its package lists have security
    updates pending: the real reasons these checks fail on it."""
    result.assert_failed("test_host_time_synchronised[drifted]", "clock not synchronised (none:")
    result.assert_failed("test_host_time_offset_below_limit[drifted]", "no clock offset known")
    result.assert_failed("test_host_no_failed_units[drifted]", "has no systemd")
    result.assert_failed(
        "test_host_security_updates_below_limit[drifted]", "pending security update(s) > limit 0 (apt:"
    )


def test_one_sweep_per_host(result):
    durations = sorted(c["duration"] for c in result.checks.values() if "[declared" in c["id"])
    assert durations[-2] < 0.05, durations


def test_version_orders():
    assert version_holds("dpkg", "1:9.2p1-2+deb12u3", ">= 1:9.2p1-2")
    assert not version_holds("dpkg", "1.22.1-9", ">= 1.22.10")
    assert version_holds("dpkg", "2.0~rc1", "< 2.0")
    assert version_holds("rpm", "0:1.20.1-10.el9", ">= 1.20.1-9.el9")
    assert rpm_compare("1.0~rc1", "1.0") < 0 and rpm_compare("1.0a", "1.0") > 0 and rpm_compare("2.10", "2.9") > 0
    assert version_holds("rpm", "1:8.7p1-34.el9", "> 8.9p1")  # an epoch outranks any version


def test_parse_time_sources():
    chrony = parse_time_state(
        [
            "source chrony",
            "Reference ID    : C0A80001 (192.168.0.1)",
            "System time     : 0.000012345 seconds fast of NTP time",
            "Leap status     : Normal",
        ]
    )
    assert chrony.synchronised and abs(chrony.offset_ms - 0.012345) < 1e-9
    timesyncd = parse_time_state(["source timesyncd", "NTPSynchronized=no", "NTP=yes", "       Offset: -1.250ms"])
    assert not timesyncd.synchronised and timesyncd.offset_ms == 1.25
