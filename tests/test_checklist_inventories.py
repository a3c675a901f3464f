"""Every checklist line of the runbooks is in the example inventories, as a sign-off or as
the checks that automate it; and those checks exist and have their target."""

import os
import re
import subprocess
import sys

import pytest

from opscheck.core.envfile import read_env_file
from opscheck.inventory import load, sections
from tests.conftest import REPO

SEEDS = REPO.parent / "shared" / "seeds"
RUNBOOKS = {
    "accunode.yml": (
        "001_925611f44760d2e2.txt",
        ["Daily Operations Checklist", "Weekly Operations Checklist", "Monthly Operations Checklist"],
    ),
    "agentauri.yml": ("002_99bc58f24f0587a1.txt", ["Debugging checklist"]),
}
# The runbooks' checklist lines, verbatim (compared with ../shared/seeds when it is there).
CHECKLIST_LINES = {
    "accunode.yml": [
        "Check service health dashboards",
        "Review overnight alerts and incidents",
        "Verify backup completion status",
        "Check resource utilization trends",
        "Review error rate and performance metrics",
        "Validate SSL certificate expiration dates",
        "Check security scan results",
        "Review capacity planning metrics",
        "Analyze cost and usage reports",
        "Check for security updates",
        "Review and update documentation",
        "Validate disaster recovery procedures",
        "Conduct security audit review",
        "Review team on-call rotation",
        "Perform disaster recovery testing",
        "Review and update security policies",
        "Analyze performance trends and optimization opportunities",
        "Update capacity planning projections",
        "Review vendor and service contracts",
        "Conduct architecture review sessions",
        "Update team training materials",
    ],
    "agentauri.yml": [
        "Checked logs for error messages",
        "Verified all containers are running (`docker compose ps`)",
        "Checked database connectivity",
        "Checked Redis connectivity",
        "Reviewed recent code changes",
        "Attempted restart (`docker compose restart`)",
        "Consulted this troubleshooting guide",
        "Searched existing GitHub issues",
    ],
}
# The variables the seed inventories read: their .env.example files (the hosts never resolve).
ENV = {
    name: value
    for inventory in RUNBOOKS
    for name, value in read_env_file(REPO / "inventories" / inventory.replace(".yml", ".env.example")).items()
}


def _lines(seed: str, headings: list[str]) -> list[str]:
    found, current = [], None
    for line in (SEEDS / seed).read_text().splitlines():
        if line.startswith("#"):
            current = next((h for h in headings if h in line), None)
        elif current and line.startswith("- [ ] "):
            found.append(line[6:].strip())
    return found


def _check_names() -> set[str]:
    return {
        m
        for path in (REPO / "checks").glob("test_*.py")
        for m in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M)
    }


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("inventory", sorted(RUNBOOKS))
def test_every_checklist_line_is_an_item(inventory):
    expected = CHECKLIST_LINES[inventory]
    assert len(expected) == {"accunode.yml": 21, "agentauri.yml": 8}[inventory]
    if SEEDS.exists():  # beside the shared runbooks: the copy above must still be verbatim
        seed, headings = RUNBOOKS[inventory]
        assert _lines(seed, headings) == expected
    items = load(REPO / "inventories" / inventory, here=False).checklists
    assert [i.description for i in items] == expected


@pytest.mark.parametrize("inventory", sorted(RUNBOOKS))
def test_automated_items_name_existing_checks_and_targets(inventory):
    inv = load(REPO / "inventories" / inventory, here=False)
    targets = {t.name for s in sections() for t in getattr(inv, s)}
    checks = _check_names()
    for item in inv.checklists:
        assert item.automated_by or item.schedule, item.name
        for check_id in item.automated_by:
            name, _, target = check_id.partition("[")
            assert name in checks, f"{item.name}: no check {name} in checks/"
            target = target.rstrip("]").split(":")[0]  # TARGET or TARGET:ITEM
            assert target in targets, f"{item.name}: no target {target} in {inventory}"


@pytest.mark.parametrize(
    "inventory, args", [("accunode.yml", []), ("agentauri.yml", ["--param=incident_start=2026-11-25T09:30Z"])]
)
def test_signoff_checks_collect(inventory, args, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"--inventory=inventories/{inventory}",
            f"--reports-dir={tmp_path}",
            "-m",
            "ops",
            "--collect-only",
            "-q",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = [line for line in proc.stdout.splitlines() if "test_checklist_signed_off[" in line]
    assert len(collected) == {"accunode.yml": 14, "agentauri.yml": 4}[inventory], proc.stdout


def test_automated_items_are_collected_checks(tmp_path):
    """Every automated_by id of the AccuNode checklists is a check the inventory collects."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--inventory=inventories/accunode.yml",
            f"--reports-dir={tmp_path}",
            "--collect-only",
            "-q",
            "-m",
            "not ops",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = {line.split("::", 1)[1] for line in proc.stdout.splitlines() if "::" in line}
    wanted = [
        i for item in load(REPO / "inventories" / "accunode.yml", here=False).checklists for i in item.automated_by
    ]
    assert len(wanted) == 16
    assert [i for i in wanted if i not in collected] == []
