"""Hosts from an Ansible inventory, reached over real SSH: sshd in network namespaces of their
own (tests/servers_fleet.py), with per-group check settings. Everything a host needs (its
sweep, a log file, a backup folder) goes over ONE SSH connection; a dead host named by
several targets is tried once.
"""

import pytest

from opscheck.core.ansible import expand_range, read_inventory
from tests.conftest import run_suite
from tests.servers import SilentListener
from tests.servers_fleet import SshFleet, unavailable


@pytest.fixture(scope="module")
def fleet():
    reason = unavailable()
    if reason:
        pytest.skip(f"no SSH fleet here: {reason}")
    with SshFleet(3, reboot_required=frozenset({1}), sysctl={1: {"net.ipv4.ip_forward": "1"}}) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def dead():
    with SilentListener() as listener:  # accepts, never sends the SSH banner
        yield listener


@pytest.fixture(scope="module")
def result(fleet, dead, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fleet")
    (folder / "hosts.ini").write_text(fleet.ansible_inventory({"web": [0, 1], "db": [2]}))
    dead_spec = f"ssh://root@127.0.0.1:{dead.port}?ssh_config={fleet._path('ssh_config')}&timeout=2"
    inventory = {
        "environment": "selftest-fleet",
        "hosts": [
            {
                "ansible_inventory": str(folder / "hosts.ini"),
                "ssh_config": fleet._path("ssh_config"),
                "mounts": ["/"],
                "processes": ["sshd"],
                "group_settings": {
                    "web": {"reboot_required": False, "sysctl": {"net.ipv4.ip_forward": "0"}},
                    "db": {
                        "ports": [{"port": 22, "process": "sshd"}],
                        "connections": [{"port": 22, "direction": "in"}],
                    },
                },
            },
            {"name": "dead", "spec": dead_spec, "processes": ["sshd"]},
        ],
        "logs": [
            {
                "name": "db-hostname",
                "host": "fleet2",
                "file": "/etc/hostname",
                "forbidden": [{"name": "x", "pattern": "^$"}],
            },
            {
                "name": "dead-log",
                "host": "dead",
                "file": "/var/log/syslog",
                "forbidden": [{"name": "x", "pattern": "x"}],
            },
        ],
        "backups": [
            {"name": "db-dump", "host": "fleet2", "path": "/etc/host*", "max_age_hours": 800000, "min_size_bytes": 0},
            {"name": "dead-dump", "host": "dead", "path": "/var/backups/*.dump", "min_size_bytes": 0},
        ],
    }
    return run_suite(inventory, folder, "-p", "no:randomly", "--no-state")


def test_group_settings_pass_where_they_hold(result):
    result.assert_passed(
        "test_filesystem_usage_below_critical[fleet0]",
        "test_process_running[fleet0:sshd]",
        "test_host_no_reboot_required[fleet0]",
        "test_host_sysctl_as_declared[fleet0:net.ipv4.ip_forward]",
        "test_port_listening[fleet2:22:sshd]",
        "test_host_connections_established[fleet2:in:22]",
        "test_process_running[fleet2:sshd]",
    )


def test_group_settings_fail_where_they_do_not(result):
    result.assert_failed(
        "test_host_no_reboot_required[fleet1]", "host 'fleet1'", "a reboot is required (by linux-image)"
    )
    result.assert_failed("test_host_sysctl_as_declared[fleet1:net.ipv4.ip_forward]", "= 1, expected 0")
    assert "test_host_no_reboot_required[fleet2]" not in result.checks  # db hosts do not have it


def test_one_ssh_login_per_host(result, fleet):
    """fleet2's sweep, its log file and its backup folder share one connection."""
    result.assert_passed("test_log_forbidden_pattern_absent[db-hostname:x]", "test_backup_recent[db-dump]")
    assert [fleet.logins(h) for h in fleet.hosts] == [1, 1, 1]


def test_dead_host_is_tried_once_for_all_its_targets(result, dead):
    """The dead host is named by its own checks, a log source and a backup: one connection
    attempt in all; the first check shows why, the others say blocked."""
    first = result.assert_failed("test_filesystem_usage_below_warning[dead]", "cannot read facts")
    assert "blocked:" not in first
    result.assert_failed("test_process_running[dead:sshd]", "blocked:")
    for check in ("test_log_forbidden_pattern_absent[dead-log:x]", "test_backup_recent[dead-dump]"):
        assert "blocked:" in result.message(check), result.message(check)
    assert dead.accepts == 1, f"{dead.accepts} connection attempts to one dead host"


def test_ansible_inventory_formats(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("ansible_port: 2222\n")
    (tmp_path / "hosts.yml").write_text(
        "all:\n  vars: {ansible_user: deploy}\n  children:\n    web:\n      hosts:\n"
        "        web[01:02].example.com:\n    db:\n      hosts:\n"
        "        pg1: {ansible_host: 10.0.0.5, ansible_user: postgres}\n"
    )
    hosts = {h.name: h for h in read_inventory(tmp_path / "hosts.yml")}
    assert sorted(hosts) == ["pg1", "web01.example.com", "web02.example.com"]
    assert hosts["web01.example.com"].vars == {"ansible_user": "deploy", "ansible_port": 2222}
    assert hosts["pg1"].vars["ansible_user"] == "postgres" and "db" in hosts["pg1"].groups
    (tmp_path / "hosts.ini").write_text(
        "solo ansible_host=10.1.1.1\n[web]\nw[a:b] ansible_port=23\n"
        "[prod:children]\nweb\n[prod:vars]\nansible_user=ops\n"
    )
    hosts = {h.name: h for h in read_inventory(tmp_path / "hosts.ini")}
    assert hosts["wa"].vars == {"ansible_port": 23, "ansible_user": "ops"} and hosts["wa"].groups[:2] == ["all", "prod"]
    assert hosts["solo"].groups == ["all", "ungrouped"]
    assert expand_range("n[08:10]") == ["n08", "n09", "n10"]


def test_bad_ansible_inventory_is_a_config_error(tmp_path, run_checks):
    (tmp_path / "bad.ini").write_text("[web\nhost1\n")
    result = run_checks({"environment": "t", "hosts": [{"ansible_inventory": str(tmp_path / "bad.ini")}]})
    assert result.rc == 4 and "a section header ends with ']'" in result.output and "Traceback" not in result.output
