"""The installed package: opt-in activation, lazy family libraries, dry runs, the wheel.

- the pytest11 entry point leaves any other suite alone (passes, writes nothing);
- `opscheck validate` and a collection on the default inventory import no family client
  library, and a check whose library is missing fails with the pip line that installs it;
- `--collect-only` writes no run directory and does not move `latest`;
- the wheel installs no top-level `fixtures` package, and a project made with
  `opscheck init` from the wheel alone, outside this checkout, runs `pytest -m daily`.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.conftest import LOCAL as LOCAL_TEXT
from tests.conftest import REPO

CLIENT_LIBRARIES = ["psycopg", "redis", "docker", "paramiko", "testinfra", "cryptography", "OpenSSL", "boto3"]
LOCAL = REPO / "inventories" / "local.yml"


def _run(command: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_an_unrelated_suite_is_left_alone(tmp_path):
    (tmp_path / "test_other.py").write_text("def test_x():\n    pass\n")
    proc = _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "opscheck:" not in proc.stdout
    assert {p.name for p in tmp_path.iterdir()} <= {"__pycache__", "test_other.py"}, "it wrote something"


def _imported_after(code: str, cwd: Path) -> list[str]:
    probe = f"import sys\n{code}\nprint('@@' + ','.join(sorted(set(m.split('.')[0] for m in sys.modules))))"
    proc = _run([sys.executable, "-c", probe], cwd)
    line = [x for x in proc.stdout.splitlines() if x.startswith("@@")]
    assert line, proc.stdout + proc.stderr
    return [m for m in line[0][2:].split(",") if m in CLIENT_LIBRARIES]


def test_validate_imports_no_family_library():
    code = f"from opscheck.cli import main\nassert main(['validate', {str(LOCAL)!r}]) == 0"
    assert _imported_after(code, REPO) == []


def test_collecting_the_default_inventory_imports_no_family_library(tmp_path):
    code = (
        "import pytest\n"
        f"rc = pytest.main(['-q', '--collect-only', '--inventory={LOCAL}', '--reports-dir={tmp_path}'])\n"
        "assert rc == 0, rc"
    )
    assert _imported_after(code, REPO) == []


def test_a_missing_client_library_fails_its_checks_with_the_pip_line(run_checks, tmp_path):
    shadow = tmp_path / "shadow" / "redis"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named redis (hidden by the self-test)')\n")
    inventory = {"environment": "noextra", "redis": [{"name": "queue", "url": "redis://127.0.0.1:1/0"}]}
    env = {"PYTHONPATH": f"{shadow.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = run_checks(inventory, "-k", "redis_ping", env=env)
    assert result.rc == 1, result.output
    result.assert_failed("test_redis_ping[queue]", "pip install 'opscheck[redis]'")
    assert "Traceback" not in result.message("test_redis_ping[queue]")


def test_collect_only_writes_no_run_and_keeps_latest(run_checks, tmp_path):
    reports = tmp_path / "reports"
    first = run_checks(LOCAL_TEXT, "-m", "daily", f"--reports-dir={reports}")
    assert first.rc == 0, first.output
    latest = (reports / "local" / "latest").resolve()
    state = (reports / "local" / "state.json").read_text()
    for dry_option in ("--collect-only", "--setup-plan"):  # no check judged: no run
        dry = run_checks(LOCAL_TEXT, dry_option, f"--reports-dir={reports}")
        assert dry.rc == 0, dry.output
        assert "opscheck: run page" not in dry.output and "Generated html report" not in dry.output
        runs = [p for p in (reports / "local").iterdir() if p.is_dir() and not p.is_symlink()]
        assert runs == [latest], f"{dry_option} left a run directory"
        assert (reports / "local" / "latest").resolve() == latest
        assert (reports / "local" / "state.json").read_text() == state
    nothing = run_checks(LOCAL_TEXT, "-m", "no_such_marker", f"--reports-dir={tmp_path / 'other'}")
    assert nothing.rc == 5, nothing.output
    assert not (tmp_path / "other").exists()


def test_init_works_from_the_editable_install_too(tmp_path):
    """The quick start installs with `pip install -e`: `opscheck init` finds its files there."""
    init = [sys.executable, "-m", "opscheck.cli", "init"]
    proc = subprocess.run([*init, str(tmp_path / "project")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "project" / "inventories" / "local.yml").is_file()
    assert (tmp_path / "project" / "checks" / "test_redis.py").is_file()
    (tmp_path / "a-file").write_text("")
    proc = subprocess.run([*init, str(tmp_path / "a-file")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4 and "is not a folder" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_wheel_alone_makes_a_project_that_runs_daily(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info into the source tree
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "reports", "build", "*.egg-info"))
    dist = tmp_path / "dist"
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], tmp_path)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("opscheck-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("fixtures/", "checks/"))], "a top-level package in the wheel"
    assert "opscheck/project/checks/test_redis.py" in names and "opscheck/project/inventories/local.yml" in names

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path).returncode == 0
    site = next((venv / "lib").glob("python3*/site-packages"))
    # the dependencies come from this environment (already resolved); the package from the wheel
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(venv / "bin" / "python")
    install = _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", str(wheel)], tmp_path
    )
    assert install.returncode == 0, install.stdout + install.stderr
    where = _run([python, "-c", "import opscheck; print(opscheck.__file__)"], tmp_path)
    assert str(site) in where.stdout, where.stdout + where.stderr

    project = tmp_path / "project"
    opscheck = str(venv / "bin" / "opscheck")
    made = _run([opscheck, "init", str(project)], tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    local = project / "inventories" / "local.yml"
    local.write_text(local.read_text().replace("spec: local://", "spec: local://\n    load_per_core_max: 1000"))
    valid = _run([opscheck, "validate", "inventories/local.yml"], project)
    assert valid.returncode == 0 and "valid" in valid.stdout, valid.stdout + valid.stderr
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": ""}
    daily = _run([python, "-m", "pytest", "-m", "daily"], project, env=env)
    assert daily.returncode == 0, daily.stdout + daily.stderr
    summary = json.loads((project / "reports" / "local" / "latest" / "summary.json").read_text())
    assert summary["counts"]["passed"] > 0
    assert str(REPO) not in summary["inventory"]
