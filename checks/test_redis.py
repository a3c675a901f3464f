"""Redis family: PING, round-trip latency and memory headroom, from read-only commands.

Memory is read from INFO, not CONFIG: managed Redis (ElastiCache) disables CONFIG.
"""

import time

import pytest

from opscheck.core.checking import expect, fmt, growth_since_last_run, pct

pytestmark = [pytest.mark.redis]


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "Redis does not answer PING (runbook: `redis-cli PING`). Is the server up "
    "(`docker compose ps redis`), reachable, and is the password right? Queues and caches "
    "stop while it is down."
)
def test_redis_ping(redis, rd):
    expect(rd.command("PING") is True, f"{rd.shown}: PING did not answer PONG")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "Redis round trips are slower than the limit (runbook: 'If > 10ms'). Likely causes: slow "
    "commands (`SLOWLOG GET 10`), memory pressure and swapping, a saturated network or CPU. "
    "Look at `LATENCY LATEST` and `INFO commandstats`."
)
def test_redis_latency_below_limit(redis, rd):
    # The average, as `redis-cli --latency` reports it: one slow sample (this process paused,
    # the scheduler busy) does not decide, a server that is slow on every PING does.
    samples = sorted(rd.ping_ms() for _ in range(redis.latency_samples))
    average = sum(samples) / len(samples)
    if average < redis.max_latency_ms:
        return
    # LATENCY LATEST names the server-side events (needs latency-monitor-threshold > 0)
    events = [f"{e[0]} latest {e[2]} ms, max {e[3]} ms" for e in rd.command("LATENCY", "LATEST") or []]
    expect(
        False,
        f"{rd.shown}: PING average {average:.1f} ms over {len(samples)} samples (median "
        f"{samples[len(samples) // 2]:.1f} ms, max {samples[-1]:.1f} ms) >= limit {redis.max_latency_ms:g} ms; "
        "LATENCY LATEST: "
        + ("; ".join(events) or "no events (latency-monitor-threshold unset, or the delay is in the network)"),
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Redis memory is close to its limit: it will evict keys (queues lose jobs) or refuse "
    "writes with OOM errors (runbook: `redis-cli info memory | grep used_memory_human`). "
    "Look at the biggest keys (`redis-cli --bigkeys`), queue backlogs, TTLs and maxmemory."
)
def test_redis_memory_below_limit(redis, rd):
    info = rd.info("memory")
    used, maxmemory = int(info["used_memory"]), int(info.get("maxmemory", 0))
    limit, what = maxmemory, "maxmemory"
    if not maxmemory:  # no maxmemory: Redis grows until the host runs out
        limit, what = int(info.get("total_system_memory", 0)), "the host's memory (no maxmemory)"
    expect(limit > 0, f"{rd.shown}: INFO gives neither maxmemory nor total_system_memory")
    used_pct = pct(used, limit)
    expect(
        used_pct < redis.memory_max_pct,
        f"{rd.shown}: used_memory {fmt(used / 1048576)} MiB = {used_pct:.0f}% of {what} "
        f"{fmt(limit / 1048576)} MiB >= limit {redis.memory_max_pct:g}%",
    )


# --- queues ------------------------------------------------------------------------------

QUEUE_HINT = (
    "A job queue is backing up (runbook: `redis-cli LLEN action_jobs`; > 10,000 is "
    "QUEUE_HIGH_DEPTH, 50,000 is CRITICAL_QUEUE_DEPTH, where the producer rejects new jobs). "
    "Are the workers running and healthy (`docker compose logs action-worker`), is a "
    "downstream (RPC, LLM API) slow or failing, did a circuit breaker open?"
)


def _queue_depth(rd, item, level: str, limit: int):
    queue = item.value
    kind, depth = rd.depth(queue.key)
    if kind == "none":
        expect(
            queue.may_be_absent,
            f"{rd.shown}: queue key {queue.key} does not exist (a typo? LLEN of a "
            "missing key is 0, so it would pass forever); set may_be_absent if expected",
        )
        return
    expect(depth < limit, f"{queue.key} depth {fmt(depth)} ({kind}) >= {level} {fmt(limit)} ({rd.shown})")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(QUEUE_HINT)
def test_redis_queue_depth_below_warning(redis_queue, rd):
    _queue_depth(rd, redis_queue, "warning", redis_queue.value.warn)


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(QUEUE_HINT)
def test_redis_queue_depth_below_critical(redis_queue, rd):
    _queue_depth(rd, redis_queue, "critical", redis_queue.value.crit)


