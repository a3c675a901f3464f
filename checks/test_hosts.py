"""Host family: disk, inodes, memory, load, processes, services, sockets, and the state the
inventory declares (files, packages, users, groups, sysctl, mounts, time sync, failed units,
pending reboot, security updates, established connections): what testinfra and goss check.

Every check reads the host's facts from ONE sweep (fixtures/hosts.py) and judges them
locally, so twenty-five checks on a remote host cost one round trip.
"""

import pytest

from opscheck.core.checking import expect, fmt, pct
from opscheck.families.hosts import listen_spec, version_holds

pytestmark = [pytest.mark.host]

DISK_HINT = (
    "A full filesystem stops databases, loses logs and fails deploys. Likely causes: log files "
    "or data growth, old images or backups. Look at `du -xh --max-depth=2 <mount> | sort -h`, "
    "log rotation, `docker system df`; clean up or grow the volume (runbook: 'Disk space full')."
)
INODE_HINT = (
    "No free inodes means no new files even with free space. Likely causes: many small files "
    "(sessions, caches, mail queues). Look at `df -i` and count files per directory."
)


def _filesystems(host, facts):
    """The filesystems to judge: those the inventory names, else every real one."""
    if host.mounts is None:
        return list(facts.filesystems.values())
    missing = [m for m in host.mounts if m not in facts.filesystems]
    expect(not missing, f"host {host.name!r}: mount(s) not found: {', '.join(missing)}")
    return [facts.filesystems[m] for m in host.mounts]


def _usage_below(host, hosts, attr: str, limit: float, level: str, what: str):
    facts = hosts.facts(host)
    over = [
        f"{fs.mount} {getattr(fs, attr):.0f}% {what} >= {level} {limit:g}%"
        for fs in _filesystems(host, facts)
        if getattr(fs, attr) is not None and getattr(fs, attr) >= limit
    ]
    expect(not over, f"host {host.name!r}: " + "; ".join(over))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(DISK_HINT)
def test_filesystem_usage_below_warning(host, hosts):
    _usage_below(host, hosts, "used_pct", host.disk_warn_pct, "warning", "used")


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(DISK_HINT)
def test_filesystem_usage_below_critical(host, hosts):
    _usage_below(host, hosts, "used_pct", host.disk_crit_pct, "critical", "used")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(INODE_HINT)
