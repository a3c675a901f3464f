"""Hosts through testinfra's transports (local://, ssh://, paramiko://, docker://), read in
ONE sweep per host.

One remote command costs 0.15-0.35 s over SSH, so instead of a command per check
(pytest-testinfra's way: 24 checks take 7-13 s) the host family runs a single shell script
per host that prints everything its checks judge (df, inodes, memory, load, processes,
sockets with their processes, units, mounts, and what the inventory declares: files,
packages, users, groups, sysctl keys, time sync, pending reboot and security updates,
established connections), and the checks evaluate that text locally. Content of a file is
never sent back: `contains` is matched on the host (grep -E), only the match counts travel.

Every command for a host goes through one Transport per host spec: over ssh:// that is one
SSH connection (OpenSSH ControlMaster), reused by the sweep, log files, backups and
certificate files; a host that cannot be reached is tried once, and every later command
for it fails at once ("blocked: ...").
"""

from __future__ import annotations

import atexit
import hashlib
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from opscheck.core import ansible
from opscheck.core.cache import TargetReader
from opscheck.core.errors import TargetUnreachable, blocked, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import Item, Model, Param, Target
from opscheck.core.redact import clip_line
from opscheck.core.values import HostSpec, ListenPort

if TYPE_CHECKING:
    import testinfra
    from debian import debian_support
else:
    testinfra = optional("testinfra", "hosts")
    debian_support = optional("debian.debian_support", "hosts")

FileType = Literal["file", "directory", "symlink", "socket", "pipe", "block", "char"]


class FileSpec(Model):
    """A path as testinfra's `host.file(...)` or goss's `file:` would check it."""

    path: str = Field(pattern=r"^/", description="absolute path on the host")
    exists: bool = True
    type: FileType | None = None
    mode: str | None = Field(default=None, pattern=r"^0?[0-7]{3,4}$", description="octal, e.g. '0644'")
    owner: str | None = None
    group: str | None = None
    size_min: int | None = Field(default=None, ge=0, description="bytes")
    size_max: int | None = Field(default=None, ge=0, description="bytes")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    contains: list[str] = Field(
        default_factory=list, description="extended regexes (grep -E) that must match; the content is never shown"
    )
    absent: list[str] = Field(default_factory=list, description="extended regexes (grep -E) that must not match")

    @field_validator("contains", "absent")
    @classmethod
    def _one_line(cls, patterns: list[str]) -> list[str]:
        if any("\n" in p for p in patterns):
            raise ValueError("a pattern is one line")
        return patterns


class PackageSpec(Model):
    """A package (dpkg or rpm): installed or not, and a version constraint."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+_:-]*$")
    installed: bool = True
    version: str | None = Field(
        default=None,
        pattern=r"^(==|!=|>=|<=|>|<)\s*\S+$",
        description="constraint in the package manager's order, e.g. '>= 1.22' or '== 2:8.9p1-3'",
    )


class UserSpec(Model):
    """A local account (getent passwd): exists, uid, shell, home, groups."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
    exists: bool = True
    uid: int | None = Field(default=None, ge=0)
    shell: str | None = None
    home: str | None = None
    groups: list[str] = Field(default_factory=list, description="groups the user must be a member of")


class GroupSpec(Model):
    """A local group (getent group): exists, gid, members."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    exists: bool = True
    gid: int | None = Field(default=None, ge=0)
    members: list[str] = Field(default_factory=list, description="users that must be listed members")


class MountSpec(Model):
    """A mount point, its filesystem type and the options it must carry (from /proc/mounts)."""

    mount: str = Field(pattern=r"^/")
    fstype: str | None = None
    options: list[str] = Field(default_factory=list, description="e.g. [rw, noexec, nosuid]")
    absent_options: list[str] = Field(default_factory=list, description="options it must not carry")


class ListenSpec(Model):
    """A listening TCP socket: the port, optionally its address and the process that holds it."""

    port: int = Field(gt=0, lt=65536)
    address: str | None = None
    process: str | None = Field(default=None, description="name of the process that listens (ss -p)")


class ConnectionSpec(Model):
    """Established TCP connections to (or from) a port: the runbook's 'is the operator
    connected to :2206' (`netstat -an | grep :2206`)."""

    port: int = Field(gt=0, lt=65536)
    direction: Literal["out", "in", "any"] = Field(
        default="any", description="out: to a remote port; in: to a local port"
    )
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)


class TimeSync(Model):
    """The clock is synchronised (chrony or systemd-timesyncd) and its offset is small."""

    offset_max_ms: float = Field(default=100, gt=0, description="|offset| from the time source")


