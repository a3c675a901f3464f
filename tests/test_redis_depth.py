"""Redis in depth, against real redis-server processes: queues, clients, evictions,
persistence and replication, read as a least-privilege ACL user.

Broken for real: lists filled past 10,000 and 50,000, a misspelt queue key, maxclients
reached, a client blocked in BLPOP, keys evicted at maxmemory, a background save that
fails (its directory is /proc), a replica whose master goes away.
"""

import contextlib
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import run_suite
from tests.servers import RedisServer

ACL_PASSWORD = "acl-Reader-3318"
# What opscheck needs and nothing more (the README gives the same line).
READER_ACL = [
    "on",
    f">{ACL_PASSWORD}",
    "~*",
    "-@all",
    "+ping",
    "+info",
    "+type",
    "+exists",
    "+llen",
    "+xlen",
    "+zcard",
    "+scard",
    "+hlen",
    "+ttl",
    "+dbsize",
    "+latency|latest",
    "+slowlog|get",
    "+client|setname",
]


def reader_url(server):
    return f"redis://opscheck:{ACL_PASSWORD}@127.0.0.1:{server.port}/0"


@pytest.fixture(scope="module")
def jobs():
    with RedisServer("--maxmemory-policy", "noeviction") as srv:
        client = srv.client()
        client.execute_command("ACL", "SETUSER", "opscheck", *READER_ACL)
        for key, n in (("action_jobs", 12_000), ("flood_jobs", 51_000)):
            for start in range(0, n, 5000):
                client.rpush(key, *range(start, min(n, start + 5000)))
        client.xadd("events", {"id": "1"})
        yield srv


def jobs_inventory(srv, **extra):
    return {
        "environment": "selftest-redis-depth",
        "redis": [
            {
                "name": "jobs",
                "url": reader_url(srv),
                "eviction_policy": "noeviction",
                "queues": [
                    {"key": "action_jobs"},
                    {"key": "flood_jobs"},
                    {"key": "acton_jobs"},
                    {"key": "idle_jobs", "may_be_absent": True},
                    {"key": "events"},
                ],
                **extra,
            }
        ],
    }


def test_queue_depths_against_warning_and_critical(jobs, tmp_path):
    result = run_suite(jobs_inventory(jobs), tmp_path, "-k", "queue")
    result.assert_failed(
        "test_redis_queue_depth_below_warning[jobs:action_jobs]", "action_jobs depth 12,000 (list) >= warning 10,000"
    )
    result.assert_passed("test_redis_queue_depth_below_critical[jobs:action_jobs]")
    result.assert_failed("test_redis_queue_depth_below_critical[jobs:flood_jobs]", ">= critical 50,000")
    result.assert_failed("test_redis_queue_depth_below_warning[jobs:acton_jobs]", "acton_jobs does not exist")
    result.assert_passed(
        "test_redis_queue_depth_below_warning[jobs:idle_jobs]", "test_redis_queue_depth_below_critical[jobs:events]"
    )


def test_least_privilege_user_runs_every_check(jobs, tmp_path):
    result = run_suite(jobs_inventory(jobs, queues=[]), tmp_path)
    assert result.rc == 0, result.output
    assert len(result.checks) >= 8
    assert ACL_PASSWORD not in result.output


def test_wrong_eviction_policy_fails(jobs, tmp_path):
    result = run_suite(jobs_inventory(jobs, eviction_policy="allkeys-lru", queues=[]), tmp_path, "-k", "eviction")
    result.assert_failed("test_redis_eviction_policy_as_expected[jobs]", "noeviction, expected allkeys-lru")