def test_inode_usage_below_warning(host, hosts):
    _usage_below(host, hosts, "inode_used_pct", host.inode_warn_pct, "warning", "of inodes used")


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(INODE_HINT)
def test_inode_usage_below_critical(host, hosts):
    _usage_below(host, hosts, "inode_used_pct", host.inode_crit_pct, "critical", "of inodes used")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Little available memory leads to swapping and the OOM killer (runbook: 'Memory leaks', "
    "'Resource Exhaustion'). Look at `ps aux --sort=-rss | head`, `docker stats --no-stream`, "
    "and the kernel log for OOM kills; restart the leaking service or add memory."
)
def test_memory_available(host, hosts):
    facts = hosts.facts(host)
    available = pct(facts.mem_available_kb, facts.mem_total_kb)
    expect(
        available >= host.memory_min_available_pct,
        f"host {host.name!r}: {available:.1f}% memory available "
        f"({fmt(facts.mem_available_kb // 1024)} of {fmt(facts.mem_total_kb // 1024)} MiB) "
        f"< minimum {host.memory_min_available_pct:g}%",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A 5-minute load above the limit per core means work is queueing for CPU or I/O "
    "(runbook: 'High memory/CPU usage preventing task processing'). Look at `top`, "
    "`vmstat 1 5` (wa column for I/O wait) and `docker stats --no-stream`."
)
def test_load_per_core_below_limit(host, hosts):
    facts = hosts.facts(host)
    per_core = facts.load5 / max(1, facts.cores)
    expect(
        per_core < host.load_per_core_max,
        f"host {host.name!r}: 5-minute load {facts.load5:.2f} on {facts.cores} core(s) = "
        f"{per_core:.2f} per core >= limit {host.load_per_core_max:g}",
    )


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "A process the service needs is not running. Look at the service's logs "
    "(`journalctl -u <unit>` or `docker logs`) for why it exited, then start it."
)
def test_process_running(host_process, hosts):
    host, name = host_process.target, host_process.value
    facts = hosts.facts(host)
    expect(
        facts.process_running(name),
        f"host {host.name!r}: no process named {name!r} ({len(facts.processes)} processes seen)",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A systemd unit is not active. Look at `systemctl status <unit>` and "
    "`journalctl -u <unit> --since -1h` for the reason it stopped or failed."
)
def test_service_active(host_service, hosts):
    host, unit = host_service.target, host_service.value
    facts = hosts.facts(host)
    expect(
        facts.units is not None,
        f"host {host.name!r}: has no systemd, so unit {unit!r} cannot be checked (list it under processes instead)",
    )
    state = facts.units.get(unit.removesuffix(".service"), "not found")
    expect(state == "active", f"host {host.name!r}: unit {unit!r} is {state}, expected active")


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "Nothing listens on a port the service should serve (runbook: `netstat -an | grep :2206`), "
    "or another process holds it. The process is down, bound to another address, or still "
    "starting; look at `ss -ltnp` and the service's logs."
)
def test_port_listening(host_port, hosts):
    host, spec = host_port.target, listen_spec(host_port.value)
    facts = hosts.facts(host)
    found = facts.listeners_on(spec)
    where = f"{spec.address}:{spec.port}" if spec.address else str(spec.port)
    ports = sorted({p for _, p in facts.listening})
    expect(found, f"host {host.name!r}: nothing listens on TCP {where} (listening: {ports[:30]})")
    if spec.process:
        holders = sorted({x.process or "?" for x in found})
        expect(
            any(x.process == spec.process for x in found),
            f"host {host.name!r}: TCP {where} is held by {', '.join(holders)}, expected {spec.process!r}"
            + (" (ss shows no process names: is ss installed, and the sweep run as root?)" if holders == ["?"] else ""),
        )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A file is missing or not as declared: wrong type, mode, owner, size, checksum or content "
    "(testinfra `host.file`, goss `file:`). A deploy did not run, a config was edited by hand, "
    "or permissions drifted. Look at `ls -l`, `stat`, `sha256sum` and the config management run."
)
def test_host_file_as_declared(host_file, hosts):
    host, spec = host_file.target, host_file.value
    stat = hosts.facts(host).file_stats.get(spec.path)
    where = f"host {host.name!r}: {spec.path}"
    if not spec.exists:
        expect(stat is None or not stat.exists, f"{where} exists ({stat and stat.type}), expected absent")
        return
    expect(stat is not None and stat.exists, f"{where} does not exist")
    problems = []
    if spec.type and stat.type != spec.type:
        problems.append(f"is a {stat.type}, expected {spec.type}")
    if spec.mode and int(stat.mode, 8) != int(spec.mode, 8):
        problems.append(f"mode {stat.mode}, expected {spec.mode.zfill(4)}")
    if spec.owner and stat.owner != spec.owner:
        problems.append(f"owner {stat.owner}, expected {spec.owner}")
    if spec.group and stat.group != spec.group:
        problems.append(f"group {stat.group}, expected {spec.group}")
    if spec.size_min is not None and stat.size < spec.size_min:
        problems.append(f"size {fmt(stat.size)} B < minimum {fmt(spec.size_min)} B")
    if spec.size_max is not None and stat.size > spec.size_max:
        problems.append(f"size {fmt(stat.size)} B > maximum {fmt(spec.size_max)} B")
    if spec.sha256 and (stat.sha256 or "").lower() != spec.sha256.lower():
        problems.append(f"sha256 {stat.sha256 or 'unreadable'}, expected {spec.sha256.lower()}")
    for i, pattern in enumerate([*spec.contains, *spec.absent]):
        count = stat.matches.get(i, "not searched")
        wanted = i < len(spec.contains)
        if not isinstance(count, int):
            problems.append(f"cannot search for /{pattern}/: {count}")
        elif wanted and count == 0:
            problems.append(f"no line matches /{pattern}/")
        elif not wanted and count > 0:
            problems.append(f"{count} line(s) match /{pattern}/, which must not appear")
    expect(not problems, f"{where}: " + "; ".join(problems))


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A package is missing, present where it must not be, or at another version than declared "
    "(testinfra `host.package`). Look at `dpkg -l <name>` / `rpm -q <name>`, the package "
    "manager's log (/var/log/apt/history.log, /var/log/dnf.log) and the last deploy."
)
def test_host_package_as_declared(host_package, hosts):
    host, spec = host_package.target, host_package.value
    facts = hosts.facts(host)
    where = f"host {host.name!r}: package {spec.name}"
    expect(facts.package_manager != "none", f"{where}: the host has neither dpkg nor rpm")
    installed = facts.packages.get(spec.name)
    if not spec.installed:
        expect(installed is None, f"{where} {installed} is installed, expected absent")
        return
    expect(installed is not None, f"{where} is not installed ({facts.package_manager})")
    if spec.version:
        expect(
            version_holds(facts.package_manager, installed, spec.version),
            f"{where}: version {installed} does not meet {spec.version} ({facts.package_manager} order)",
        )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A local account is missing or differs from the declaration: uid, shell, home or group "
    "membership (testinfra `host.user`). Look at `getent passwd <user>`, `id <user>`, and who "
    "changed it (/var/log/auth.log); services may fail to read their files."
)
def test_host_user_as_declared(host_user, hosts):
    host, spec = host_user.target, host_user.value
    facts = hosts.facts(host)
    entry = facts.passwd.get(spec.name)
    where = f"host {host.name!r}: user {spec.name}"
    if not spec.exists:
        expect(entry is None, f"{where} exists (uid {entry and entry[2]}), expected absent")
        return
    expect(entry is not None, f"{where} does not exist")
    problems = []
    if spec.uid is not None and int(entry[2]) != spec.uid:
        problems.append(f"uid {entry[2]}, expected {spec.uid}")
    if spec.shell and entry[6] != spec.shell:
        problems.append(f"shell {entry[6]}, expected {spec.shell}")
    if spec.home and entry[5] != spec.home:
        problems.append(f"home {entry[5]}, expected {spec.home}")
    member_of = facts.memberships.get(spec.name, set())
    missing = [g for g in spec.groups if g not in member_of]
    if missing:
        problems.append(f"not a member of {', '.join(missing)} (groups: {', '.join(sorted(member_of)) or 'none'})")
    expect(not problems, f"{where}: " + "; ".join(problems))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A local group is missing, has another gid, or lacks a member (testinfra `host.group`). "
    "Look at `getent group <group>` and the config management run; access to sockets and "
    "files (docker.sock, log folders) depends on it."
)
def test_host_group_as_declared(host_group, hosts):
    host, spec = host_group.target, host_group.value
    facts = hosts.facts(host)
    entry = facts.group_entries.get(spec.name)
    where = f"host {host.name!r}: group {spec.name}"
    if not spec.exists:
        expect(entry is None, f"{where} exists (gid {entry and entry[2]}), expected absent")
        return
    expect(entry is not None, f"{where} does not exist")
    problems = []
    if spec.gid is not None and int(entry[2]) != spec.gid:
        problems.append(f"gid {entry[2]}, expected {spec.gid}")
    listed = set(filter(None, entry[3].split(",")))
    primary = {u for u, cols in facts.passwd.items() if cols[3] == entry[2]}
    missing = [m for m in spec.members if m not in listed | primary]
    if missing:
        problems.append(f"{', '.join(missing)} not a member (members: {', '.join(sorted(listed)) or 'none'})")
    expect(not problems, f"{where}: " + "; ".join(problems))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A kernel parameter differs from the declared value (testinfra `host.sysctl`). It was "
    "never set persistently (/etc/sysctl.d/), or reset by a reboot. Look at `sysctl <key>` "
    "and `grep -r <key> /etc/sysctl.conf /etc/sysctl.d/`."
)
def test_host_sysctl_as_declared(host_sysctl, hosts):
    host, (key, wanted) = host_sysctl.target, host_sysctl.value
    actual = hosts.facts(host).sysctl.get(key)
    expect(actual is not None, f"host {host.name!r}: sysctl {key} does not exist on this kernel")
    expect(
        actual == " ".join(str(wanted).split()),
        f"host {host.name!r}: sysctl {key} = {actual}, expected {wanted}",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A filesystem is not mounted as declared: missing, another type, or without an option "
    "(noexec, nosuid, ro) the hardening needs (testinfra `host.mount_point`). Look at "
    "`findmnt <mount>` and /etc/fstab; a remount fixes it until the next boot, fstab for good."
)
def test_host_mount_options(host_mount, hosts):
    host, spec = host_mount.target, host_mount.value
    mounts = [m for m in hosts.facts(host).mounts if m.mount == spec.mount]
    expect(mounts, f"host {host.name!r}: {spec.mount} is not a mount point")
    mount = mounts[-1]  # the one on top
    problems = []
    if spec.fstype and mount.fstype != spec.fstype:
        problems.append(f"type {mount.fstype}, expected {spec.fstype}")
    missing = [o for o in spec.options if o not in mount.options]
    if missing:
        problems.append(f"without option(s) {', '.join(missing)}")
    present = [o for o in spec.absent_options if o in mount.options]
    if present:
        problems.append(f"with option(s) {', '.join(present)}, which must not be set")
    expect(not problems, f"host {host.name!r}: {spec.mount} ({','.join(mount.options)}): " + "; ".join(problems))