class HostChecks(Model):
    """What the host checks judge: thresholds and the declared state (files, packages, ...)."""

    mounts: list[str] | None = Field(default=None, description="filesystems to check (default: every real filesystem)")
    disk_warn_pct: float = Field(default=80, gt=0, le=100)
    disk_crit_pct: float = Field(default=90, gt=0, le=100)
    inode_warn_pct: float = Field(default=80, gt=0, le=100)
    inode_crit_pct: float = Field(default=90, gt=0, le=100)
    memory_min_available_pct: float = Field(default=10, ge=0, le=100)
    load_per_core_max: float = Field(default=2.0, gt=0, description="5-minute load average / cores")
    processes: list[str] = Field(default_factory=list, description="process names that must run")
    services: list[str] = Field(default_factory=list, description="systemd units that must be active")
    ports: list[ListenPort | ListenSpec] = Field(
        default_factory=list, description="listening TCP ports: 5432, '127.0.0.1:5432' or {port, address, process}"
    )
    files: list[FileSpec] = Field(default_factory=list)
    packages: list[PackageSpec] = Field(default_factory=list)
    users: list[UserSpec] = Field(default_factory=list)
    groups: list[GroupSpec] = Field(default_factory=list)
    sysctl: dict[str, str | int] = Field(
        default_factory=dict, description="kernel parameters and their values: {vm.swappiness: 10}"
    )
    mount_options: list[MountSpec] = Field(default_factory=list)
    connections: list[ConnectionSpec] = Field(default_factory=list)
    time_sync: TimeSync | None = Field(default=None, description="check time synchronisation (null: not checked)")
    failed_units_max: int | None = Field(default=None, ge=0, description="failed systemd units allowed")
    reboot_required: Literal[False] | None = Field(
        default=None, description="false: a pending reboot fails (null: not checked)"
    )
    security_updates_max: int | None = Field(
        default=None, ge=0, description="pending security updates allowed (apt, dnf/yum)"
    )

    @field_validator("sysctl")
    @classmethod
    def _sysctl_keys(cls, keys: dict) -> dict:
        for key in keys:
            if not re.fullmatch(r"[A-Za-z0-9_]+([./][A-Za-z0-9_*-]+)*", key):
                raise ValueError(f"not a sysctl key: {key!r}")
        return keys

    @model_validator(mode="after")
    def _warn_below_crit(self):
        if self.disk_warn_pct > self.disk_crit_pct or self.inode_warn_pct > self.inode_crit_pct:
            raise ValueError("warning thresholds must not be above critical ones")
        return self


class Host(Target, HostChecks):
    """A machine reached through testinfra: local://, ssh://user@host:port, docker://name."""

    spec: HostSpec = Field(default="local://", description="testinfra host spec (no password: keys or an agent)")

    def secrets(self) -> list[str]:
        return [self.spec]


class Fleet(HostChecks):
    """Hosts from an Ansible inventory (INI or YAML), as testinfra's ansible backend reads
    them, with the check settings of this entry and of their groups."""

    ansible_inventory: str = Field(description="path of the Ansible inventory (relative to this file)")
    pattern: str = Field(default="all", description="group or host names, ':' or ',' separated")
    ssh_config: str | None = Field(default=None, description="an ssh_config file for every host")
    timeout: float | None = Field(default=None, gt=0, le=300)
    severity_overrides: dict[str, Literal["p0", "p1", "p2", "p3"]] = Field(default_factory=dict)
    group_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per Ansible group: host check settings that override this entry's (in this order)",
    )


# --- the transport: one per host spec, one SSH connection per host ------------------------


