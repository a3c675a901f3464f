"""The family registry: one name per family, everywhere, and nothing that disagrees with it.

Every inventory section is a family of FAMILIES and every family is a section; each family
has its module, fixture module, check module and self-test under its stem; no two families
hand out the same check argument (a clash stops the run, exit 4); the summary's `family`
is the stem.
"""

import ast
import json
import types
import typing

import pytest

from opscheck import session as plugin
from opscheck.core.model import Target, running_check
from opscheck.families import FAMILIES, check_module, family
from opscheck.inventory import complete, empty, sections
from tests.conftest import LOCAL, REPO


def _list_fields() -> set[str]:
    found = set()
    for name, field in complete().model_fields.items():
        args = getattr(field.annotation, "__args__", ())
        item = typing.get_args(args[0])[0] if args and typing.get_origin(args[0]) is typing.Annotated else None
        if item is not None:  # hosts: Host | Fleet, tagged (a fleet expands to hosts)
            args = (typing.get_args(typing.get_args(item)[0])[0],)
        if getattr(field.annotation, "__origin__", None) is list and args and issubclass(args[0], Target):
            found.add(name)
    return found


def test_every_section_is_a_family_and_every_family_a_section():
    assert _list_fields() == set(FAMILIES)
    assert sections() == list(FAMILIES)


@pytest.mark.parametrize("stem", list(FAMILIES))
def test_a_section_is_validated_by_its_family_alone(stem):
    """load() validates a section with its family's SECTION: the same type as the
    Inventory's field (which the JSON Schema shows)."""
    field = complete().model_fields[stem]  # pydantic keeps an outer Annotated's metadata apart
    declared = typing.Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    assert declared == family(stem).SECTION


@pytest.mark.parametrize("stem", list(FAMILIES))
def test_a_family_lives_in_its_rooms(stem):
    assert FAMILIES[stem] == f"opscheck.families.{stem}"
    module = family(stem)
    assert callable(module.parameters), f"{stem}: no parameters(inventory)"
    assert (REPO / "fixtures" / f"{stem}.py").is_file(), f"fixtures/{stem}.py is missing"
    assert (REPO / "checks" / check_module(stem)).is_file(), f"checks/{check_module(stem)} is missing"
    assert list((REPO / "tests").glob(f"test_*{stem}*.py")), f"no self-test tests/test_*{stem}*.py"


@pytest.mark.parametrize("stem", list(FAMILIES))
def test_a_familys_per_check_fixtures_do_not_ask_for_request(stem):
    """A fixture run for every check finds its target through running_check(): pytest builds
    two fixture definitions for each fixture that asks for `request` (0.3 M instructions a
    check, benchmarks/overhead.py). Session fixtures, set up once, may ask for it."""
    tree = ast.parse((REPO / "fixtures" / f"{stem}.py").read_text())
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        for decorator in function.decorator_list:
            if "pytest.fixture" not in ast.unparse(decorator):
                continue
            scope = next((k.value for k in getattr(decorator, "keywords", []) if k.arg == "scope"), None)
            if scope is None or ast.literal_eval(scope) == "function":
                assert "request" not in [a.arg for a in function.args.args], (
                    f"fixtures/{stem}.py: {function.name}(request): use core.cache.target_client or running_check()"
                )


def test_running_check_outside_a_check_says_so():
    with pytest.raises(RuntimeError, match="outside a check run by the opscheck plugin"):
        running_check()


def test_argnames_are_unique_across_families():
    nothing = empty("x")
    owners: dict[str, str] = {}
    for stem in FAMILIES:
        for argname in family(stem).parameters(nothing):
            assert argname not in owners, f"{argname} is handed out by {owners[argname]} and {stem}"
            owners[argname] = stem
    assert plugin.ParameterIndex(nothing, stems=FAMILIES).owner == owners


def test_an_argname_clash_stops_the_run(monkeypatch):
    clashing = types.SimpleNamespace(parameters=lambda inventory: {"redis_queue": []})
    monkeypatch.setattr(plugin, "family", lambda stem: clashing if stem == "clash" else family(stem))
    with pytest.raises(pytest.UsageError, match="'redis_queue' is handed out by two families, redis and clash"):
        plugin.ParameterIndex(empty("x"), stems=[*FAMILIES, "clash"])


def test_summary_family_is_the_stem(run_checks):
    result = run_checks(LOCAL, "-m", "daily")
    assert result.rc == 0, result.output
    assert set(result.summary["families"]) == {"hosts"}
    assert {c["family"] for c in result.summary["checks"]} == {"hosts"}
    assert all(c["id"].startswith("checks/test_hosts.py::") for c in result.summary["checks"])


def test_init_writes_the_same_conftest_and_pytest_settings_as_this_repository():
    import tomllib

    from opscheck.cli import init

    assert (REPO / "conftest.py").read_text() == init.CONFTEST
    ours = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    theirs = tomllib.loads(init.PYPROJECT)["tool"]["pytest"]["ini_options"]
    assert {k: ours[k] for k in theirs} == theirs


def test_schema_lists_every_family():
    schema = json.loads((REPO / "inventories" / "inventory.schema.json").read_text())
    assert set(FAMILIES) <= set(schema["properties"])


IMPORTED = (
    "import sys\n"
    "{run}\n"
    "print('IMPORTED', ' '.join(sorted(m for m in sys.modules if m.startswith(('opscheck.families.', 'fixtures.')))))"
)


def _imported(run: str) -> set[str]:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", IMPORTED.format(run=run)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("IMPORTED")), None)
    assert line is not None, proc.stdout + proc.stderr
    return set(line.split()[1:])


def test_a_run_imports_only_the_families_it_has_targets_for(tmp_path):
    """A hosts-only inventory: its run and its validation import the hosts family alone."""
    inventory = tmp_path / "local.yml"
    inventory.write_text(LOCAL)
    collect = (
        f"import pytest; pytest.main(['-q', '--collect-only', '--inventory={inventory}', '--reports-dir={tmp_path}'])"
    )
    assert _imported(collect) == {"opscheck.families.hosts", "fixtures.hosts"}
    validate = f"from opscheck.cli import main; main(['validate', '{inventory}'])"
    # and the checklists family's sign-off file reader: validate checks the file beside every inventory
    assert _imported(validate) == {"opscheck.families.hosts", "opscheck.families.checklists"}
