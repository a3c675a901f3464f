"""Host family on the local machine (local://): every check passes on the real facts with
sane limits and fails when a limit or an expectation does not hold.

Disk, inode, memory and load cannot be broken on purpose without harming the machine,
so their failing cases use limits below the measured value; the measurement is real.
"""

import os
import socket
import subprocess

import pytest

from opscheck.families.hosts import Host, parse, sweep_script
from tests.conftest import run_suite
from tests.servers import closed_port


@pytest.fixture(scope="module")
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="module")
def sleeper():
    proc = subprocess.Popen(["sleep", "600"])
    yield "sleep"
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def result(listener, sleeper, tmp_path_factory):
    inventory = {
        "environment": "selftest-host",
        "hosts": [
            {
                "name": "healthy",
                "spec": "local://",
                "mounts": ["/"],
                "load_per_core_max": 1000,  # the self-tests' own load is not what is judged
                "processes": [sleeper],
                "ports": [listener, f"127.0.0.1:{listener}"],
            },
            {
                "name": "strained",
                "spec": "local://",
                "mounts": ["/"],
                "disk_warn_pct": 0.01,
                "disk_crit_pct": 0.02,
                "inode_warn_pct": 0.01,
                "inode_crit_pct": 0.02,
                "memory_min_available_pct": 100,
                "load_per_core_max": 0.0001,
                "processes": ["no-such-daemon"],
                "services": ["postgresql"],
                "ports": [closed_port(), f"10.9.9.9:{listener}"],
            },
            {"name": "missing-mount", "spec": "local://", "mounts": ["/no/such/mount"]},
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("host"))


def test_healthy_host_passes(result, listener):
    result.assert_passed(
        "test_filesystem_usage_below_warning[healthy]",
        "test_filesystem_usage_below_critical[healthy]",
        "test_inode_usage_below_warning[healthy]",
        "test_inode_usage_below_critical[healthy]",
        "test_memory_available[healthy]",
        "test_load_per_core_below_limit[healthy]",
        "test_process_running[healthy:sleep]",
        f"test_port_listening[healthy:{listener}]",
        f"test_port_listening[healthy:127.0.0.1:{listener}]",
    )


def test_disk_and_inode_limits_fail(result):
    result.assert_failed("test_filesystem_usage_below_warning[strained]", "/ ", "used >= warning 0.01%")
    result.assert_failed("test_filesystem_usage_below_critical[strained]", "used >= critical 0.02%")
    result.assert_failed("test_inode_usage_below_critical[strained]", "of inodes used >= critical")


def test_memory_and_load_limits_fail(result):
    result.assert_failed("test_memory_available[strained]", "memory available", "< minimum 100%")
    result.assert_failed("test_load_per_core_below_limit[strained]", "per core >= limit 0.0001")


def test_missing_process_and_port_fail(result, listener):
    result.assert_failed("test_process_running[strained:no-such-daemon]", "no process named 'no-such-daemon'")
    failed = [c for c in result.checks if c.startswith("test_port_listening[strained:")]
    assert len(failed) == 2
    for check in failed:
        result.assert_failed(check, "nothing listens on TCP")


def test_service_without_systemd_fails_clearly(result):
    result.assert_failed("test_service_active[strained:postgresql]", "has no systemd")


def test_missing_mount_fails(result):
    result.assert_failed("test_filesystem_usage_below_warning[missing-mount]", "mount(s) not found: /no/such/mount")


def test_one_sweep_serves_every_check(result):
    """All checks of a host read one sweep: the slowest check carries it, the rest take ~0 s."""
    durations = sorted(c["duration"] for c in result.checks.values() if "[healthy" in c["id"])
    assert durations[-2] < 0.05, durations


def test_parse_systemd_units_and_ipv6_listeners():
    """systemctl's and /proc/net/tcp6's formats, as the sweep prints them on a systemd host."""
    text = "\n".join(
        [
            "@@nproc",
            "4",
            "@@loadavg",
            "0.50 0.40 0.30 1/200 999",
            "@@meminfo",
            "MemTotal: 1000 kB",
            "MemAvailable: 250 kB",
            "@@df",
            "Filesystem Type 1024-blocks Used Available Capacity Mounted on",
            "/dev/sda1 ext4 100 50 50 50% /",
            "tmpfs tmpfs 10 1 9 10% /run",
            "@@dfi",
            "Filesystem Inodes IUsed IFree IUse% Mounted on",
            "/dev/sda1 100 7 93 7% /",
            "@@procs",
            "nginx\tnginx: master process /usr/sbin/nginx",
            "@@tcp",
            "  sl  local_address rem_address   st",
            "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A",
            "@@units",
            "nginx.service loaded active running A high performance web server",
            "cron.service loaded failed failed Regular background program processing daemon",
            "@@end",
        ]
    )
    facts = parse(text)
    assert facts.units == {"nginx": "active", "cron": "failed"}
    assert facts.port_listening(8080) and facts.port_listening("127.0.0.1:8080")  # [::] takes both
    assert facts.port_listening(8081) is False
    assert list(facts.filesystems) == ["/"] and facts.filesystems["/"].inode_used_pct == 7
    assert facts.mem_available_kb == 250 and facts.load5 == 0.40 and facts.cores == 4


FAKE_SS = {
    "too old for -H": "#!/bin/sh\necho \"ss: invalid option -- 'H'\" >&2\nexit 255\n",
    "answers nothing": "#!/bin/sh\nexit 0\n",  # no netlink diag in a sandbox
}


@pytest.mark.parametrize("ss", ["works", *FAKE_SS])
def test_listening_ports_from_ss_or_proc_net_tcp(ss, listener, tmp_path):
    """A real sweep of this machine: ss answers with the listeners and their processes; where
    it is missing, too old for -H (CentOS 7) or answers nothing, /proc/net/tcp answers (no
    process names)."""
    env = dict(os.environ)
    if ss != "works":
        fake = tmp_path / "ss"
        fake.write_text(FAKE_SS[ss])
        fake.chmod(0o755)
        env["PATH"] = f"{tmp_path}:{env['PATH']}"
    host = Host(name="h", spec="local://", ports=[listener])
    out = subprocess.run(["sh", "-c", sweep_script(host)], env=env, capture_output=True, text=True, timeout=30)
    facts = parse(out.stdout)
    assert bool(facts.listeners) == (ss == "works")
    assert facts.port_listening(listener) and facts.port_listening(f"127.0.0.1:{listener}")
    assert not facts.port_listening(closed_port())
    assert not facts.port_listening(f"10.9.9.9:{listener}")
