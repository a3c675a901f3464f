"""Redis family: PING, round-trip latency and memory headroom, from read-only commands.

Memory is read from INFO, not CONFIG: managed Redis (ElastiCache) disables CONFIG.
"""

import pytest

from fixtures.checking import expect, fmt, pct

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
    samples = sorted(rd.ping_ms() for _ in range(redis.latency_samples))
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    expect(
        p99 < redis.max_latency_ms,
        f"{rd.shown}: PING p99 {p99:.1f} ms over {len(samples)} samples (median "
        f"{samples[len(samples) // 2]:.1f} ms) >= limit {redis.max_latency_ms:g} ms",
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