# --- memory policy, clients, evictions, rejected connections ------------------------------


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.runbook(
    "maxmemory-policy is not what the inventory expects: a queue store must not "
    "evict (noeviction), a cache should (allkeys-lru). Check the parameter group "
    "(ElastiCache) or redis.conf."
)
def test_redis_eviction_policy_as_expected(redis_eviction_policy, rd):
    policy = rd.info("memory").get("maxmemory_policy")
    expected = redis_eviction_policy.eviction_policy
    expect(policy == expected, f"{rd.shown}: maxmemory_policy {policy}, expected {expected}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Connected clients are close to maxclients: new connections will be refused "
    "(ERR max number of clients reached). Look for a client that leaks connections."
)
def test_redis_clients_below_limit(redis, rd):
    clients = int(rd.info("clients")["connected_clients"])
    maxclients = int(rd.info("clients").get("maxclients") or rd.info("server").get("maxclients") or 10000)
    expect(
        pct(clients, maxclients) < redis.clients_max_pct,
        f"{rd.shown}: {fmt(clients)} connected clients = {pct(clients, maxclients):.0f}% of maxclients "
        f"{fmt(maxclients)} >= limit {redis.clients_max_pct:g}%",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "Clients are blocked (BLPOP, WAIT, XREAD BLOCK) beyond what this server should "
    "have: a consumer waits on a key nothing writes to."
)
def test_redis_blocked_clients_below_limit(redis_blocked_limit, rd):
    blocked = int(rd.info("clients")["blocked_clients"])
    limit = redis_blocked_limit.blocked_clients_max
    expect(blocked <= limit, f"{rd.shown}: {blocked} blocked clients > limit {limit}")


def _new_since_last_run(rd, redis, field: str, state, remember) -> tuple[float, str]:
    """(growth of the INFO stats counter `field` since the last run, 'previous -> now')."""
    value = int(rd.info("stats")[field])
    new, previous = growth_since_last_run(state, remember, f"redis:{redis.name}:{field}", value)
    return new, f"({previous} -> {value})"


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "Redis evicted keys since the last run: it hit maxmemory and dropped data "
    "(queued jobs are lost with a volatile/allkeys policy). Raise maxmemory or "
    "find what grew."
)
def test_redis_no_new_evictions(redis, rd, state, remember):
    new, change = _new_since_last_run(rd, redis, "evicted_keys", state, remember)
    expect(new == 0, f"{rd.shown}: {fmt(new)} keys evicted since the last run {change}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Redis refused connections since the last run (maxclients reached): clients "
    "got errors. Look at connected_clients and connection leaks."
)
def test_redis_no_new_rejected_connections(redis, rd, state, remember):
    new, change = _new_since_last_run(rd, redis, "rejected_connections", state, remember)
    expect(new == 0, f"{rd.shown}: {fmt(new)} connections rejected since the last run {change}")


# --- persistence and replication ----------------------------------------------------------


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Redis failed to persist: the last background save or AOF write failed (disk "
    "full, permissions, fork failure for lack of memory). With stop-writes-on-"
    "bgsave-error it refuses writes. Look at the Redis log."
)
def test_redis_persistence_ok(redis, rd):
    info = rd.info("persistence")
    problems = []
    if info.get("rdb_last_bgsave_status", "ok") != "ok":
        problems.append(f"rdb_last_bgsave_status {info['rdb_last_bgsave_status']}")
    if int(info.get("aof_enabled", 0)):
        for field in ("aof_last_write_status", "aof_last_bgrewrite_status"):
            if info.get(field, "ok") != "ok":
                problems.append(f"{field} {info[field]}")
    expect(not problems, f"{rd.shown}: " + ", ".join(problems))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The last RDB snapshot is old: a restart would lose everything since. Is the "
    "save schedule set, and are background saves failing?"
)
def test_redis_last_save_recent(redis_rdb, rd):
    info = rd.info("persistence")
    age_h = (time.time() - int(info["rdb_last_save_time"])) / 3600
    expect(
        age_h < redis_rdb.last_save_max_age_h,
        f"{rd.shown}: last RDB save {age_h:.1f} h ago >= limit {redis_rdb.last_save_max_age_h:g} h "
        f"({fmt(int(info.get('rdb_changes_since_last_save', 0)))} changes since)",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Redis replication is not as expected: a failover changed roles, or a replica "
    "lost its master (master_link_status down) and serves stale data. Look at "
    "INFO replication on both sides and at the master's reachability."
)
def test_redis_replication_as_expected(redis_replication, rd):
    info = rd.info("replication")
    role = "replica" if info["role"] == "slave" else info["role"]
    expect(role == redis_replication.role, f"{rd.shown}: role {role}, expected {redis_replication.role}")
    if role == "replica":
        expect(
            info.get("master_link_status") == "up",
            f"{rd.shown}: master_link_status {info.get('master_link_status')} (master "
            f"{info.get('master_host')}:{info.get('master_port')}, down for "
            f"{info.get('master_link_down_since_seconds', '?')} s)",
        )
        lag = int(info.get("master_last_io_seconds_ago", -1))
        expect(
            0 <= lag < redis_replication.replica_lag_max_s,
            f"{rd.shown}: last contact with master {lag} s ago >= limit {redis_replication.replica_lag_max_s:g} s",
        )
