"""Container environment variables from `docker inspect`, judged without showing a value:
ENABLE_HSTS=true on a real container passes, false or unset fails, and a DATABASE_URL
without sslmode=verify-full fails without its value (or its password) reaching any report."""

import pytest

from tests.conftest import run_suite
from tests.servers_docker import docker_server  # noqa: F401 - the session's engine

pytestmark = pytest.mark.timeout(120)

PASSWORD = "S3cr3t-Pw-991"
GOOD_URL = f"postgresql://app:{PASSWORD}@db:5432/agentauri_backend?sslmode=verify-full&sslrootcert=/certs/root.crt"
BAD_URL = f"postgresql://app:{PASSWORD}@db:5432/agentauri_backend?sslmode=disable"
CONTAINERS = {
    "env-good": ("sleep 100000", {"environment": {"ENABLE_HSTS": "true", "DATABASE_URL": GOOD_URL, "DB_POOL": "50"}}),
    "env-bad": ("sleep 100000", {"environment": {"ENABLE_HSTS": "false", "DATABASE_URL": BAD_URL, "DB_POOL": "x"}}),
    "env-none": ("sleep 100000", {}),
}
SETTINGS = [
    {"key": "ENABLE_HSTS", "value": "true", "domains": ["security"]},
    {"name": "db-sslmode", "key": "DATABASE_URL", "op": "matches", "value": "sslmode=(verify-ca|verify-full)"},
    {"key": "DB_POOL", "op": ">=", "value": 20},
]


@pytest.fixture(scope="module")
def result(docker_server, tmp_path_factory):  # noqa: F811
    docker_server.run_many(CONTAINERS)
    for name in CONTAINERS:
        docker_server.wait(name, lambda a: a["State"]["Running"], 30, "running")
    inventory = {
        "environment": "selftest-docker-env",
        "docker": [
            {
                "name": "engine",
                "engine": docker_server.url,
                "containers": [{"name": n, "env": SETTINGS} for n in CONTAINERS],
            }
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("env"), "-k", "env_as_expected")


def test_env_as_expected(result):
    result.assert_passed(
        "test_container_env_as_expected[engine:env-good:ENABLE_HSTS]",
        "test_container_env_as_expected[engine:env-good:db-sslmode]",
        "test_container_env_as_expected[engine:env-good:DB_POOL]",
    )
    result.assert_failed(
        "test_container_env_as_expected[engine:env-bad:ENABLE_HSTS]",
        "ENABLE_HSTS in env-bad: == 'true' does not hold (value not shown)",
    )
    result.assert_failed(
        "test_container_env_as_expected[engine:env-bad:db-sslmode]",
        "DATABASE_URL in env-bad: matches 'sslmode=(verify-ca|verify-full)' does not hold (value not shown)",
    )
    result.assert_failed("test_container_env_as_expected[engine:env-bad:DB_POOL]", "DB_POOL in env-bad is not a number")
    result.assert_failed(
        "test_container_env_as_expected[engine:env-none:ENABLE_HSTS]", "ENABLE_HSTS is not set in env-none"
    )


def test_markers_come_from_the_entry(result):
    check = result.checks["test_container_env_as_expected[engine:env-good:ENABLE_HSTS]"]
    assert check["severity"] == "p2" and "daily" in check["schedule"], check


def test_values_never_reach_a_report(result):
    texts = [result.output] + [p.read_text(errors="replace") for p in result.reports_dir.rglob("*") if p.is_file()]
    for text in texts:
        assert PASSWORD not in text
        assert "sslmode=disable" not in text and "verify-full&" not in text
