"""The self-test services themselves work: a broken helper would make every self-test lie."""

import socket
import subprocess

import psycopg
import pytest
import redis
import requests

from tests.services import (
    BlackholeNamespace,
    HttpServer,
    PostgresServer,
    RedisServer,
    Route,
    SilentListener,
    closed_port,
)


def test_postgres_server_monitor_role_and_held_connections():
    with PostgresServer(extra_conf={"max_connections": 25}) as pg:
        assert pg.psql("SHOW max_connections").strip() == "25"
        assert pg.psql("SHOW superuser_reserved_connections").strip() == "3"
        pg.create_monitor_role("opscheck", "pw-1")
        with psycopg.connect(pg.dsn("opscheck", "pw-1"), connect_timeout=5) as conn:
            assert conn.execute("SELECT pg_has_role('pg_monitor', 'member')").fetchone() == (True,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE t (x int)")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(pg.dsn("opscheck", "wrong"), connect_timeout=5)
        with pytest.raises(RuntimeError, match="no_such_table"):
            pg.psql("SELECT * FROM no_such_table")
        with pg.hold_connections(3, "opscheck", "pw-1"):
            held = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'opscheck'"
            assert pg.psql(held).strip() == "3"
        data_dir = pg.dir
    assert not data_dir.exists()


def test_redis_server_with_password_and_extra_args():
    with RedisServer("--maxmemory", "1mb", "--requirepass", "s3cret") as srv:
        srv.client().set("k", "v")
        with redis.Redis.from_url(srv.url("s3cret"), socket_timeout=5) as client:
            assert client.get("k") == b"v"
            assert client.config_get("maxmemory") == {"maxmemory": "1048576"}
        anonymous = redis.Redis.from_url(srv.url(), socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
        anonymous.close()
        proc = srv.proc
    assert proc.poll() is not None


def test_http_server_routes_methods_and_hits():
    routes = {"/json": Route(body={"status": "ok"}, headers={"X-Test": "1"}),
              "/down": Route(status=503, body=b"down"),
              "/slow": Route(delay=0.3),
              "/rpc": Route(methods=("POST",))}
    with HttpServer(routes) as srv:
        response = requests.get(srv.url("/json?x=1"), timeout=5)
        assert response.json() == {"status": "ok"}
        assert response.headers["X-Test"] == "1"
        assert response.headers["Content-Type"] == "application/json"
        assert requests.get(srv.url("/down"), timeout=5).status_code == 503
        assert requests.get(srv.url("/rpc"), timeout=5).status_code == 405
        assert requests.post(srv.url("/rpc"), data=b"x", timeout=5).status_code == 200
        assert requests.get(srv.url("/nope"), timeout=5).status_code == 404
        with pytest.raises(requests.Timeout):
            requests.get(srv.url("/slow"), timeout=0.1)
        assert srv.hits["/json"] == 1 and srv.hits["/rpc"] == 2


def test_closed_port_refuses():
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port()), timeout=1)


def test_silent_listener_accepts_and_never_answers():
    with SilentListener() as listener:
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", listener.port), timeout=1) as sock:
                sock.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    sock.recv(1)
        assert listener.accepts == 2


def test_blackhole_namespace_swallows_connects():
    try:
        namespace = BlackholeNamespace()
    except RuntimeError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    with namespace, pytest.raises(TimeoutError):
        socket.create_connection((namespace.address, 80), timeout=0.5)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    assert namespace.name not in listed.stdout
