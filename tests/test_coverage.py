"""Traceability: every catalog entry of the five runbooks is a check, a sign-off, an exclusion
or "not yet" with the reason (inventories/<name>.coverage.yml), and `opscheck coverage` fails
when an entry is left out or names a check the inventory does not collect. The seed
inventories read every environment-specific value from a ${VAR} that <name>.env.example lists."""

import re
import subprocess
import sys
import time

import pytest
import yaml

from opscheck.cli import main
from opscheck.core.envfile import comments_of, read_env_file
from opscheck.core.errors import ConfigError
from opscheck.inventory import load
from tests.conftest import REPO
from tests.servers import SilentListener

CATALOG = REPO.parent / "shared" / "catalog" / "seed-checks.yaml"
SEEDS = ["accunode", "agentauri", "aiplatform", "ava", "awe"]
# The only defaults that are URLs: vendors' public APIs, overridable for an emulator
VENDOR_APIS = {"https://api.telegram.org", "https://api.pagerduty.com", "https://api.cloudflare.com/client/v4"}
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _references(name: str) -> list[tuple[str, str | None]]:
    """(variable, default or None) of every ${...} outside the comments of an inventory."""
    text = (REPO / "inventories" / f"{name}.yml").read_text()
    code = "\n".join(line.split(" #", 1)[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(code)]


@pytest.fixture(scope="module")
def seed_coverage():
    """`opscheck coverage --markdown` on every seed inventory, as a user runs it in the project."""
    if not CATALOG.exists():
        pytest.skip("the shared catalog is not beside this checkout (in CI it is: this skip fails the run)")
    return subprocess.run(
        [sys.executable, "-m", "opscheck.cli", "coverage", "--markdown"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_catalog_entry_is_mapped_to_collected_checks(seed_coverage):
    assert seed_coverage.returncode == 0, seed_coverage.stdout + seed_coverage.stderr
    assert "PROBLEM" not in seed_coverage.stdout
    catalog = yaml.safe_load(CATALOG.read_text())
    prefixes = {s["prefix"]: s["name"] for s in catalog["systems"]}
    for prefix, name in prefixes.items():
        count = sum(1 for c in catalog["checks"] if c["id"].startswith(prefix))
        assert f"{name} ({prefix}*): {count} catalog entries" in seed_coverage.stdout
    assert sum(int(n) for n in re.findall(r": (\d+) catalog entries", seed_coverage.stdout)) == 227


def test_readme_shows_the_coverage_table(seed_coverage):
    """The README's table is the command's --markdown output (regenerate it when a mapping changes)."""
    table = seed_coverage.stdout[seed_coverage.stdout.index("| system |") :].strip()
    assert table in (REPO / "README.md").read_text(), f"README's coverage table differs; it is now:\n{table}"


@pytest.mark.parametrize("name", SEEDS)
def test_env_example_lists_every_variable_with_a_comment(name):
    example = REPO / "inventories" / f"{name}.env.example"
    listed = read_env_file(example)
    used = {var for var, _ in _references(name)}
    assert sorted(used - set(listed)) == [], f"{example.name} misses variables the inventory reads"
    assert sorted(set(listed) - used) == [], f"{example.name} lists variables the inventory does not read"
    comments = comments_of(example)
    assert [var for var in listed if not comments.get(var)] == [], "a variable without a comment above it"


@pytest.mark.parametrize("name", SEEDS)
def test_every_section_names_its_runbook_section(name):
    """A section's line, or the comment right above it, quotes the runbook's heading or lines."""
    lines = (REPO / "inventories" / f"{name}.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        key = re.match(r"^([a-z_]+):", line)
        if not key or key.group(1) in ("environment", "description", "defaults"):
            continue
        above = []
        for previous in reversed(lines[:i]):
            if not previous.startswith("#"):
                break
            above.append(previous)
        comment = " ".join([line.partition("#")[2], *above])
        assert re.search(r'"[^"]+"|\(L\d+', comment), f"{name}.yml:{i + 1}: {key.group(1)}: no runbook section named"


@pytest.mark.parametrize("name", SEEDS)
def test_no_placeholder_defaults(name):
    """Endpoints and secrets have no default: only numbers, SQL and vendors' public APIs do."""
    for var, default in _references(name):
        if default and "://" in default:
            assert default in VENDOR_APIS, f"{var} defaults to {default!r}"
        assert not default or not re.search(r"your-domain|example\.|localhost|127\.0\.0\.1|/opt/|/srv/", default), var


@pytest.mark.parametrize("name", SEEDS)
def test_an_unset_variable_stops_the_run(name, monkeypatch):
    """With the .env.example the inventory loads; without any one required variable it does not."""
    path = REPO / "inventories" / f"{name}.yml"
    values = read_env_file(REPO / "inventories" / f"{name}.env.example")
    for var, value in values.items():
        monkeypatch.setenv(var, value)
    assert load(path, here=False).environment
    required = sorted({var for var, default in _references(name) if default is None})
    assert required
    for var in required:
        monkeypatch.delenv(var)
        with pytest.raises(ConfigError) as caught:
            load(path, here=False)
        assert any(f"environment variable {var} is not set" in p for p in caught.value.problems), var
        monkeypatch.setenv(var, values[var])


# --- the command on a small system of its own -------------------------------------------------

TINY_CATALOG = {
    "systems": [{"prefix": "tiny-", "name": "Tiny"}],
    "checks": [
        {"id": "tiny-http-health", "read_only": True},
        {"id": "tiny-http-probe", "read_only": True},
        {"id": "tiny-review", "kind": "attestation"},
        {"id": "tiny-restart", "read_only": False, "generate_test": False},
        {"id": "tiny-dns", "read_only": True},
        {"id": "other-entry", "read_only": True},
    ],
    "excluded_mutations": [{"id": "tiny-x-restart", "catalog_entry": "tiny-restart"}],
}
TINY_INVENTORY = """\
environment: tiny
http:
  - name: api
    url: ${TINY_API_URL}/health
  - name: probe
    url: ${TINY_API_URL}/probe/{probe_id}
    schedule: [adhoc]
checklists:
  - name: tiny-review
    checklist: Tiny
    description: Review the dashboards
    schedule: [weekly]
"""
TINY_MAPPING = {
    "system": "tiny-",
    "params": {"probe_id": "p1"},
    "entries": {
        "tiny-http-health": {"checks": ["test_http_status[api]", "test_http_latency_below_limit[api]"]},
        "tiny-http-probe": {"checks": ["test_http_status[probe]"]},
        "tiny-review": {"checklist": "tiny-review"},
        "tiny-restart": {"excluded": "mutating", "reason": "restarts every service"},
        "tiny-dns": {"not_yet": "no family resolves names", "checks": ["test_http_status[api]"]},
    },
}


def _tiny(tmp_path, mapping=None, catalog=TINY_CATALOG, env="TINY_API_URL=http://tiny.invalid\n"):
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    (tmp_path / "tiny.yml").write_text(TINY_INVENTORY)
    (tmp_path / "tiny.coverage.yml").write_text(yaml.safe_dump(mapping or TINY_MAPPING, sort_keys=False))
    if env is not None:
        (tmp_path / "tiny.env.example").write_text("# the API's base URL\n" + env)


def _coverage(tmp_path, capsys, monkeypatch, *args) -> tuple[int, str]:
    monkeypatch.chdir(REPO)  # the project the checks are collected in
    rc = main(["coverage", "--catalog", str(tmp_path / "catalog.yaml"), str(tmp_path / "tiny.yml"), *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_the_table_and_its_counts(tmp_path, capsys, monkeypatch):
    _tiny(tmp_path)
    rc, out = _coverage(tmp_path, capsys, monkeypatch, "--verbose", "--markdown")
    assert rc == 0, out
    assert "Tiny (tiny-*): 5 catalog entries" in out
    for status, count in (("implemented", 2), ("sign-off", 1), ("excluded", 1), ("not yet", 1)):
        assert re.search(rf"^  {status} +{count}$", out, re.M), out
    assert "test_checklist_signed_off[tiny-review]" in out  # the item's own check
    assert "test_http_status[probe]" in out  # an adhoc check, collected with the mapping's params
    assert "(mutating: restarts every service)" in out and "(no family resolves names)" in out
    assert "runbook commands never run (catalog excluded_mutations): 1" in out
    assert "| Tiny (" in out and "| 5 | 2 | 1 | 1 | 1 |" in out


def test_a_shell_glob_of_the_folder_reads_each_system_once(tmp_path, capsys, monkeypatch):
    """`opscheck coverage inventories/*.yml` also matches the mapping files: each stands for
    its inventory; an inventory without a mapping is named, with what to do."""
    _tiny(tmp_path)
    rc, out = _coverage(tmp_path, capsys, monkeypatch, str(tmp_path / "tiny.coverage.yml"))
    assert rc == 0, out
    assert out.count("Tiny (tiny-*): 5 catalog entries") == 1, out
    (tmp_path / "other.yml").write_text(TINY_INVENTORY)
    rc, out = _coverage(tmp_path, capsys, monkeypatch, str(tmp_path / "other.yml"))
    assert rc == 4
    assert "other.yml: no other.coverage.yml beside it" in out and "without arguments" in out


def test_gaps_fail_with_their_reasons(tmp_path, capsys, monkeypatch):
    """Every kind of gap in one mapping (one collection): each is named with the file."""
    mapping = yaml.safe_load(yaml.safe_dump(TINY_MAPPING))
    entries = mapping["entries"]
    entries.pop("tiny-dns")
    entries["tiny-http-health"]["checks"] = ["test_http_status[nope]"]
    entries["tiny-http-probe"] = {"excluded": "mutating", "reason": "it only reads, though"}
    entries["tiny-review"] = {"checklist": "tiny-nope"}
    entries["tiny-gone"] = {"checks": ["test_x[y]"]}
    entries["other-entry"] = {"not_yet": "another system's entry"}
    _tiny(tmp_path, mapping)
    rc, out = _coverage(tmp_path, capsys, monkeypatch)
    assert rc == 1, out
    for fragment in (
        "tiny.coverage.yml: tiny-dns: unmapped",
        "tiny-http-health: test_http_status[nope] is not collected from",
        "tiny-http-probe: excluded as mutating, but the catalog marks it read-only",
        "tiny-review: the inventory has no checklist item 'tiny-nope'",
        "tiny-gone: not an entry of the catalog",
        "other-entry: belongs to another system (this file maps tiny-*)",
    ):
        assert fragment in out, out
    assert re.search(r"tiny\.coverage\.yml:\d+: tiny-gone", out), "the mapping's line"


def test_adhoc_checks_need_the_mappings_params(tmp_path, capsys, monkeypatch):
    _tiny(tmp_path, {**TINY_MAPPING, "params": {}})
    rc, out = _coverage(tmp_path, capsys, monkeypatch)
    assert rc == 1, out
    assert "tiny-http-probe: test_http_status[probe] is not collected" in out, out


@pytest.mark.parametrize(
    "mapping, fragment",
    [
        ({**TINY_MAPPING, "extra": 1}, "tiny.coverage.yml:21: extra: Extra inputs are not permitted"),
        (
            {**TINY_MAPPING, "entries": {"tiny-dns": {"checks": ["test_a[b]"], "checklist": "tiny-review"}}},
            "entries.tiny-dns: Value error, a checklist item brings its own checks",
        ),
        (
            {**TINY_MAPPING, "entries": {"tiny-dns": {"checks": ["not a check id"]}}},
            "'not a check id' is not a check id",
        ),
        ({**TINY_MAPPING, "entries": {"tiny-restart": {"excluded": "mutating"}}}, "excluded and reason go together"),
    ],
    ids=["unknown-key", "two-kinds", "bad-check-id", "no-reason"],
)
def test_a_malformed_mapping_stops_with_its_line(mapping, fragment, tmp_path, capsys, monkeypatch):
    _tiny(tmp_path, mapping)
    rc, out = _coverage(tmp_path, capsys, monkeypatch)
    assert rc == 4, out
    assert fragment in out, out
    assert "Traceback" not in out


def test_missing_catalog_or_variable_is_a_usage_error(tmp_path, capsys, monkeypatch):
    _tiny(tmp_path)
    (tmp_path / "catalog.yaml").unlink()
    rc, out = _coverage(tmp_path, capsys, monkeypatch)
    assert rc == 4 and "no catalog at" in out and "--catalog PATH" in out, out
    _tiny(tmp_path, env="")  # the env example lacks the inventory's variable
    monkeypatch.delenv("TINY_API_URL", raising=False)
    rc, out = _coverage(tmp_path, capsys, monkeypatch)
    assert rc == 4 and "environment variable TINY_API_URL is not set" in out, out


# --- collecting contacts no target -------------------------------------------------------------


def test_collect_only_contacts_no_target_and_needs_no_local_file(tmp_path):
    """`pytest --collect-only` (what coverage runs) makes no collection-time probe (pg_stat_statements,
    metrics-server) and does not need the local files the checks would read."""
    with SilentListener() as silent:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{silent.port}"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        )
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(
            yaml.safe_dump(
                {
                    "environment": "selftest-collect",
                    "postgres": [{"name": "db", "dsn": f"postgresql://u:p@127.0.0.1:{silent.port}/db", "timeout": 2}],
                    "kubernetes": [{"name": "k", "kubeconfig": str(kubeconfig), "timeout": 2}],
                    "tls": [
                        {"name": "t", "host": "127.0.0.1", "port": silent.port, "ca_file": str(tmp_path / "no.crt")}
                    ],
                }
            )
        )
        command = [sys.executable, "-m", "pytest", f"--inventory={inventory}", f"--reports-dir={tmp_path / 'r'}"]
        started = time.monotonic()
        listed = subprocess.run(
            [*command, "--collect-only", "-q"], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "test_postgres_no_slow_statements[db]" in listed.stdout
        assert "test_k8s_node_cpu_below_limit[k]" in listed.stdout
        assert "test_tls_chain_verifies[t]" in listed.stdout
        assert silent.accepts == 0, "collecting connected to a target"
        assert time.monotonic() - started < 60
        ran = subprocess.run([*command, "-k", "tls"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 4 and "tls[0].ca_file" in ran.stdout + ran.stderr, ran.stdout + ran.stderr
        assert "no such file on this machine" in ran.stdout + ran.stderr
