"""Hosts through testinfra (local://, ssh://, docker://), read in ONE sweep per host.

One remote command costs 0.15-0.35 s over SSH, so instead of a command per check
(pytest-testinfra's way: 24 checks take 7-13 s) the host family runs a single shell
script that prints df, inodes, meminfo, loadavg, processes, listening sockets and
systemd units, and the checks evaluate that text locally. A fleet is swept
concurrently.
"""

from __future__ import annotations

import shlex
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from opscheck.core.errors import TargetUnreachable, blocked, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import Item, Param, Target
from opscheck.core.redact import clip
from opscheck.core.values import HostSpec, ListenPort

if TYPE_CHECKING:
    import testinfra
else:
    testinfra = optional("testinfra", "hosts")


class Host(Target):
    """A machine reached through testinfra: local://, ssh://user@host:port, docker://name."""

    spec: HostSpec = Field(default="local://", description="testinfra host spec (no password: keys or an agent)")
    mounts: list[str] | None = Field(default=None, description="filesystems to check (default: every real filesystem)")
    disk_warn_pct: float = Field(default=80, gt=0, le=100)
    disk_crit_pct: float = Field(default=90, gt=0, le=100)
    inode_warn_pct: float = Field(default=80, gt=0, le=100)
    inode_crit_pct: float = Field(default=90, gt=0, le=100)
    memory_min_available_pct: float = Field(default=10, ge=0, le=100)
    load_per_core_max: float = Field(default=2.0, gt=0, description="5-minute load average / cores")
    processes: list[str] = Field(default_factory=list, description="process names that must run")
    services: list[str] = Field(default_factory=list, description="systemd units that must be active")
    ports: list[ListenPort] = Field(default_factory=list, description="listening TCP ports: 5432 or '127.0.0.1:5432'")

    def secrets(self) -> list[str]:
        return [self.spec]  # testinfra accepts ssh://user:password@host

    @model_validator(mode="after")
    def _warn_below_crit(self):
        if self.disk_warn_pct > self.disk_crit_pct or self.inode_warn_pct > self.inode_crit_pct:
            raise ValueError("warning thresholds must not be above critical ones")
        return self


SWEEP = r"""
echo @@nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
echo @@loadavg; cat /proc/loadavg
echo @@meminfo; cat /proc/meminfo
echo @@df; df -P -T -k 2>/dev/null
echo @@dfi; df -P -i 2>/dev/null
echo @@procs
for d in /proc/[0-9]*; do
  c=$(cat "$d/comm" 2>/dev/null) || continue
  printf '%s\t%s\n' "$c" "$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)"
done
echo @@tcp; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
echo @@units
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl list-units --type=service --all --no-legend --plain --no-pager 2>/dev/null
else
  echo NO_SYSTEMD
fi
echo @@end
"""

PSEUDO_FS = {
    "tmpfs",
    "devtmpfs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "nsfs",
    "squashfs",
    "ramfs",
    "efivarfs",
    "autofs",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "rpc_pipefs",
    "shm",
}


@dataclass
class Filesystem:
    mount: str
    fstype: str
    used_pct: float
    inode_used_pct: float | None = None


@dataclass
class HostFacts:
    """What one sweep of a host found."""

    cores: int
    load5: float
    mem_total_kb: int
    mem_available_kb: int
    filesystems: dict[str, Filesystem]
    processes: list[tuple[str, str]]
    listening: set[tuple[str, int]]
    units: dict[str, str] | None = field(default=None)
    files: set[str] = field(default_factory=set)

    def process_running(self, name: str) -> bool:
        for comm, args in self.processes:
            argv0 = args.split(" ", 1)[0].rsplit("/", 1)[-1] if args else ""
            if name in (comm, argv0) or (len(name) > 15 and comm == name[:15]):
                return True
        return False

    def port_listening(self, spec: int | str) -> bool:
        address, _, port = str(spec).rpartition(":")
        wildcard = {"0.0.0.0", "::", address} if address else None
        for addr, listening_port in self.listening:
            if listening_port == int(port) and (wildcard is None or addr in wildcard):
                return True
        return False