@pytest.fixture
def small():
    with RedisServer("--maxclients", "8", "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as srv:
        yield srv


def test_clients_blocked_rejected_and_evicted(small, tmp_path):
    inventory = {
        "environment": "selftest-redis-small",
        "redis": [{"name": "small", "url": small.url(), "blocked_clients_max": 0}],
    }
    first = run_suite(inventory, tmp_path, "-k", "new_ or clients")
    assert first.rc == 0, first.output
    held = []
    try:
        blocker = redis.Redis(port=small.port, socket_timeout=10)
        blocker.execute_command("CLIENT", "ID")
        held.append(blocker)
        blocking = blocker.connection_pool.make_connection()
        blocking.send_command("BLPOP", "nothing", 0)  # on a key nothing writes: a blocked client
        for _ in range(10):  # past maxclients 8: the last ones are rejected
            conn = redis.Redis(port=small.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
            with contextlib.suppress(redis.ConnectionError):
                conn.ping()
            held.append(conn)
        writer = held[1]
        for i in range(400):  # 4 MB into 2 MB with allkeys-lru: evictions
            writer.set(f"k{i}", "x" * 10_000)
        for conn in held[6:]:
            conn.close()  # leave room for opscheck's own connection
        deadline = time.monotonic() + 10  # until the server has seen them go (a loaded machine is slow)
        while held[0].info("clients")["connected_clients"] > 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = run_suite(inventory, tmp_path, "-k", "new_ or clients")
    finally:
        blocking.disconnect()
        for conn in held:
            conn.close()
    second.assert_failed("test_redis_clients_below_limit[small]", "of maxclients 8")
    second.assert_failed("test_redis_blocked_clients_below_limit[small]", "1 blocked clients > limit 0")
    second.assert_failed("test_redis_no_new_rejected_connections[small]", "connections rejected since the last run")
    second.assert_failed("test_redis_no_new_evictions[small]", "keys evicted since the last run")


def test_failed_background_save_and_old_snapshot_fail(tmp_path):
    with RedisServer("--dir", "/proc") as srv:  # nothing can be written there
        srv.client().execute_command("BGSAVE")
        time.sleep(1.5)
        inventory = {
            "environment": "selftest-redis-persist",
            "redis": [
                {"name": "broken", "url": srv.url(), "persistence": "rdb", "last_save_max_age_h": 0.0003},
                {"name": "fresh", "url": srv.url(), "persistence": "rdb"},
            ],
        }
        result = run_suite(inventory, tmp_path, "-k", "persistence or save")
    result.assert_failed("test_redis_persistence_ok[broken]", "rdb_last_bgsave_status err")
    # 0.0003 h (about 1 s) is a tiny limit on a real reading: no save ever succeeded here
    result.assert_failed("test_redis_last_save_recent[broken]", "last RDB save", ">= limit 0.0003 h")
    result.assert_passed("test_redis_last_save_recent[fresh]")


def test_replica_loses_its_master(tmp_path):
    master = RedisServer().__enter__()
    try:
        with RedisServer("--replicaof", "127.0.0.1", str(master.port)) as replica:
            client = replica.client()
            deadline = time.monotonic() + 15
            while client.info("replication").get("master_link_status") != "up" and time.monotonic() < deadline:
                time.sleep(0.1)
            inventory = {
                "environment": "selftest-redis-repl",
                "redis": [
                    {"name": "master", "url": master.url(), "role": "master"},
                    {"name": "replica", "url": replica.url(), "role": "replica"},
                    {"name": "wrong-role", "url": replica.url(), "role": "master"},
                ],
            }
            healthy = run_suite(inventory, tmp_path / "up", "-k", "replication")
            healthy.assert_passed(
                "test_redis_replication_as_expected[master]", "test_redis_replication_as_expected[replica]"
            )
            healthy.assert_failed("test_redis_replication_as_expected[wrong-role]", "role replica, expected master")
            master.stop()
            time.sleep(1)
            down = run_suite(inventory, tmp_path / "down", "-k", "replication and replica")
    finally:
        master.stop()
    down.assert_failed("test_redis_replication_as_expected[replica]", "master_link_status down")


def test_tls_with_ca_file_passes_and_without_it_fails(tmp_path):
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key"}
    ca.cert_pem.write_to_path(paths["ca"])
    leaf.cert_chain_pems[0].write_to_path(paths["cert"])
    leaf.private_key_pem.write_to_path(paths["key"])
    with RedisServer(tls={k: str(v) for k, v in paths.items()}) as srv:
        url = f"rediss://127.0.0.1:{srv.port}/0"
        inventory = {
            "environment": "selftest-redis-tls",
            "redis": [
                {"name": "verified", "url": url, "tls_ca_file": str(paths["ca"])},
                {"name": "unknown-ca", "url": url},
                {"name": "plain", "url": f"redis://127.0.0.1:{srv.port}/0", "timeout": 1},
            ],
        }
        result = run_suite(inventory, tmp_path / "run", "-k", "ping")
    result.assert_passed("test_redis_ping[verified]")
    result.assert_failed("test_redis_ping[unknown-ca]", "certificate verify failed")
    result.assert_failed("test_redis_ping[plain]", "cannot connect")
