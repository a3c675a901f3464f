"""Read-only by construction: a Redis write never leaves the client."""

import pytest

from opscheck.core.errors import OpscheckError
from opscheck.families.redis import Redis, RedisClient
from tests.servers import RedisServer


def test_redis_client_refuses_writes_before_sending_them():
    with RedisServer() as server:
        client = RedisClient(Redis(name="q", url=server.url()), timeout=5)
        server.client().execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")  # log every command
        server.client().ping()
        for command in (
            ("SET", "k", "v"),
            ("FLUSHALL",),
            ("CONFIG", "SET", "maxmemory", "1"),
            ("DEL", "k"),
            ("SLOWLOG", "RESET"),
            ("LATENCY", "RESET"),
        ):
            with pytest.raises(OpscheckError, match="not a read-only command"):
                client.command(*command)
        assert client.command("PING") is True
        assert client.command("SLOWLOG", "GET", 1) and client.command("SLOWLOG", "LEN") > 0  # still there
        assert server.client().dbsize() == 0
        assert server.client().config_get("maxmemory")["maxmemory"] == "0"
        client.close()