class Transport:
    """Runs read-only scripts on one host; over ssh:// all of them share one connection.

    The first command to a remote host opens the connection (OpenSSH ControlMaster in a
    private directory) while later ones wait; once it is up they run concurrently over it.
    If it cannot be opened, every command fails at once with "blocked: <why>" (the host's
    own sweep reports <why> itself).
    """

    def __init__(self, spec: str, timeout: float):
        self.spec = spec
        self.timeout = timeout
        self.error: str | None = None
        self._first = threading.Lock()
        self._connected = spec.startswith("local://")  # nothing to connect to
        self.controlpath: str | None = None

    def _host(self) -> Any:
        seconds = max(1, round(self.timeout))
        if self.spec.startswith("ssh://"):
            self.controlpath = f"{_control_dir()}/{hashlib.sha256(self.spec.encode()).hexdigest()[:16]}"
            return testinfra.get_host(
                self.spec,
                timeout=seconds,
                controlpath=self.controlpath,
                controlpersist=60,
                ssh_extra_args=f"-o BatchMode=yes -o ServerAliveInterval={seconds} -o ServerAliveCountMax=2",
            )
        if self.spec.startswith("local://"):
            return testinfra.get_host(self.spec)
        return testinfra.get_host(self.spec, timeout=seconds)

    def run(self, script: str, seconds: int) -> Any:
        command = f"timeout {seconds} sh -c {shlex.quote(script)}"
        if self._connected:
            return self._host().run(command)
        with self._first:
            if self.error is not None:
                raise TargetUnreachable(blocked(self.error))
            if self._connected:
                return self._host().run(command)
            try:
                result = self._host().run(command)
            except Exception as exc:  # noqa: BLE001 - any backend error: the host cannot be reached
                self.error = f"{self.spec}: {_reason(exc)}"
                # the host's own checks show the cause (HostClient reads self.error); the other
                # families' targets on this host are blocked by it, whichever asked first
                raise TargetUnreachable(blocked(self.error)) from None
            self._connected = True
            return result

    def start_closing(self) -> subprocess.Popen | None:
        """Ask the ControlMaster to exit (the caller waits for the returned process)."""
        if not (self.controlpath and self._connected):
            return None
        try:
            return subprocess.Popen(
                ["ssh", "-S", self.controlpath, "-O", "exit", "opscheck"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return None


def _reason(exc: BaseException) -> str:
    """Why a command could not run (testinfra raises with the CommandResult of ssh)."""
    inner = exc.args[0] if exc.args else exc
    text = getattr(inner, "stderr", None) or str(exc)
    return clip_line(text, 300) or type(exc).__name__


_TRANSPORTS: dict[str, Transport] = {}
_TRANSPORTS_LOCK = threading.Lock()
_CONTROL: dict[str, str] = {}


def _control_dir() -> str:
    with _TRANSPORTS_LOCK:
        if "dir" not in _CONTROL:
            _CONTROL["dir"] = tempfile.mkdtemp(prefix="opscheck-ssh-", dir="/tmp")
            atexit.register(close_transports)
        return _CONTROL["dir"]


def transport(spec: str, timeout: float = 5) -> Transport:
    """The transport of a host spec (one per spec per process)."""
    with _TRANSPORTS_LOCK:
        if spec not in _TRANSPORTS:
            _TRANSPORTS[spec] = Transport(spec, timeout)
        return _TRANSPORTS[spec]


def close_transports() -> None:
    """Close the SSH connections opened this run (their ControlMaster processes)."""
    with _TRANSPORTS_LOCK:
        transports = list(_TRANSPORTS.values())
        _TRANSPORTS.clear()
    # all at once (twenty `ssh -O exit` one after another cost a run 0.15 s); processes, not
    # threads: this also runs at interpreter exit, where no thread pool takes new work
    closing = [p for p in (t.start_closing() for t in transports) if p is not None]
    deadline = time.monotonic() + 10
    for proc in closing:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    folder = _CONTROL.pop("dir", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def command_seconds(timeout: float) -> int:
    """How long a command on a host may run: four network timeouts, at least 5 s."""
    return max(5, round(timeout * 4))


def run_script(spec: str, script: str, seconds: int, timeout: float | None = None) -> Any:
    """Run a read-only shell script on a host, bounded by `timeout SECONDS` there.

    The one transport of every family that reads hosts (hosts, backups, logs,
    certificate_files): one connection per host, a dead host tried once.
    """
    return transport(spec, timeout if timeout is not None else max(1, seconds / 4)).run(script, seconds)


# --- the sweep -------------------------------------------------------------------------------

BASE_SWEEP = r"""
echo @@nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
echo @@loadavg; cat /proc/loadavg
echo @@meminfo; cat /proc/meminfo
echo @@df; df -P -T -k 2>/dev/null
echo @@dfi; df -P -i 2>/dev/null
echo @@procs
if procs=$(ps -e -o pid= -o comm= 2>/dev/null); then
  printf '%s\n' "$procs"; echo @@args; ps -e -o pid= -o args=
else
  for d in /proc/[0-9]*; do
    c=$(cat "$d/comm" 2>/dev/null) || continue
    printf '%s\t%s\n' "$c" "$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)"
  done
fi
echo @@listen
if listen=$(ss -Hltnp 2>/dev/null) && [ -n "$listen" ]; then printf '%s\n' "$listen"
else echo @@tcp; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; fi
echo @@units
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl list-units --type=service --all --no-legend --plain --no-pager 2>/dev/null
else
  echo NO_SYSTEMD
fi
echo @@mounts; cat /proc/mounts
"""


def sweep_script(host: HostChecks) -> str:
    """The host's sweep: the base facts, plus a section for each kind of state it declares."""
    parts = [BASE_SWEEP]
    if host.files:
        parts.append("echo @@files")
        for f in host.files:
            path = shlex.quote(f.path)
            parts.append(f"printf '%s\\n' {shlex.quote('@' + f.path)}")
            parts.append(f"stat -c '%F|%a|%U|%G|%s' {path} 2>/dev/null || echo MISSING")
            if f.sha256:
                parts.append(f"sha256sum {path} 2>/dev/null | cut -d' ' -f1 | sed 's/^/sha256 /'")
            for i, pattern in enumerate([*f.contains, *f.absent]):
                parts.append(f"printf 'grep {i} %s\\n' \"$(grep -c -E -e {shlex.quote(pattern)} {path} 2>&1)\"")
    if host.packages:
        names = " ".join(shlex.quote(p.name) for p in host.packages)
        parts.append("echo @@packages")
        parts.append(
            "if command -v dpkg-query >/dev/null 2>&1; then echo manager dpkg; "
            f"dpkg-query -W -f '${{Package}}\\t${{Version}}\\t${{db:Status-Abbrev}}\\n' {names} 2>/dev/null; "
            "elif command -v rpm >/dev/null 2>&1; then echo manager rpm; "
            f"rpm -q --qf '%{{NAME}}\\t%{{EPOCHNUM}}:%{{VERSION}}-%{{RELEASE}}\\tii\\n' {names} 2>/dev/null"
            " | grep -v 'is not installed'; "
            "else echo manager none; fi"
        )
    wanted_users = sorted({u.name for u in host.users} | {m for g in host.groups for m in g.members})
    if wanted_users:
        names = " ".join(shlex.quote(u) for u in wanted_users)
        parts.append(f'echo @@passwd; for u in {names}; do getent passwd "$u"; done')
        parts.append(
            f'echo @@memberships; for u in {names}; do printf \'%s:%s\\n\' "$u" "$(id -Gn "$u" 2>/dev/null)"; done'
        )
    if host.groups:
        names = " ".join(shlex.quote(g.name) for g in host.groups)
        parts.append(f'echo @@group; for g in {names}; do getent group "$g"; done')
    if host.sysctl:
        parts.append("echo @@sysctl")
        for key in host.sysctl:
            path = "/proc/sys/" + key.replace(".", "/")
            value = f'"$(cat {shlex.quote(path)} 2>/dev/null || echo @@none)"'
            parts.append(f"printf '%s\\t%s\\n' {shlex.quote(key)} {value}")
    if host.time_sync:
        parts.append(
            "echo @@time; if command -v chronyc >/dev/null 2>&1 && t=$(chronyc -n tracking 2>&1); then "
            'echo source chrony; printf "%s\\n" "$t"; '
            "elif command -v timedatectl >/dev/null 2>&1 && timedatectl show >/dev/null 2>&1; then "
            "echo source timesyncd; timedatectl show -p NTPSynchronized -p NTP; "
            "timedatectl timesync-status 2>/dev/null; else echo source none; fi"
        )
    if host.reboot_required is not None:
        parts.append(
            "echo @@reboot; if [ -e /run/reboot-required ] || [ -e /var/run/reboot-required ]; then echo required; "
            "cat /run/reboot-required.pkgs 2>/dev/null | head -n 20; "
            "elif command -v needs-restarting >/dev/null 2>&1; then needs-restarting -r >/dev/null 2>&1; "
            '[ "$?" = 1 ] && echo required || echo no; else echo no; fi'
        )
    if host.security_updates_max is not None:
        parts.append(
            "echo @@security; if command -v apt-get >/dev/null 2>&1; then echo manager apt; "
            "apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null | grep '^Inst' | grep -i securi | cut -d' ' -f2 ; "
            "elif command -v dnf >/dev/null 2>&1; then echo manager dnf; "
            "dnf -q -C updateinfo list --security 2>/dev/null | awk '{print $3}'; "
            "elif command -v yum >/dev/null 2>&1; then echo manager yum; "
            "yum -q -C updateinfo list security 2>/dev/null | awk '{print $3}'; else echo manager none; fi"
        )
    if host.connections:
        parts.append("echo @@established; ss -Htn state established 2>/dev/null || echo NO_SS")
    parts.append("echo @@end\n")
    return "\n".join(parts)


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
class FileStat:
    """What the sweep saw of a declared path (never its content)."""

    exists: bool
    type: str = ""
    mode: str = ""
    owner: str = ""
    group: str = ""
    size: int = 0
    sha256: str | None = None
    matches: dict[int, int | str] = field(default_factory=dict)  # pattern index -> count, or grep's error


@dataclass
class Listener:
    address: str
    port: int
    process: str | None  # None: ss is missing or did not show it


@dataclass
class Mount:
    device: str
    mount: str
    fstype: str
    options: list[str]


@dataclass
class TimeState:
    source: str  # chrony, timesyncd, none
    synchronised: bool
    offset_ms: float | None
    detail: str


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
    files: set[str] = field(default_factory=set)  # in-container paths that exist (docker family)
    listeners: list[Listener] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    file_stats: dict[str, FileStat] = field(default_factory=dict)
    package_manager: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # installed name -> version
    passwd: dict[str, list[str]] = field(default_factory=dict)  # name -> passwd fields
    memberships: dict[str, set[str]] = field(default_factory=dict)
    group_entries: dict[str, list[str]] = field(default_factory=dict)
    sysctl: dict[str, str | None] = field(default_factory=dict)
    time: TimeState | None = None
    reboot: tuple[bool, list[str]] | None = None
    security: tuple[str, list[str]] | None = None  # (manager, packages)
    established: list[tuple[str, int, str, int]] | None = None  # local addr, port, peer addr, port

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

    def listeners_on(self, spec: ListenSpec) -> list[Listener]:
        """The sockets listening on a port (on its address, or a wildcard that covers it)."""
        found = [x for x in self.listeners if x.port == spec.port]
        if not found:  # no ss on the host: /proc/net/tcp has no process names
            found = [Listener(a, p, None) for a, p in self.listening if p == spec.port]
        if spec.address:
            found = [x for x in found if x.address in {spec.address, "0.0.0.0", "::", "*"}]
        return found

    def failed_units(self) -> list[str]:
        return sorted(name for name, state in (self.units or {}).items() if state == "failed")


def split_sections(text: str) -> dict[str, list[str]]:
    """A sweep's output, `@@name` lines starting each section, as {name: lines}."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@") and " " not in line.strip():
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

    units = None
    if sections.get("units", ["NO_SYSTEMD"]) != ["NO_SYSTEMD"]:
        units = {}
        for line in sections["units"]:
            cols = line.split()
            if len(cols) >= 3:
                units[cols[0].removesuffix(".service")] = cols[2]

    listeners = _listeners(sections.get("listen", []))
    facts = HostFacts(
        cores=int(sections["nproc"][0]),
        load5=float(sections["loadavg"][0].split()[1]),
        mem_total_kb=meminfo.get("MemTotal", 0),
        mem_available_kb=meminfo.get("MemAvailable", meminfo.get("MemFree", 0)),
        filesystems=filesystems,
        processes=_processes(sections),
        # ss answers with the listeners; without it (busybox), /proc/net/tcp does, with no process names
        listening={(x.address, x.port) for x in listeners} | parse_listening(sections.get("tcp", [])),
        units=units,
        listeners=listeners,
        mounts=[_mount(line) for line in sections.get("mounts", []) if len(line.split()) >= 4],
    )
    _declared(facts, sections)
    return facts


def _processes(sections: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(comm, command line) per process, from `ps` (pid-keyed, two listings) or the /proc loop."""
    if "args" not in sections:
        return [_process(line) for line in sections["procs"] if "\t" in line]
    args = {}
    for line in sections["args"]:
        pid, _, rest = line.strip().partition(" ")
        args[pid] = rest.strip()
    found = []
    for line in sections["procs"]:
        pid, _, comm = line.strip().partition(" ")
        if pid.isdigit() and comm.strip():
            found.append((comm.strip(), args.get(pid, "")))
    return found


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


def _split_endpoint(text: str) -> tuple[str, int]:
    """'127.0.0.1:22', '[::]:22', '*:22', '[::ffff:1.2.3.4]:5' -> (address, port)."""
    address, _, port = text.rpartition(":")
    address = address.strip("[]")
    if address.startswith("::ffff:") and "." in address:
        address = address.removeprefix("::ffff:")
    if "%" in address:
        address = address.split("%", 1)[0]
    return address, int(port) if port.isdigit() else 0


PROCESS_NAME = re.compile(r'\(\("([^"]+)"')


def _listeners(lines: list[str]) -> list[Listener]:
    """`ss -Hltnp`: State Recv-Q Send-Q Local:Port Peer:Port [users:(("name",pid=1,fd=3))]."""
    found = []
    for line in lines:
        cols = line.split()
        if len(cols) < 5:
            continue
        address, port = _split_endpoint(cols[3])
        if address == "*":
            address = "0.0.0.0"
        name = PROCESS_NAME.search(line)
        found.append(Listener(address, port, name.group(1) if name else None))
    return found


def _mount(line: str) -> Mount:
    device, mount, fstype, options = line.split()[:4]
    return Mount(device, mount.replace("\\040", " "), fstype, options.split(","))


def _declared(facts: HostFacts, sections: dict[str, list[str]]) -> None:
    """The sections a host's declarations added to its sweep."""
    current: FileStat | None = None
    for line in sections.get("files", []):
        if line.startswith("@/"):
            current = facts.file_stats[line[1:]] = FileStat(exists=False)
        elif current is None:
            continue
        elif line == "MISSING":
            current.exists = False
        elif line.startswith("sha256 "):
            current.sha256 = line.split()[1]
        elif line.startswith("grep "):
            _, index, count = line.split(" ", 2)
            current.matches[int(index)] = int(count) if count.strip().isdigit() else count.strip()
        elif line.count("|") >= 4:
            kind, mode, owner, group, size = line.rsplit("|", 4)
            current.exists, current.type = True, _file_type(kind)
            current.mode, current.owner, current.group, current.size = mode.zfill(4), owner, group, int(size)
    for line in sections.get("packages", []):
        if line.startswith("manager "):
            facts.package_manager = line.split()[1]
            continue
        cols = line.split("\t")
        if len(cols) >= 3 and cols[2].startswith("i"):  # ii / iU ...: installed (dpkg), ii (rpm)
            facts.packages[cols[0]] = cols[1].removeprefix("0:") if facts.package_manager == "rpm" else cols[1]
    for line in sections.get("passwd", []):
        cols = line.split(":")
        if len(cols) >= 7:
            facts.passwd[cols[0]] = cols
    for line in sections.get("memberships", []):
        user, _, groups = line.partition(":")
        if groups.strip():
            facts.memberships[user] = set(groups.split())
    for line in sections.get("group", []):
        cols = line.split(":")
        if len(cols) >= 4:
            facts.group_entries[cols[0]] = cols
    for line in sections.get("sysctl", []):
        key, _, value = line.partition("\t")
        facts.sysctl[key] = None if value == "@@none" else " ".join(value.split())
    if "time" in sections:
        facts.time = parse_time_state(sections["time"])
    if "reboot" in sections:
        lines = sections["reboot"]
        facts.reboot = (bool(lines) and lines[0] == "required", [x for x in lines[1:] if x.strip()])
    if "security" in sections:
        lines = sections["security"]
        manager = lines[0].split()[1] if lines and lines[0].startswith("manager ") else "none"
        facts.security = (manager, sorted({x.strip() for x in lines[1:] if x.strip()}))
    if "established" in sections and sections["established"] != ["NO_SS"]:
        facts.established = []
        for line in sections["established"]:
            cols = line.split()
            if len(cols) >= 4:
                local, peer = _split_endpoint(cols[-2]), _split_endpoint(cols[-1])
                facts.established.append((*local, *peer))


def _file_type(kind: str) -> str:
    """stat's %F ('regular file', 'directory', 'symbolic link', ...) as a FileSpec type."""
    kind = kind.lower()
    for word, name in (
        ("regular", "file"),
        ("directory", "directory"),
        ("symbolic", "symlink"),
        ("socket", "socket"),
        ("fifo", "pipe"),
        ("block", "block"),
        ("character", "char"),
    ):
        if word in kind:
            return name
    return kind


def parse_time_state(lines: list[str]) -> TimeState:
    """chronyc tracking, or timedatectl show + timesync-status, as a TimeState."""
    source = lines[0].split()[1] if lines and lines[0].startswith("source ") else "none"
    body = lines[1:]
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in body) if v}
    if source == "chrony":
        leap = fields.get("Leap status", "")
        offset = None
        system = fields.get("System time", "")
        number = re.match(r"([0-9.]+) seconds (slow|fast)", system)
        if number:
            offset = float(number.group(1)) * 1000
        last = fields.get("Last offset", "")
        if offset is None and re.match(r"[+-]?[0-9.]+ seconds", last):
            offset = abs(float(last.split()[0])) * 1000
        ref = fields.get("Reference ID", "")
        synced = leap == "Normal" and not ref.startswith("00000000")
        return TimeState("chrony", synced, offset, f"leap status {leap or '?'}, reference {ref or '?'}")
    if source == "timesyncd":
        props = dict(line.split("=", 1) for line in body if "=" in line)
        synced = props.get("NTPSynchronized") == "yes"
        offset = None
        raw = fields.get("Offset")
        if raw:
            number = re.match(r"([+-]?[0-9.]+)(us|ms|s|min)", raw)
            if number:
                scale = {"us": 0.001, "ms": 1, "s": 1000, "min": 60000}[number.group(2)]
                offset = abs(float(number.group(1))) * scale
        return TimeState("timesyncd", synced, offset, f"NTPSynchronized={props.get('NTPSynchronized', '?')}")
    return TimeState("none", False, None, "neither chronyd nor systemd-timesyncd answers")


# --- reading hosts ---------------------------------------------------------------------------


class HostClient(TargetReader):
    """One host's facts, swept once per run through its transport."""

    def __init__(self, host: Host, timeout: float):
        super().__init__()
        self.host = host
        self.timeout = timeout

    @property
    def shown(self) -> str:
        return f'host "{self.host.name}" ({self.host.spec})'

    def facts(self) -> HostFacts:
        return self.once("facts", self._sweep)

    def gather(self) -> None:
        self.facts()

    def _sweep(self) -> HostFacts:
        try:
            result = run_script(self.host.spec, sweep_script(self.host), command_seconds(self.timeout), self.timeout)
            if result.rc != 0 and "@@end" not in result.stdout:
                raise RuntimeError(f"exit {result.rc}: {clip_line(result.stderr, 300)}")
            return parse(result.stdout)
        except TargetUnreachable as exc:  # another family's command met the dead host first
            error = transport(self.host.spec).error or str(exc)
            with self.lock:
                self.unreachable.fail(f"{self.shown}: cannot read facts: {error}")
        except Exception as exc:  # noqa: BLE001 - any backend error means "cannot read the host"
            with self.lock:
                self.unreachable.fail(f"{self.shown}: cannot read facts: {_reason(exc) or one_line(exc)}")


class HostSweeper:
    """The checks' view of the fleet: `hosts.facts(host)`, each host swept once."""

    def __init__(self, clients: Any):
        self.clients = clients

    def facts(self, host: Host) -> HostFacts:
        return self.clients.get(host).facts()


# --- comparing package versions --------------------------------------------------------------


def version_holds(manager: str, installed: str, constraint: str) -> bool:
    """Whether an installed version meets '>= 1.2' in its package manager's order."""
    op, wanted = re.match(r"(==|!=|>=|<=|>|<)\s*(\S+)", constraint).groups()  # type: ignore[union-attr]
    if manager == "rpm":
        order = rpm_compare(installed, wanted if ":" in wanted else f"0:{wanted}" if ":" in installed else wanted)
    else:
        order = debian_support.version_compare(installed, wanted)
    return {
        "==": order == 0,
        "!=": order != 0,
        ">=": order >= 0,
        "<=": order <= 0,
        ">": order > 0,
        "<": order < 0,
    }[op]


def rpm_compare(a: str, b: str) -> int:
    """rpm's order of [epoch:]version[-release] (rpmvercmp on each part)."""

    def split(v: str) -> tuple[str, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        version, _, release = rest.partition("-")
        return epoch or "0", version, release

    for x, y in zip(split(a), split(b), strict=True):
        order = _rpmvercmp(x, y)
        if order:
            return order
    return 0


def _rpmvercmp(a: str, b: str) -> int:
    """rpm's segment comparison: numbers numerically, letters lexically, '~' sorts first."""
    if a == b:
        return 0
    pattern = re.compile(r"~|\^|[0-9]+|[A-Za-z]+")
    xs, ys = pattern.findall(a), pattern.findall(b)
    for x, y in zip(xs, ys, strict=False):
        if x != y:
            if "~" in (x, y):
                return -1 if x == "~" else 1
            if "^" in (x, y):
                return 1 if x == "^" else -1
            if x.isdigit() != y.isdigit():
                return 1 if x.isdigit() else -1
            if x.isdigit():
                return (int(x) > int(y)) - (int(x) < int(y))
            return (x > y) - (x < y)
    if len(xs) == len(ys):
        return 0
    longer, sign = (xs, 1) if len(xs) > len(ys) else (ys, -1)
    extra = longer[min(len(xs), len(ys))]
    if extra == "~":
        return -sign
    return sign


# --- parametrization --------------------------------------------------------------------------


def listen_spec(entry: int | str | ListenSpec) -> ListenSpec:
    if isinstance(entry, ListenSpec):
        return entry
    address, _, port = str(entry).rpartition(":")
    return ListenSpec(port=int(port), address=address or None)


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the hosts family and the targets they run on."""
    hosts = inventory.hosts

    def each(condition) -> list[Param]:
        return [Param(h, h.name, h) for h in hosts if condition(h)]

    def items(values, label=lambda v: v) -> list[Param]:
        return [Param(Item(h, v), f"{h.name}:{label(v)}", h) for h in hosts for v in values(h)]

    return {
        "host": each(lambda h: True),
        "host_process": items(lambda h: h.processes),
        "host_service": items(lambda h: h.services),
        "host_port": items(lambda h: h.ports, _port_label),
        "host_file": items(lambda h: h.files, lambda f: f.path),
        "host_package": items(lambda h: h.packages, lambda p: p.name),
        "host_user": items(lambda h: h.users, lambda u: u.name),
        "host_group": items(lambda h: h.groups, lambda g: g.name),
        "host_sysctl": items(lambda h: list(h.sysctl.items()), lambda kv: kv[0]),
        "host_mount": items(lambda h: h.mount_options, lambda m: m.mount),
        "host_connection": items(lambda h: h.connections, lambda c: f"{c.direction}:{c.port}"),
        "host_time": each(lambda h: h.time_sync is not None),
        "host_units": each(lambda h: h.failed_units_max is not None),
        "host_reboot": each(lambda h: h.reboot_required is not None),
        "host_security": each(lambda h: h.security_updates_max is not None),
    }


def _port_label(entry: int | str | ListenSpec) -> str:
    if isinstance(entry, ListenSpec):
        where = f"{entry.address}:{entry.port}" if entry.address else str(entry.port)
        return f"{where}:{entry.process}" if entry.process else where
    return str(entry)


# --- fleets from an Ansible inventory ---------------------------------------------------------

FLEET_ONLY = {"ansible_inventory", "pattern", "ssh_config", "group_settings"}


def fleet_hosts(fleet: Fleet, base: Path) -> list[Host]:
    """The hosts an Ansible inventory names, each with the fleet's and its groups' settings."""
    path = Path(fleet.ansible_inventory)
    path = path if path.is_absolute() else base / path
    try:
        found = ansible.select(ansible.read_inventory(path), fleet.pattern)
    except ansible.AnsibleInventoryError as exc:
        raise ValueError(str(exc)) from None
    if not found:
        raise ValueError(f"{path}: no host matches pattern {fleet.pattern!r}")
    unknown = set(fleet.group_settings) - {g for h in ansible.read_inventory(path) for g in h.groups}
    if unknown:
        raise ValueError(f"group_settings: {', '.join(sorted(unknown))}: not a group of {path}")
    shared = fleet.model_dump(exclude_unset=True, exclude=FLEET_ONLY)
    hosts = []
    for entry in found:
        settings = dict(shared)
        for group, extra in fleet.group_settings.items():
            if group in entry.groups:
                settings.update(extra)
        ssh_config = settings.pop("ssh_config", fleet.ssh_config)
        try:
            spec = ansible.host_spec(entry, ssh_config)
            hosts.append(Host.model_validate({"name": entry.name, "spec": spec, **settings}))
        except ansible.AnsibleInventoryError as exc:
            raise ValueError(str(exc)) from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)
            )
            raise ValueError(f"host {entry.name} of {path}: {problems}") from None
    return hosts


def expand_fleets(entries: list[Host | Fleet], base: Path) -> list[Host]:
    """The inventory's hosts: its own entries, and each fleet's hosts in their place."""
    hosts: list[Host] = []
    for entry in entries:
        hosts += fleet_hosts(entry, base) if isinstance(entry, Fleet) else [entry]
    return hosts


def host_entry_kind(value: Any) -> str:
    """The discriminator of a `hosts:` entry: a fleet names an Ansible inventory."""
    if isinstance(value, dict):
        return "fleet" if "ansible_inventory" in value else "host"
    return "fleet" if isinstance(value, Fleet) else "host"


def _expand_in_place(entries: list[Host | Fleet], info: ValidationInfo) -> list[Host]:
    """Fleets become their hosts (Ansible inventory paths are relative to the inventory file)."""
    return expand_fleets(entries, (info.context or {}).get("base", Path(".")))


if TYPE_CHECKING:  # after validation every entry is a Host: fleets are expanded in place
    SECTION = list[Host]
else:  # the inventory's `hosts:` section: hosts and fleets, told apart by ansible_inventory
    SECTION = Annotated[
        list[Annotated[Annotated[Host, Tag("host")] | Annotated[Fleet, Tag("fleet")], Discriminator(host_entry_kind)]],
        AfterValidator(_expand_in_place),
    ]
