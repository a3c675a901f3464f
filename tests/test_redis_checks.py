"""Redis family against real redis-server processes: healthy, stopped, wrong password,
memory over its limit, and slow (a second client keeps the server busy with DEBUG SLEEP)."""

import threading
import time

import pytest

from tests.conftest import run_suite
from tests.servers import Misbehaving, RedisServer, closed_port, dripping

PASSWORD = "redis-Pw-4471"


@pytest.fixture(scope="module")
def healthy():
    with RedisServer("--requirepass", PASSWORD) as srv:
        yield srv


@pytest.fixture(scope="module")
def full():
    """maxmemory 2 MB with noeviction, filled past 90 %."""
    with RedisServer("--maxmemory", "2mb", "--maxmemory-policy", "noeviction") as srv:
        client = srv.client()
        chunk = "x" * 10_000
        try:
            for i in range(400):
                client.set(f"fill:{i}", chunk)
        except Exception:  # noqa: BLE001 - OOM from noeviction: full enough
            pass
        yield srv


@pytest.fixture(scope="module")
def busy():
    """A server kept busy: three clients queue 30 ms DEBUG SLEEPs back to back, so every
    PING waits behind the sleeps queued before it (about 90 ms; with one such client,
    PINGs slip in between its sleeps and their average can stay under the limit)."""
    with RedisServer("--enable-debug-command", "yes", "--latency-monitor-threshold", "10") as srv:
        stop = threading.Event()

        def keep_busy(client):
            while not stop.is_set():
                client.execute_command("DEBUG", "SLEEP", "0.03")

        threads = [threading.Thread(target=keep_busy, args=(srv.client(),), daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        yield srv
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


@pytest.fixture(scope="module")
def result(healthy, full, busy, tmp_path_factory):
    inventory = {
        "environment": "selftest-redis",
        "redis": [
            {"name": "queue", "url": healthy.url(PASSWORD)},
            {"name": "stopped", "url": f"redis://127.0.0.1:{closed_port()}/0"},
            {"name": "wrong-password", "url": healthy.url("not-the-password")},
            {"name": "full", "url": full.url(), "memory_max_pct": 90},
            {"name": "busy", "url": busy.url(), "max_latency_ms": 10, "latency_samples": 10},
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("redis"))


def test_healthy_server_passes(result):
    result.assert_passed(
        "test_redis_ping[queue]", "test_redis_latency_below_limit[queue]", "test_redis_memory_below_limit[queue]"
    )


def test_stopped_server_fails_then_blocks(result):
    result.assert_failed("test_redis_ping[stopped]", "cannot connect")
    result.assert_failed("test_redis_latency_below_limit[stopped]", "blocked:")
    result.assert_failed("test_redis_memory_below_limit[stopped]", "blocked:")


def test_wrong_password_fails_without_leaking_it(result):
    message = result.assert_failed("test_redis_ping[wrong-password]")
    assert "not-the-password" not in result.output and PASSWORD not in result.output
    assert "***" in message


def test_memory_over_limit_fails(result):
    result.assert_failed("test_redis_memory_below_limit[full]", "of maxmemory", ">= limit 90%")
    result.assert_passed("test_redis_ping[full]")


def test_slow_server_fails_latency(result):
    result.assert_failed(
        "test_redis_latency_below_limit[busy]", "PING average", ">= limit 10 ms", "LATENCY LATEST: command latest"
    )


def speak_http(conn, stop):
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def test_a_server_that_is_not_redis_fails_once_and_clearly(tmp_path):
    """Something else on the port (an HTTP server): one clear failure naming the target, then
    "blocked:"; it was a redis-py traceback in every check."""
    with Misbehaving(speak_http) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        result = run_suite(
            {"environment": "selftest-not-redis", "redis": [{"name": "web", "url": url}]}, tmp_path, "-m", "daily"
        )
    first = result.assert_failed("test_redis_ping[web]", 'redis "web"', "not a Redis reply")
    assert "Traceback" not in first and "site-packages" not in first, first
    result.assert_failed("test_redis_memory_below_limit[web]", "blocked:")


def test_a_reply_that_never_ends_costs_one_deadline(tmp_path):
    """redis-py's timeout is per read: a reply a byte every half second never trips it. The
    client's deadline cuts it (twice the timeout); the run ends, the rest say "blocked:"."""
    with Misbehaving(dripping(b"+", b"x")) as server:  # a simple-string reply that never ends
        url = f"redis://127.0.0.1:{server.port}/0"
        inventory = {
            "environment": "selftest-endless-redis",
            "defaults": {"timeout": 1},
            "redis": [{"name": "drip", "url": url}],
        }
        started = time.monotonic()
        result = run_suite(inventory, tmp_path, "-m", "daily", "--timeout=15", timeout=120)
        took = time.monotonic() - started
    assert result.rc == 1, result.output[-3000:]
    assert took < 60, f"the run took {took:.0f} s"
    result.assert_failed("test_redis_ping[drip]", 'redis "drip"', "no complete reply within 2 s")
