"""Comparisons across targets: a Ponder indexer's block in a real PostgreSQL (read as the
least-privilege role) against the chain head from a real JSON-RPC server's eth_blockNumber;
an env file's pool size x services against the server's usable connections. Broken: the
indexer 4,050 blocks behind, a rate-limited RPC provider, a stopped database."""

import pytest

from tests.conftest import run_suite
from tests.servers import PostgresServer, closed_port
from tests.servers_comparisons import JsonRpcChains

PASSWORD = "opscheck-Cmp-4410"
INDEXED = 950
RPC_BODY = {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": [], "id": 1}
INDEXED_BLOCK = "SELECT max(block_number) FROM ponder_checkpoint"
USABLE = "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("comparisons")
    (tmp / "ok.env").write_text("DB_MAX_CONNECTIONS=8\n")
    (tmp / "big.env").write_text("DB_MAX_CONNECTIONS=10\n")
    chains = JsonRpcChains({"base": INDEXED + 50, "moved-on": INDEXED + 4050}, rate_limited=("limited",))
    with chains, PostgresServer(extra_conf={"max_connections": 20, "superuser_reserved_connections": 3}) as pg:
        pg.psql("CREATE TABLE ponder_checkpoint (chain text, block_number bigint)")
        pg.psql(f"INSERT INTO ponder_checkpoint VALUES ('base', {INDEXED - 10}), ('base', {INDEXED})")
        pg.create_monitor_role("opscheck", PASSWORD)
        pg.psql("GRANT SELECT ON ponder_checkpoint TO opscheck")

        def rpc(name: str, chain: str) -> dict:
            return {"name": name, "url": chains.url(chain), "method": "POST", "body": RPC_BODY}

        def lag(name: str, rpc_target: str, database: str = "ponder-db") -> dict:
            return {
                "name": name,
                "left": {"http": rpc_target, "path": "result"},
                "right": {"postgres": database, "query": INDEXED_BLOCK},
                "difference": {"op": "<=", "value": 100},
                "unit": "blocks",
            }

        def pool(name: str, env: str) -> dict:
            return {
                "name": name,
                "left": {"config_files": env, "key": "DB_MAX_CONNECTIONS", "scale": 2},
                "right": {"postgres": "ponder-db", "query": USABLE},
                "op": "<=",
                "unit": "connections",
                "domain": "database",
                "severity": "p2",
                "schedule": ["weekly"],
            }

        inventory = {
            "environment": "selftest-comparisons",
            "hosts": [{"name": "here", "spec": "local://"}],
            "http": [rpc("base-rpc", "base"), rpc("moved-on-rpc", "moved-on"), rpc("limited-rpc", "limited")],
            "postgres": [
                {"name": "ponder-db", "dsn": pg.dsn("opscheck", PASSWORD)},
                {"name": "stopped-db", "dsn": f"postgresql://opscheck:{PASSWORD}@127.0.0.1:{closed_port()}/postgres"},
            ],
            "config_files": [
                {"name": n, "host": "here", "path": str(tmp / f"{n}.env"), "settings": [{"key": "DB_MAX_CONNECTIONS"}]}
                for n in ("ok", "big")
            ],
            "comparisons": [
                lag("indexer-lag", "base-rpc"),
                lag("indexer-behind", "moved-on-rpc"),
                lag("rpc-limited", "limited-rpc"),
                lag("database-down", "base-rpc", "stopped-db"),
                pool("pool-fits", "ok"),
                pool("pool-too-big", "big"),
            ],
        }
        yield run_suite(inventory, tmp / "run", "-k", "test_comparison_holds", "-m", "daily or weekly")


def test_indexer_lag(result):
    result.assert_passed("test_comparison_holds[indexer-lag]")
    result.assert_failed(
        "test_comparison_holds[indexer-behind]",
        'http "moved-on-rpc" result 5,000 - postgres "ponder-db" query 950 = 4,050 blocks; expected <= 100 blocks',
    )


def test_a_side_that_cannot_be_read_fails_the_comparison(result):
    result.assert_failed(
        "test_comparison_holds[rpc-limited]", "no value at 'result'", "HTTP 200", "rate limit exceeded"
    )
    result.assert_failed("test_comparison_holds[database-down]", 'postgres "stopped-db"', "cannot connect")


def test_pool_size_against_max_connections(result):
    result.assert_passed("test_comparison_holds[pool-fits]")
    result.assert_failed(
        "test_comparison_holds[pool-too-big]",
        'config_files "big" DB_MAX_CONNECTIONS x 2 20 connections <= postgres "ponder-db" query 17 connections '
        "does not hold",
    )
    check = result.checks["test_comparison_holds[pool-fits]"]
    assert check["severity"] == "p2" and check["schedule"] == "weekly", check
    assert check["family"] == "comparisons"


def test_bad_comparisons_stop_the_run(tmp_path):
    side = {"http": "rpc", "path": "result"}
    inventory = {
        "environment": "selftest-comparisons-bad",
        "http": [{"name": "rpc", "url": "http://127.0.0.1:9/"}],
        "comparisons": [
            {"name": "a", "left": side, "right": {"postgres": "db"}, "op": "=="},
            {"name": "b", "left": side, "right": side},
            {"name": "c", "left": side, "right": {"http": "rpc", "query": "SELECT 1"}, "op": "=="},
            {
                "name": "d",
                "left": side,
                "right": {"postgres": "db", "query": "SELECT pg_terminate_backend(1)"},
                "op": "==",
            },
        ],
    }
    result = run_suite(inventory, tmp_path)
    assert result.rc == 4, result.output
    for fragment in (
        "comparisons[0].right: Value error, postgres needs query",
        "comparisons[1]: Value error, give difference (a condition on left - right) or op",
        "comparisons[2].right: Value error, query goes with postgres",
        "comparisons[3].right: Value error, query calls pg_terminate_backend",
    ):
        assert fragment in result.output, result.output
    missing = run_suite(
        {
            **inventory,
            "comparisons": [{"name": "e", "left": side, "right": {"postgres": "db", "query": "SELECT 1"}, "op": "=="}],
        },
        tmp_path / "missing",
    )
    assert (
        missing.rc == 4 and "comparisons 'e': postgres: 'db' is not a target of the postgres section" in missing.output
    )
