"""A fleet of 20 SSH hosts with 25 host checks each: opscheck against pytest-testinfra's
paramiko backend doing the same 25 checks, and the floor (20 concurrent `ssh host true`).

    .venv/bin/python benchmarks/fleet.py [--hosts 20] [--runs 3]

Needs root (sshd in network namespaces, tests/servers_fleet.py). Measured side by side in
one run, each figure the median of --runs:
- floor: 20 `ssh host true` started at once (OpenSSH, the same keys and ssh_config);
- start-up: `pytest --collect-only` of the opscheck fleet inventory (what a run costs
  before its first connection);
- opscheck: `pytest -m host` on the fleet (one sweep per host, all hosts at once);
- testinfra: a pytest-testinfra suite of the same 25 checks per host, paramiko backend,
  `-n 8` (pytest-xdist), as its documentation recommends for fleets.
Target: opscheck <= 1.5 x (floor + start-up).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's
import yaml

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from tests.servers_fleet import SshFleet  # noqa: E402

# 25 checks per host in both suites: disk, inodes, memory, load, a process, sockets, files,
# packages, users, a group, sysctl keys, the root mount, a connection, a pending reboot.


def opscheck_host(name: str, spec: str) -> dict:
    return {
        "name": name,
        "spec": spec,
        "mounts": ["/"],
        "load_per_core_max": 100,  # loose, as the testinfra suite's: the benchmark's own load is not judged
        "processes": ["sshd"],
        "ports": [{"port": 22, "process": "sshd"}, 22],
        "files": [
            {"path": "/etc/passwd", "type": "file", "owner": "root", "mode": "0644"},
            {"path": "/etc/hostname", "type": "file"},
            # read alike as grep's basic regex (testinfra's contains) and extended (opscheck's)
            {"path": "/etc/ssh/sshd_config", "contains": ["^#*Port"]},
            {"path": "/tmp", "type": "directory"},
            {"path": "/etc/ssh", "type": "directory"},
        ],
        "packages": [{"name": "openssh-server", "version": ">= 1:8.0"}, {"name": "procps"}, {"name": "openssh-client"}],
        "users": [{"name": "root", "uid": 0, "shell": "/bin/bash"}, {"name": "nobody"}],
        "groups": [{"name": "root", "gid": 0}],
        "sysctl": {"net.ipv4.ip_forward": "0", "kernel.ostype": "Linux"},
        "mount_options": [{"mount": "/", "options": ["rw"]}],
        "connections": [{"port": 22, "direction": "in"}],
        "reboot_required": False,
    }


TESTINFRA_SUITE = """
import pytest
HOSTS = {hosts!r}
pytestmark = pytest.mark.parametrize("host", HOSTS, indirect=True)

@pytest.fixture
def host(request):
    import testinfra
    return testinfra.get_host(request.param, ssh_config={ssh_config!r})

def test_disk_usage(host):
    assert int(host.check_output("df -P / | tail -1 | awk '{{print $5}}'").rstrip("%")) < 90
def test_disk_usage_warning(host):
    assert int(host.check_output("df -P / | tail -1 | awk '{{print $5}}'").rstrip("%")) < 80
def test_inodes(host):
    assert int(host.check_output("df -P -i / | tail -1 | awk '{{print $5}}'").rstrip("%") or 0) < 90
def test_inodes_warning(host):
    assert int(host.check_output("df -P -i / | tail -1 | awk '{{print $5}}'").rstrip("%") or 0) < 80
def test_memory(host):
    assert "MemAvailable" in host.file("/proc/meminfo").content_string
def test_load(host):
    assert float(host.file("/proc/loadavg").content_string.split()[1]) < 100
def test_sshd_running(host):
    assert host.process.filter(comm="sshd")
def test_port_22(host):
    assert host.socket("tcp://0.0.0.0:22").is_listening
def test_port_22_process(host):
    assert "sshd" in host.check_output("ss -Hltnp 'sport = :22'")
def test_passwd(host):
    f = host.file("/etc/passwd")
    assert f.is_file and f.user == "root" and f.mode == 0o644
def test_hostname(host):
    assert host.file("/etc/hostname").is_file
def test_sshd_config(host):
    assert host.file("/etc/ssh/sshd_config").contains("^#*Port")
def test_tmp(host):
    assert host.file("/tmp").is_directory
def test_openssh(host):
    assert host.package("openssh-server").is_installed
def test_procps(host):
    assert host.package("procps").is_installed
def test_root(host):
    assert host.user("root").uid == 0 and host.user("root").shell == "/bin/bash"
