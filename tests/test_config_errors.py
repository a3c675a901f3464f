"""A broken inventory or a check without markers stops the run before any check: exit 4.

Every case asserts the exit code, that the message names file, line and field, that no
traceback is printed, and that a secret in the bad file is not echoed.
"""

import subprocess
import sys

import pytest

from tests.conftest import REPO

SECRET = "Sup3rSecretPassw0rd"

CASES = {
    "yaml_syntax": (
        f"environment: prod\npostgres:\n  - name: main\n    dsn: postgresql://app:{SECRET}@db/app\n"
        "    statement_timeout_ms: [1000\n",
        ["inventory.yml:", "YAML syntax error"],
    ),
    "unknown_key": (
        f"environment: prod\nredis:\n  - name: queue\n    url: redis://:{SECRET}@127.0.0.1:6379\n"
        "    max_latncy_ms: 5\n",
        ["inventory.yml:5:", "redis[0].max_latncy_ms", "Extra inputs are not permitted"],
    ),
    "wrong_type": (
        "environment: prod\nhosts:\n  - name: web\n    disk_warn_pct: lots\n",
        ["inventory.yml:4:", "hosts[0].disk_warn_pct", "valid number"],
    ),
    "secret_of_wrong_type": (
        f"environment: prod\npostgres:\n  - name: main\n    dsn: postgresql://app:{SECRET}@db/app\n"
        f"    statement_timeout_ms: {SECRET}\n",
        ["inventory.yml:5:", "postgres[0].statement_timeout_ms", "valid integer"],
    ),
    "unset_variable": (
        "environment: prod\npostgres:\n  - name: main\n    dsn: ${OPSCHECK_TEST_UNSET_DSN}\n",
        ["inventory.yml:4:", "postgres[0].dsn", "OPSCHECK_TEST_UNSET_DSN is not set"],
    ),
    "duplicate_key": (
        "environment: prod\nhosts:\n  - name: web\n    name: web2\n",
        ["inventory.yml:4:", "hosts[0].name", "duplicate key"],
    ),
    "missing_environment": (
        "hosts:\n  - name: web\n",
        ["inventory.yml:1:", "environment", "Field required"],
    ),
    "unknown_yaml_tag": (
        f"environment: prod\ndescription: !vault |\n  {SECRET}\n",
        ["inventory.yml:2:", "YAML syntax error", "!vault"],
    ),
    "placeholder_url_not_adhoc": (
        "environment: prod\nhttp:\n  - name: workflow\n    url: https://api/workflows/{workflow_id}\n",
        ["inventory.yml:3:", "http[0]", "needs schedule [adhoc]"],
    ),
    "dangling_reference": (
        "environment: prod\nlogs:\n  - name: app\n    host: web9\n    file: /var/log/app.log\n",
        ["logs 'app': host: 'web9' is not a target of the hosts section"],
    ),
    "assertion_with_side_effects": (
        "environment: prod\npostgres:\n  - name: main\n    dsn: postgresql://u@db/app\n    assertions:\n"
        "      - name: kill-idle\n        query: SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity\n",
        ["postgres[0].assertions[0]", "calls pg_terminate_backend"],
    ),
    "bad_severity_override": (
        "environment: prod\nhosts:\n  - name: web\n    severity_overrides: {test_memory_available: p9}\n",
        ["inventory.yml:4:", "hosts[0].severity_overrides.test_memory_available"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_inventory_stops_the_run(case, run_checks):
    text, fragments = CASES[case]
    result = run_checks(text)
    assert result.rc == 4, result.output
    for fragment in fragments:
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output}"
    assert "Traceback" not in result.output
    assert SECRET not in result.output
    assert not result.summary, "no check may run"


def test_inventory_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes("environment: caf\xe9\n".encode("latin-1"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"--inventory={path}", f"--reports-dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output
    assert "not UTF-8 text" in output and "Traceback" not in output


def test_missing_inventory_file(run_checks, tmp_path):
    result = run_checks("environment: x\n", f"--inventory={tmp_path / 'nope.yml'}")
    assert result.rc == 4
    assert "nope.yml: cannot read inventory" in result.output


def test_validate_command(tmp_path):
    """`opscheck validate` gives the same verdict without running a check (for inventory CI)."""
    bad = tmp_path / "bad.yml"
    bad.write_text(CASES["unknown_key"][0])
    good = REPO / "inventories" / "local.yml"
    run = [sys.executable, "-m", "opscheck.cli", "validate"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert ok.returncode == 0 and "valid" in ok.stdout
    broken = subprocess.run([*run, str(bad)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert broken.returncode == 4
    assert "redis[0].max_latncy_ms" in broken.stderr and SECRET not in broken.stderr + broken.stdout


def test_shipped_schema_is_current():
    """inventories/inventory.schema.json is generated from the model: regenerate it on change."""
    import json

    from opscheck.cli.schema import schema

    shipped = json.loads((REPO / "inventories" / "inventory.schema.json").read_text())
    assert shipped == schema(), "run: opscheck schema > inventories/inventory.schema.json"


def test_every_shipped_inventory_is_valid(monkeypatch):
    """The default inventory and the examples load (their ${VARS} from <name>.env.example, else dummies)."""
    import re

    from opscheck.core.envfile import read_env_file
    from opscheck.inventory import load

    for path in sorted(p for p in (REPO / "inventories").glob("*.yml") if "." not in p.stem):
        example = path.with_name(f"{path.stem}.env.example")
        for name, value in (read_env_file(example) if example.exists() else {}).items():
            monkeypatch.setenv(name, value)
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text()):
            value = "redis://127.0.0.1:6379/0" if "REDIS" in name else "postgresql://u:p@127.0.0.1/db"
            if not example.exists():
                monkeypatch.setenv(name, value if "URL" in name else "x")
        for name in re.findall(r"\$\{([A-Za-z_]+_(?:CA_FILE|CERT|KEY))\b", path.read_text()):
            monkeypatch.setenv(name, str(path))  # local files must exist where the run reads them
        assert load(path).environment


BAD_CHECK = """
import pytest

pytestmark = [pytest.mark.host]


@pytest.mark.daily
def test_without_severity(host):
    assert host.name


@pytest.mark.p1
def test_without_schedule(host):
    assert host.name
"""


def test_check_without_markers_stops_the_run(tmp_path):
    """A check missing its severity or schedule marker is named, exit 4, before any check runs."""
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_bad.py").write_text(BAD_CHECK)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(checks),
            f"--inventory={REPO / 'inventories' / 'local.yml'}",
            f"--reports-dir={tmp_path / 'reports'}",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:pytest11.testinfra",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output
    assert "test_without_severity[localhost]: needs exactly one severity marker" in output
    assert "test_without_schedule[localhost]: needs a schedule marker" in output
    assert "Traceback" not in output
    assert " passed" not in output and " failed" not in output
