"""Unreachable targets fail fast and cost one timeout, once.

Three kinds of dead: a closed port (refused at once), a listener that accepts and never
answers (the client's timeout), and an address in a network namespace whose packets are
dropped (no answer at all, not even a refusal). "One timeout per target" is proven by
counting the connection attempts the silent listener receives, not by timing.
"""

import time

import pytest

from tests.conftest import run_suite
from tests.servers import BlackholeNamespace, SilentListener

TIMEOUT = 2  # seconds per network call in these inventories (libpq's minimum connect_timeout)
TEN_CHECKS = ["-k", "select_1 or connections_below or sql_assertion"]


def ten_postgres_checks(name, dsn):
    """A target with 10 checks on it: select_1, 2 connection checks and 7 SQL assertions."""
    assertions = [{"name": f"a{i}", "query": f"SELECT {i}", "op": "==", "value": i} for i in range(7)]
    return {"name": name, "dsn": dsn, "timeout": TIMEOUT, "assertions": assertions}


@pytest.fixture
def silent():
    with SilentListener() as listener:
        yield listener


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_silent_postgres_costs_one_connection_attempt(silent, xdist, tmp_path):
    inventory = {
        "environment": "selftest-dead",
        "postgres": [ten_postgres_checks("silent", f"postgresql://u:p@127.0.0.1:{silent.port}/db")],
    }
    result = run_suite(inventory, tmp_path, *TEN_CHECKS, *xdist)
    assert result.rc == 1, result.output
    outcomes = [c["outcome"] for c in result.checks.values()]
    assert outcomes == ["failed"] * 10, "failures, not errors"
    messages = [c["message"] for c in result.checks.values()]
    assert sum("blocked:" in m for m in messages) == 9
    assert silent.accepts == 1, f"{silent.accepts} connection attempts for one dead target"


def test_three_silent_postgres_probed_at_once(silent, tmp_path):
    """The pg_stat_statements probe (at collection, before any check) asks every target at
    once: three silent servers cost one timeout there, as one does, not three in a row."""
    dsn = f"postgresql://u:p@127.0.0.1:{silent.port}/db"

    def run(targets: int) -> float:
        inventory = {
            "environment": "selftest-dead",
            "postgres": [{"name": f"silent{i}", "dsn": dsn, "timeout": TIMEOUT} for i in range(targets)],
        }
        started = time.monotonic()
        result = run_suite(inventory, tmp_path / str(targets), "-k", "select_1 or slow_statements")
        assert result.rc == 1, result.output
        assert [c["outcome"] for c in result.checks.values()] == ["failed"] * 2 * targets, result.output
        return time.monotonic() - started

    one, three = run(1), run(3)
    assert silent.accepts == 4, f"{silent.accepts} connection attempts for 1 + 3 dead targets"
    assert three - one < TIMEOUT, f"3 targets {three:.1f} s, 1 target {one:.1f} s: the probes waited in turn"


def test_silent_redis_and_http_cost_one_attempt_each(silent, tmp_path):
    inventory = {
        "environment": "selftest-dead",
        "redis": [{"name": "silent", "url": f"redis://127.0.0.1:{silent.port}/0", "timeout": 1}],
        "http": [
            {
                "name": "silent",
                "url": f"http://127.0.0.1:{silent.port}/health",
                "timeout": 1,
                "json": [{"path": "status", "value": "ok"}],
                "response_headers": {"X-Ok": None},
            }
        ],
    }
    result = run_suite(inventory, tmp_path, "-k", "not (clients or evictions or rejected or persistence)")
    assert result.rc == 1
    assert [c["outcome"] for c in result.checks.values()] == ["failed"] * 7
    assert result.message("test_http_status[silent]") or result.message("test_http_json_conditions[silent]")
    assert sum("blocked:" in c["message"] for c in result.checks.values()) == 5
    assert silent.accepts == 2, "one connection for redis, one for http"


def test_blackholed_address_fails_after_one_timeout(tmp_path):
    try:
        namespace = BlackholeNamespace()
    except RuntimeError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    with namespace:
        inventory = {
            "environment": "selftest-dead",
            "postgres": [ten_postgres_checks("blackhole", f"postgresql://u:p@{namespace.address}:5432/db")],
        }
        result = run_suite(inventory, tmp_path, *TEN_CHECKS)
    assert result.rc == 1
    first = [c for c in result.checks.values() if "blocked:" not in c["message"]]
    assert len(first) == 1 and "timeout" in first[0]["message"].lower(), first
    assert sum(c["duration"] for c in result.checks.values()) < 2 * TIMEOUT + 2


def test_silent_api_costs_one_attempt_for_all_key_checks(silent, tmp_path):
    """The API-key checks make their own requests: the first timeout blocks the others."""
    inventory = {
        "environment": "selftest-dead-api",
        "http": [
            {
                "name": "api",
                "url": f"http://127.0.0.1:{silent.port}/v1/me",
                "timeout": 1,
                "security": {
                    "hsts_min_max_age": None,
                    "nosniff": False,
                    "absent_headers": [],
                    "server_version_hidden": False,
                    "api_key": {"key": "${DEAD_API_KEY}", "revoked_key": "${DEAD_REVOKED_KEY}"},
                },
            }
        ],
    }
    result = run_suite(
        inventory,
        tmp_path,
        "-k",
        "api_key or revoked",
        env={"DEAD_API_KEY": "sk_test_Dead123", "DEAD_REVOKED_KEY": "sk_test_Revoked456"},
    )
    key_checks = [c for c in result.checks.values() if c["outcome"] == "failed"]
    assert len(key_checks) == 3, result.output
    assert sum("blocked:" in c["message"] for c in key_checks) == 2, [c["message"] for c in key_checks]
    assert silent.accepts == 1, f"{silent.accepts} connection attempts"


def test_xdist_run_without_postgres_checks_never_connects(silent, tmp_path):
    """`-m redis -n 2` with a PostgreSQL target in the inventory: no connection attempt at all."""
    inventory = {
        "environment": "selftest-dead-unselected",
        "postgres": [ten_postgres_checks("silent", f"postgresql://u:p@127.0.0.1:{silent.port}/db")],
        "hosts": [{"name": "here"}],
    }
    result = run_suite(inventory, tmp_path, "-m", "host", "-n", "2")
    assert result.checks and not any("postgres" in check for check in result.checks), result.output
    assert silent.accepts == 0, f"{silent.accepts} connection attempts to an unselected target"