def test_nobody(host):
    assert host.user("nobody").exists
def test_group_root(host):
    assert host.group("root").gid == 0
def test_ip_forward(host):
    assert host.sysctl("net.ipv4.ip_forward") == 0
def test_ostype(host):
    assert host.sysctl("kernel.ostype") == "Linux"
def test_root_mount(host):
    assert "rw" in host.mount_point("/").options
def test_ssh_connection(host):
    assert host.check_output("ss -Htn state established '( sport = :22 )'")
def test_no_reboot(host):
    assert not host.file("/run/reboot-required").exists
def test_openssh_version(host):
    assert host.package("openssh-server").version.startswith("1:")
def test_hostname_readable(host):
    assert host.file("/etc/hostname").size > 0
"""


def once(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def floor(fleet: SshFleet) -> float:
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["ssh", "-F", fleet._path("ssh_config"), "-o", "BatchMode=yes", f"root@{h.address}", "true"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for h in fleet.hosts
    ]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    assert codes == [0] * len(codes), codes
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-testinfra", action="store_true")
    args = parser.parse_args()
    python = str(HERE / ".venv" / "bin" / "python")
    with SshFleet(args.hosts) as fleet, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        specs = [fleet.spec(h) for h in fleet.hosts]
        inventory = folder / "fleet.yml"
        inventory.write_text(
            yaml.safe_dump(
                {
                    "environment": "bench-fleet",
                    "hosts": [opscheck_host(f"h{i}", s) for i, s in enumerate(specs)],
                }
            )
        )
        base = [python, "-m", "pytest", "-q", "-p", "no:randomly", f"--inventory={inventory}"]
        base += [f"--reports-dir={folder / 'reports'}", "--keep-runs=1", "--no-state"]
        opscheck_cmd = [*base, "-m", "host"]
        collect_cmd = [*base, "-m", "host", "--collect-only"]
        suite = folder / "testinfra_suite" / "test_fleet.py"
        suite.parent.mkdir()
        paramiko_specs = [s.replace("ssh://", "paramiko://").split("?")[0] for s in specs]
        suite.write_text(TESTINFRA_SUITE.format(hosts=paramiko_specs, ssh_config=fleet._path("ssh_config")))
        testinfra_cmd = [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-rf",
            "-n",
            "8",
            str(suite),
        ]
        floors, collects, runs, testinfra = [], [], [], []
        checks = 0
        for _ in range(args.runs):
            floors.append(floor(fleet))
            collects.append(once(collect_cmd, HERE)[0])
            elapsed, proc = once(opscheck_cmd, HERE)
            if proc.returncode not in (0, 1):
                sys.exit(f"opscheck exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
            runs.append(elapsed)
            summary = sorted((folder / "reports").glob("*/*/summary.json"))[-1]
            result = yaml.safe_load(summary.read_text())
            checks = len(result["checks"])
            failed = [c["id"] for c in result["checks"] if c["outcome"] != "passed"]
            if failed:
                print(f"note: {len(failed)} check(s) did not pass: {failed[:5]}")
        if not args.skip_testinfra:
            elapsed, proc = once(testinfra_cmd, folder)
            testinfra.append(elapsed)
            print("testinfra:", proc.stdout.strip().splitlines()[-1])
            lines = proc.stdout.splitlines()
            failed = sorted({line.split("::")[1].split("[")[0] for line in lines if line.startswith("FAILED")})
            if failed:
                print(f"note: testinfra checks that did not pass: {failed}")
    median = statistics.median
    limit = 1.5 * (median(floors) + median(collects))
    print(f"fleet: {args.hosts} hosts over SSH (sshd in network namespaces), {checks} opscheck checks")
    print("| figure | seconds |")
    print("|---|---|")
    print(f"| {args.hosts} concurrent `ssh host true` (floor) | {median(floors):.2f} |")
    print(f"| opscheck start-up (`pytest --collect-only`) | {median(collects):.2f} |")
    print(f"| opscheck `pytest -m host` | {median(runs):.2f} |")
    print(f"| target: 1.5 x (floor + start-up) | {limit:.2f} ({'met' if median(runs) <= limit else 'NOT met'}) |")
    if testinfra:
        print(f"| pytest-testinfra, paramiko, -n 8, same 25 checks per host | {testinfra[0]:.2f} (1 run) |")
    print(f"command: {' '.join(opscheck_cmd)}")
    print(f"testinfra: {' '.join(testinfra_cmd)}")


if __name__ == "__main__":
    main()
