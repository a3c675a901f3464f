"""`opscheck init DIR`: a new opscheck project made from the installed package alone.

It writes the checks (checks/), the fixtures that hand targets to them (fixtures/), the
example inventories (inventories/, with local.yml: this machine), the root conftest.py
and a pyproject.toml that marks the folder as an opscheck project. Then, in DIR:
`pytest -m daily`.
"""

import sys
from importlib import resources
from pathlib import Path

from opscheck.cli.common import USAGE_ERROR

CONFTEST = '''"""The opscheck project's pytest glue: each family's fixtures, from fixtures/<stem>.py
(those of the families the inventory has targets for; see opscheck.plugin)."""

from opscheck.plugin import load_fixture_modules as pytest_configure  # noqa: F401
'''

PYPROJECT = """# An opscheck project: `pytest -m daily` runs the daily checks on inventories/local.yml.
[tool.pytest.ini_options]
opscheck_checks = "checks"
testpaths = ["checks"]
pythonpath = ["."]
addopts = "--strict-markers --strict-config -ra -p no:cacheprovider -p no:pytest11.testinfra"
timeout = 60
timeout_method = "signal"
xfail_strict = true
junit_family = "xunit2"
junit_logging = "no"
# requests looks for SOCKS support when a family first imports it (during the run): not a check's warning
filterwarnings = ["ignore:SOCKS support in urllib3 requires"]
"""

FOLDERS = {"checks": "opscheck.project.checks", "fixtures": "opscheck.project.fixtures"}
INVENTORIES = "opscheck.project.inventories"


def add_command(commands) -> None:
    cmd = commands.add_parser("init", help="make a new opscheck project in DIR (checks, fixtures, inventories)")
    cmd.add_argument("dir", metavar="DIR")
    cmd.add_argument("--force", action="store_true", help="overwrite files that exist")
    cmd.set_defaults(func=run)


def project_files() -> dict[str, bytes]:
    """Relative path -> content of every file of a new project."""
    files = {"conftest.py": CONFTEST.encode(), "pyproject.toml": PYPROJECT.encode()}
    for folder, package in FOLDERS.items():
        for entry in resources.files(package).iterdir():
            if entry.name.endswith(".py"):
                files[f"{folder}/{entry.name}"] = entry.read_bytes()
    for entry in resources.files(INVENTORIES).iterdir():
        if entry.name.endswith((".yml", ".json", ".env.example")):
            files[f"inventories/{entry.name}"] = entry.read_bytes()
    return files


def run(args) -> int:
    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        print(f"opscheck init: {root} exists and is not a folder", file=sys.stderr)
        return USAGE_ERROR
    files = project_files()
    existing = [name for name in files if (root / name).exists()]
    if existing and not args.force:
        print(
            f"opscheck init: {root} already has {', '.join(existing[:5])}"
            f"{' ...' if len(existing) > 5 else ''}: use --force to overwrite",
            file=sys.stderr,
        )
        return USAGE_ERROR
    try:
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        print(f"opscheck init: cannot write {exc.filename or root}: {why}", file=sys.stderr)
        return USAGE_ERROR
    print(f"opscheck project in {root}: {len(files)} files. Next: cd {root} && pytest -m daily")
    return 0
