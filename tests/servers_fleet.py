"""A fleet of real SSH hosts on this machine: each an sshd in a network namespace of its own
(its own address, loopback, sockets and net.* sysctls) and a private mount namespace (its
own /run, so one host can wait for a reboot and the next not).

Reached through a veth pair from the root namespace, exactly as a remote host on a LAN:
`ssh root@10.253.x.y`. One key pair and one ssh_config serve the whole fleet.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.servers import Service


def unavailable() -> str | None:
    """Why a fleet cannot run here (None if it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "sshd", "ssh"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} not installed"
    return None


def _run(*args: str) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")


@dataclass
class FleetHost:
    """One host of the fleet: its namespace, veth and addresses, and what is broken on it."""

    index: int
    namespace: str
    veth: str
    host_address: str  # our end of the veth
    address: str  # the host's address
    reboot_required: bool = False
    sysctl: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None


class SshFleet(Service):
    """`count` sshd hosts, each in its own network and mount namespace."""

    def __init__(self, count: int, reboot_required: frozenset[int] = frozenset(), sysctl: dict | None = None):
        self.dir = tempfile.mkdtemp(prefix="opscheck-fleet-", dir="/tmp")
        self.hosts: list[FleetHost] = []
        pid = os.getpid()
        for i in range(count):
            n = (pid * 32 + i) % 16000
            prefix = f"10.253.{n // 64}"
            last = (n % 64) * 4
            self.hosts.append(
                FleetHost(
                    index=i,
                    namespace=f"opscheck-fl-{pid}-{i}",
                    veth=f"ocfl{pid % 10000}x{i}",
                    host_address=f"{prefix}.{last + 1}",
                    address=f"{prefix}.{last + 2}",
                    reboot_required=i in reboot_required,
                    sysctl=(sysctl or {}).get(i, {}),
                )
            )

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def start(self) -> None:
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self._path(key)], check=True)
        shutil.copy(self._path("client_key.pub"), self._path("authorized_keys"))
        with open(self._path("sshd_config"), "w") as f:
            f.write(f"""Port 22
HostKey {self._path("host_key")}
AuthorizedKeysFile {self._path("authorized_keys")}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
MaxStartups 100
MaxSessions 100
""")
        with open(self._path("ssh_config"), "w") as f:
            f.write(f"""Host *
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  IdentityFile {self._path("client_key")}
  IdentitiesOnly yes
""")
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(self._start_host, self.hosts))
        except Exception:
            self.stop()
            raise

    def _start_host(self, host: FleetHost) -> None:
        _run("ip", "netns", "add", host.namespace)
        _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", f"{host.veth}p")
        _run("ip", "link", "set", f"{host.veth}p", "netns", host.namespace)
        _run("ip", "addr", "add", f"{host.host_address}/30", "dev", host.veth)
        _run("ip", "link", "set", host.veth, "up")
        ns = ["ip", "netns", "exec", host.namespace]
        _run(*ns, "ip", "addr", "add", f"{host.address}/30", "dev", f"{host.veth}p")
        _run(*ns, "ip", "link", "set", f"{host.veth}p", "up")
        _run(*ns, "ip", "link", "set", "lo", "up")
        for key, value in host.sysctl.items():
            _run(*ns, "sysctl", "-q", "-w", f"{key}={value}")
        # a private /run: sshd's privilege separation directory, and the reboot flag of this host
        flag = (
            "touch /run/reboot-required && echo linux-image > /run/reboot-required.pkgs; "
            if host.reboot_required
            else ""
        )
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        script = (
            f"mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/sshd && {flag}"
            f"exec {sshd} -D -e -f {self._path('sshd_config')} -o PidFile=none"
        )
        log = open(self._path(f"sshd-{host.index}.log"), "w")  # noqa: SIM115 - sshd keeps it
        host.proc = subprocess.Popen(
            [*ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((host.address, 22)) == 0:
                    return
            time.sleep(0.05)
        with open(self._path(f"sshd-{host.index}.log")) as log:
            raise RuntimeError(f"sshd in {host.namespace} did not start: {log.read()}")

    def spec(self, host: FleetHost) -> str:
        return f"ssh://root@{host.address}?ssh_config={self._path('ssh_config')}&timeout=3"

    def logins(self, host: FleetHost) -> int:
        with open(self._path(f"sshd-{host.index}.log")) as log:
            return sum("Accepted publickey" in line for line in log)

    def ansible_inventory(self, groups: dict[str, list[int]]) -> str:
        """An INI Ansible inventory naming the hosts by group (ansible_host, user, key)."""
        lines = []
        for group, members in groups.items():
            lines.append(f"[{group}]")
            lines += [f"fleet{i} ansible_host={self.hosts[i].address} ansible_port=22" for i in members]
            lines.append("")
        lines += ["[all:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={self._path('client_key')}", ""]
        return "\n".join(lines)

    def stop(self) -> None:
        for host in self.hosts:
            if host.proc is not None:
                host.proc.kill()
                host.proc.wait(timeout=10)
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True, timeout=15)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)