TIME_HINT = (
    "The clock is not synchronised or drifts: TLS, token expiry, log correlation and "
    "replication break in odd ways. Look at `chronyc tracking` / `chronyc sources -v` or "
    "`timedatectl timesync-status`, and whether NTP (UDP 123) reaches the time servers."
)


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(TIME_HINT)
def test_host_time_synchronised(host_time, hosts):
    host = host_time
    state = hosts.facts(host).time
    expect(
        state is not None and state.synchronised,
        f"host {host.name!r}: clock not synchronised ({state.source if state else '?'}: "
        f"{state.detail if state else 'not read'})",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(TIME_HINT)
def test_host_time_offset_below_limit(host_time, hosts):
    host, limit = host_time, host_time.time_sync.offset_max_ms
    state = hosts.facts(host).time
    expect(
        state is not None and state.offset_ms is not None,
        f"host {host.name!r}: no clock offset known ({state.source if state else '?'}: "
        f"{state.detail if state else 'not read'})",
    )
    expect(
        state.offset_ms < limit,
        f"host {host.name!r}: clock offset {state.offset_ms:.3f} ms >= limit {limit:g} ms ({state.source})",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "systemd units have failed (goss `service`, `systemctl --failed`). Look at "
    "`systemctl status <unit>` and `journalctl -u <unit> -b` for why; `systemctl reset-failed` "
    "only hides it."
)
def test_host_no_failed_units(host_units, hosts):
    host = host_units
    facts = hosts.facts(host)
    expect(facts.units is not None, f"host {host.name!r}: has no systemd, so failed units cannot be checked")
    failed = facts.failed_units()
    expect(
        len(failed) <= host.failed_units_max,
        f"host {host.name!r}: {len(failed)} failed unit(s) > limit {host.failed_units_max}: {', '.join(failed[:20])}",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The host waits for a reboot (/run/reboot-required, `needs-restarting -r`): a kernel or "
    "libc update is installed but not running, so the fix it brings is not in effect. Plan "
    "the reboot in a maintenance window (drain the host first)."
)
def test_host_no_reboot_required(host_reboot, hosts):
    host = host_reboot
    required, packages = hosts.facts(host).reboot or (False, [])
    expect(
        not required,
        f"host {host.name!r}: a reboot is required" + (f" (by {', '.join(packages[:10])})" if packages else ""),
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "Security updates are pending (`apt list --upgradable`, `dnf updateinfo list --security`). "
    "Apply them (unattended-upgrades, a patch window); the count is from the host's package "
    "lists as last refreshed, so an old list undercounts."
)
def test_host_security_updates_below_limit(host_security, hosts):
    host = host_security
    manager, packages = hosts.facts(host).security or ("none", [])
    expect(manager != "none", f"host {host.name!r}: no apt, dnf or yum to ask for security updates")
    expect(
        len(packages) <= host.security_updates_max,
        f"host {host.name!r}: {len(packages)} pending security update(s) > limit {host.security_updates_max} "
        f"({manager}: {', '.join(packages[:10])}{', ...' if len(packages) > 10 else ''})",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Too few (or too many) established TCP connections to a port (runbook: `netstat -an | "
    "grep :2206`, 'is the operator connected'). The client is down or cannot reach the server "
    "(DNS, firewall, credentials); look at `ss -tnp state established '( dport = :PORT )'` "
    "on both sides and at the client's logs."
)
def test_host_connections_established(host_connection, hosts):
    host, spec = host_connection.target, host_connection.value
    established = hosts.facts(host).established
    expect(established is not None, f"host {host.name!r}: no `ss` on the host to list connections")
    found = [
        c
        for c in established
        if (spec.direction in ("out", "any") and c[3] == spec.port)
        or (spec.direction in ("in", "any") and c[1] == spec.port)
    ]
    what = {"out": f"to remote port {spec.port}", "in": f"to local port {spec.port}", "any": f"on port {spec.port}"}
    peers = ", ".join(sorted({f"{c[2]}:{c[3]}" for c in found})[:10])
    expect(
        len(found) >= spec.min,
        f"host {host.name!r}: {len(found)} established connection(s) {what[spec.direction]} < minimum {spec.min}",
    )
    expect(
        spec.max is None or len(found) <= spec.max,
        f"host {host.name!r}: {len(found)} established connection(s) {what[spec.direction]} > maximum "
        f"{spec.max} ({peers})",
    )
