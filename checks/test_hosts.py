"""Host family: disk, inodes, memory, load, processes, services and ports.

Every check reads the host's facts from ONE sweep (fixtures/hosts.py) and judges them
locally, so twenty-five checks on a remote host cost one round trip.
"""

import pytest

from opscheck.core.checking import expect, fmt, pct

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
    "Nothing listens on a port the service should serve (runbook: `netstat -an | grep :2206`). "
    "The process is down, bound to another address, or still starting; look at `ss -ltnp` and "
    "the service's logs."
)
def test_port_listening(host_port, hosts):
    host, port = host_port.target, host_port.value
    facts = hosts.facts(host)
    ports = sorted({p for _, p in facts.listening})
    expect(facts.port_listening(port), f"host {host.name!r}: nothing listens on TCP {port} (listening: {ports[:30]})")
