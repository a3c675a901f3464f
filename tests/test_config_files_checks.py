"""Configuration files on a host (through the host transport): an .env with DATABASE_URL and
DB_MAX_CONNECTIONS, a YAML and a TOML file, judged by key without showing a value; a
missing file, a missing key, a wrong value; the other variables of the .env never read."""

import pytest

from tests.conftest import run_suite

PASSWORD = "Pw-0f-the-db-8812"
OTHER_SECRET = "sk_live_never_leaves_the_host_5521"


def _env(path, url: str, pool: str) -> None:
    path.write_text(
        f"# AgentAuri\nexport DATABASE_URL='{url}'\nDB_MAX_CONNECTIONS={pool}  # was 20\nSTRIPE_KEY={OTHER_SECRET}\n"
    )


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("config")
    good, bad = tmp / "good.env", tmp / "bad.env"
    base = f"postgresql://postgres:{PASSWORD}@localhost:5432/agentauri_backend"
    _env(good, f"{base}?sslmode=verify-full&sslrootcert=./docker/postgres/certs/root.crt", "50")
    _env(bad, f"{base}?sslmode=disable", "5")
    (tmp / "app.yaml").write_text("database:\n  pool: {max_connections: 40}\nfeatures: {hsts: true}\n")
    (tmp / "app.toml").write_text('[database]\nmax_connections = 10\nurl = "x"\n')
    for fmt in ("json", "yaml"):  # nested past Python's recursion limit: the parsers raised RecursionError
        (tmp / f"deep.{fmt}").write_text("[" * 100_000)
    settings = [
        {
            "name": "sslmode",
            "key": "DATABASE_URL",
            "op": "matches",
            "value": "sslmode=(require|verify-ca|verify-full)",
            "severity": "p1",
            "domains": ["tls", "database", "security"],
        },
        {"name": "sslrootcert", "key": "DATABASE_URL", "op": "matches", "value": "sslrootcert=\\S*root\\.crt"},
        {"key": "DB_MAX_CONNECTIONS", "op": ">=", "value": 20, "schedule": ["weekly"]},
        {"key": "DB_MISSING", "op": "exists"},
    ]
    structured = [
        {"name": "pool", "key": "database.pool.max_connections", "op": ">=", "value": 20},
        {"name": "hsts", "key": "features.hsts", "op": "==", "value": True},
    ]
    inventory = {
        "environment": "selftest-config-files",
        "hosts": [{"name": "here", "spec": "local://"}],
        "config_files": [
            {"name": "good-env", "host": "here", "path": str(good), "settings": settings},
            {"name": "bad-env", "host": "here", "path": str(bad), "settings": settings},
            {"name": "yaml", "host": "here", "path": str(tmp / "app.yaml"), "format": "yaml", "settings": structured},
            {
                "name": "toml",
                "host": "here",
                "path": str(tmp / "app.toml"),
                "format": "toml",
                "settings": structured[:1],
            },
            *(
                {"name": f"deep-{fmt}", "host": "here", "path": str(tmp / f"deep.{fmt}"), "format": fmt}
                | {"settings": structured[:1]}
                for fmt in ("json", "yaml")
            ),
            {"name": "gone", "spec": "local://", "path": str(tmp / "nothing.env"), "settings": settings[:1]},
        ],
    }
    return run_suite(inventory, tmp / "run", "-m", "daily or weekly")


def test_env_file(result):
    result.assert_passed(
        "test_config_setting_as_expected[good-env:sslmode]",
        "test_config_setting_as_expected[good-env:sslrootcert]",
        "test_config_setting_as_expected[good-env:DB_MAX_CONNECTIONS]",
    )
    result.assert_failed(
        "test_config_setting_as_expected[bad-env:sslmode]",
        "DATABASE_URL in ",
        "matches 'sslmode=(require|verify-ca|verify-full)' does not hold (value not shown)",
    )
    result.assert_failed("test_config_setting_as_expected[bad-env:sslrootcert]", "does not hold (value not shown)")
    result.assert_failed(
        "test_config_setting_as_expected[bad-env:DB_MAX_CONNECTIONS]", ">= 20 does not hold (value not shown)"
    )
    result.assert_failed("test_config_setting_as_expected[good-env:DB_MISSING]", "DB_MISSING is not set in ")


def test_structured_files(result):
    result.assert_passed("test_config_setting_as_expected[yaml:pool]", "test_config_setting_as_expected[yaml:hsts]")
    result.assert_failed("test_config_setting_as_expected[toml:pool]", "database.pool.max_connections is not set")


def test_a_file_nested_too_deep_is_not_valid(result):
    result.assert_failed("test_config_setting_as_expected[deep-json:pool]", "not valid json (RecursionError)")
    result.assert_failed("test_config_setting_as_expected[deep-yaml:pool]", "not valid yaml (RecursionError)")


def test_missing_file(result):
    result.assert_failed("test_config_setting_as_expected[gone:sslmode]", "nothing.env", "the file does not exist")


def test_markers_come_from_the_entry(result):
    sslmode = result.checks["test_config_setting_as_expected[good-env:sslmode]"]
    assert sslmode["severity"] == "p1", sslmode
    assert "weekly" in result.checks["test_config_setting_as_expected[good-env:DB_MAX_CONNECTIONS]"]["schedule"]


def test_values_never_reach_a_report(result):
    texts = [result.output] + [p.read_text(errors="replace") for p in result.reports_dir.rglob("*") if p.is_file()]
    for text in texts:
        assert PASSWORD not in text and OTHER_SECRET not in text
        assert "sslmode=disable" not in text


def test_bad_settings_stop_the_run(tmp_path):
    inventory = {
        "environment": "selftest-config-files-bad",
        "hosts": [{"name": "here", "spec": "local://"}],
        "config_files": [
            {"name": "b", "host": "here", "path": "relative.env", "settings": [{"key": "X"}]},
            {"name": "f", "host": "here", "spec": "local://", "path": "/etc/app.env", "settings": [{"key": "X"}]},
            {"name": "c", "host": "here", "path": "/etc/app.env", "settings": [{"key": "not a name"}]},
            {
                "name": "d",
                "host": "here",
                "path": "/etc/app.env",
                "settings": [{"key": "X", "op": "matches", "value": "("}],
            },
            {"name": "e", "host": "here", "path": "/etc/app.env", "settings": [{"key": "X", "domains": ["nope"]}]},
        ],
    }
    result = run_suite(inventory, tmp_path)
    assert result.rc == 4, result.output
    for fragment in (
        "config_files[0].path: String should match pattern '^/'",
        "config_files[1]: Value error, give host (a hosts target) or spec",
        "config_files[2]: Value error, settings: 'not a name' is not an env variable name",
        "config_files[3].settings[0]: Value error, not a valid regular expression",
        "config_files[4].settings[0].domains: Value error, unknown domain 'nope'",
    ):
        assert fragment in result.output, result.output


def test_unknown_host_stops_the_run(tmp_path):
    inventory = {
        "environment": "selftest-config-files-host",
        "config_files": [{"name": "a", "host": "nowhere", "path": "/etc/app.env", "settings": [{"key": "X"}]}],
    }
    result = run_suite(inventory, tmp_path)
    assert result.rc == 4, result.output
    assert "config_files 'a': host: 'nowhere' is not a target of the hosts section" in result.output