def split_sections(text: str) -> dict[str, list[str]]:
    """A sweep's output, `@@name` lines starting each section, as {name: lines}."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
    return sections


def parse(text: str) -> HostFacts:
    """Turn the sweep's output into HostFacts."""
    sections = split_sections(text)
    if "end" not in sections:
        raise ValueError("the sweep's output is incomplete")

    meminfo = {}
    for line in sections["meminfo"]:
        key, _, rest = line.partition(":")
        meminfo[key] = int(rest.split()[0]) if rest.split() else 0

    filesystems: dict[str, Filesystem] = {}
    for line in sections["df"][1:]:
        cols = line.split()
        if len(cols) >= 7 and cols[1] not in PSEUDO_FS and cols[5].rstrip("%").isdigit():
            filesystems[cols[6]] = Filesystem(cols[6], cols[1], float(cols[5].rstrip("%")))
    for line in sections["dfi"][1:]:
        cols = line.split()
        if len(cols) >= 6 and cols[5] in filesystems and cols[4].rstrip("%").isdigit():
            filesystems[cols[5]].inode_used_pct = float(cols[4].rstrip("%"))

    processes = [_process(line) for line in sections["procs"] if "\t" in line]

    units = None
    if sections["units"] != ["NO_SYSTEMD"]:
        units = {}
        for line in sections["units"]:
            cols = line.split()
            if len(cols) >= 3:
                units[cols[0].removesuffix(".service")] = cols[2]

    return HostFacts(
        cores=int(sections["nproc"][0]),
        load5=float(sections["loadavg"][0].split()[1]),
        mem_total_kb=meminfo.get("MemTotal", 0),
        mem_available_kb=meminfo.get("MemAvailable", meminfo.get("MemFree", 0)),
        filesystems=filesystems,
        processes=processes,
        listening=parse_listening(sections["tcp"]),
        units=units,
    )


def _process(line: str) -> tuple[str, str]:
    """A `comm<TAB>cmdline` line of the sweep."""
    comm, _, args = line.partition("\t")
    return comm, args


def parse_listening(lines: list[str]) -> set[tuple[str, int]]:
    """Listening sockets from /proc/net/tcp{,6} (state 0A), as (address, port)."""
    found = set()
    for line in lines:
        cols = line.split()
        if len(cols) < 4 or cols[3] != "0A":
            continue
        hex_addr, hex_port = cols[1].split(":")
        found.add((_address(hex_addr), int(hex_port, 16)))
    return found


def _address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    flat = b"".join(words)
    if flat == bytes(16):
        return "::"
    if flat[:12] == bytes(10) + b"\xff\xff":
        return ".".join(str(b) for b in flat[12:])
    return ":".join(flat[i : i + 2].hex() for i in range(0, 16, 2))


class HostSweeper:
    """Sweeps hosts once each (concurrently) and hands every check the cached facts."""

    def __init__(self, hosts: list[Host], timeout_for, concurrent: bool = True):
        self.hosts = {h.name: h for h in hosts}
        self.timeout_for = timeout_for
        self.concurrent = concurrent
        self._facts: dict[str, HostFacts | str] = {}
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def facts(self, host: Host) -> HostFacts:
        with self._lock:
            if host.name not in self._facts:
                names = list(self.hosts) if self.concurrent else [host.name]
                todo = [self.hosts[n] for n in names if n not in self._facts]
                pool = ThreadPoolExecutor(max_workers=min(16, len(todo)))
                futures = {h.name: pool.submit(self._sweep, h) for h in todo}
                for name, future in futures.items():
                    self._facts[name] = _result(future, self.hosts[name], self.timeout_for)
                pool.shutdown(wait=False)  # a hung sweep must not hold the run
            result = self._facts[host.name]
            if isinstance(result, str):
                first = host.name not in self._reported
                self._reported.add(host.name)
                raise TargetUnreachable(result if first else blocked(result))
        return result

    def _sweep(self, host: Host) -> HostFacts:
        result = run_script(host.spec, SWEEP, command_seconds(self.timeout_for(host)))
        if result.rc != 0 and "@@end" not in result.stdout:
            raise RuntimeError(f"exit {result.rc}: {clip(result.stderr.strip(), 300)}")
        return parse(result.stdout)


def command_seconds(timeout: float) -> int:
    """How long a command on a host may run: four network timeouts, at least 5 s."""
    return max(5, round(timeout * 4))


def run_script(spec: str, script: str, seconds: int) -> Any:
    """Run a read-only shell script on a host (testinfra), bounded by `timeout` there.

    The families that read hosts (backups, logs, certificate_files) go through here.
    """
    return testinfra.get_host(spec).run(f"timeout {seconds} sh -c {shlex.quote(script)}")


def _result(future, host: Host, timeout_for) -> HostFacts | str:
    """The facts, or the error text that blocks every check of the host."""
    limit = command_seconds(timeout_for(host)) + 5
    try:
        return future.result(timeout=limit)
    except FutureTimeout:
        return f'host "{host.name}" ({host.spec}): the facts sweep took longer than {limit} s'
    except Exception as exc:  # noqa: BLE001 - any backend error means "cannot read the host"
        text = one_line(exc)
        return f'host "{host.name}" ({host.spec}): cannot read facts: {text}'


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the hosts family and the targets they run on."""
    hosts = inventory.hosts
    return {
        "host": [Param(h, h.name, h) for h in hosts],
        "host_process": [Param(Item(h, p), f"{h.name}:{p}", h) for h in hosts for p in h.processes],
        "host_service": [Param(Item(h, s), f"{h.name}:{s}", h) for h in hosts for s in h.services],
        "host_port": [Param(Item(h, p), f"{h.name}:{p}", h) for h in hosts for p in h.ports],
    }
