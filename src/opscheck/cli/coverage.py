"""`opscheck coverage [INVENTORY...]`: is every catalog entry of a runbook checked?

The shared catalog (`seed-checks.yaml`) lists every checkable item of a runbook under an id.
Beside an inventory, `<name>.coverage.yml` maps each id of its system to the check ids
that implement it (as `pytest --collect-only` names them), to a checklist item (its
automated checks, or its sign-off), to an exclusion with the reason (mutating, or an
interface no read-only check can have), or to "not yet" with the reason. This command
prints the table per system and fails (exit 1) when an id is left out, when a mapping
names an id the catalog does not have, or a check the inventory does not collect: the
inventory is collected for real (`pytest --collect-only`, in a subprocess), with the
variables of `<name>.env.example` set and the mapping's `params` given as `--param`.
"""

import os
import re
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from opscheck.cli.common import USAGE_ERROR
from opscheck.core.envfile import read_env_file
from opscheck.core.errors import ConfigError
from opscheck.core.model import Model
from opscheck.core.yamlfile import read_yaml, shown_path, validation_problems
from opscheck.inventory import Inventory, load

CATALOG = Path("..") / "shared" / "catalog" / "seed-checks.yaml"
GAPS = 1
STATUSES = ("implemented", "sign-off", "excluded", "not yet")
CHECK_ID = r"^test_[A-Za-z0-9_]+(\[.+\])?$"
COLLECT_TIMEOUT_S = 300


class Entry(Model):
    """What checks one catalog entry."""

    checks: list[str] = Field(default_factory=list, description="check ids, as pytest --collect-only shows them")
    checklist: str | None = Field(default=None, description="a checklist item of the inventory")
    excluded: Literal["mutating", "interface"] | None = None
    reason: str | None = Field(default=None, min_length=10, description="why excluded")
    not_yet: str | None = Field(default=None, min_length=10, description="why no check does it yet")
    note: str = ""

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("checklist", "excluded", "not_yet") if getattr(self, k)]
        if len(kinds) > 1 or (not kinds and not self.checks):
            raise ValueError("give checks, or checklist, or excluded (with reason), or not_yet (with the reason)")
        if self.checklist and self.checks:
            raise ValueError("a checklist item brings its own checks (its automated_by, or its sign-off)")
        if bool(self.excluded) != bool(self.reason):
            raise ValueError("excluded and reason go together")
        for check in self.checks:
            if not _is_check_id(check):
                raise ValueError(f"{check!r} is not a check id (test_name[target], as pytest --collect-only shows it)")
        return self


class CoverageFile(Model):
    """`<inventory>.coverage.yml`: the catalog entries of one system and what checks them."""

    system: str = Field(pattern=r"^[a-z0-9]+-$", description="the catalog's id prefix, e.g. agentauri-")
    params: dict[str, str] = Field(default_factory=dict, description="--param values for the adhoc checks")
    entries: dict[str, Entry]


def _is_check_id(text: str) -> bool:
    return re.match(CHECK_ID, text) is not None


@dataclass
class Row:
    """One catalog entry as the table shows it."""

    id: str
    status: str
    checks: list[str] = field(default_factory=list)
    why: str = ""
    note: str = ""


@dataclass
class Report:
    """One inventory's coverage: its rows, the mutating commands of its runbook, its problems."""

    inventory: Path
    system: str
    name: str
    rows: list[Row] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def by_status(self, status: str) -> list[Row]:
        return [r for r in self.rows if r.status == status]


def coverage_path(inventory: Path) -> Path:
    """`inventories/ava.yml` -> `inventories/ava.coverage.yml`."""
    return inventory.with_name(f"{inventory.stem}.coverage.yml")


def env_example_path(inventory: Path) -> Path:
    """`inventories/ava.yml` -> `inventories/ava.env.example`."""
    return inventory.with_name(f"{inventory.stem}.env.example")


def add_command(commands) -> None:
    cmd = commands.add_parser(
        "coverage",
        help="the catalog entries of each runbook and the checks that implement them (exit 1 on a gap)",
        description=(__doc__ or "").split("\n\n")[1].replace("\n", " "),
    )
    cmd.add_argument(
        "inventories",
        nargs="*",
        metavar="INVENTORY",
        help="inventory files (default: every inventory of --inventories-dir with a .coverage.yml beside it)",
    )
    cmd.add_argument(
        "--catalog",
        default=str(CATALOG),
        metavar="PATH",
        help=f"the shared catalog (default {CATALOG}, relative to the project: the working directory)",
    )
    cmd.add_argument("-v", "--verbose", action="store_true", help="every entry with its checks or its reason")
    cmd.add_argument("--markdown", action="store_true", help="also print the summary as a Markdown table")
    cmd.set_defaults(func=run)


def run(args) -> int:
    catalog_path = Path(args.catalog)
    if not catalog_path.is_file():
        print(
            f"opscheck coverage: no catalog at {args.catalog} (from {Path.cwd()}): give --catalog PATH "
            "(the shared seed-checks.yaml)",
            file=sys.stderr,
        )
        return USAGE_ERROR
    paths = inventories_named(args.inventories) or sorted(
        p.with_name(p.name.removesuffix(".coverage.yml") + ".yml")
        for p in Path(args.inventories_dir).glob("*.coverage.yml")
    )
    if not paths:
        print(f"opscheck coverage: no *.coverage.yml in {args.inventories_dir}", file=sys.stderr)
        return USAGE_ERROR
    try:
        catalog = read_catalog(catalog_path)
        plans = [plan(path, catalog) for path in paths]
    except ConfigError as exc:
        print("opscheck coverage: invalid input:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return USAGE_ERROR
    with ThreadPoolExecutor(max_workers=min(4, len(plans))) as pool:
        collected = list(pool.map(lambda p: collect(p.inventory, p.env, p.mapping.params), plans))
    reports = [judge(p, catalog, found) for p, found in zip(plans, collected, strict=True)]
    for report in reports:
        print_report(report, args.verbose)
    if args.markdown:
        print()
        print(markdown(reports))
    return GAPS if any(r.problems for r in reports) else 0


# --- inputs ------------------------------------------------------------------------------


def inventories_named(given: list[str]) -> list[Path]:
    """The inventories given; a mapping file named too (`inventories/*.yml` matches both) stands
    for its inventory, and `.env.example` files are not inventories."""
    paths: list[Path] = []
    for text in given:
        path = Path(text)
        if path.name.endswith(".coverage.yml"):
            path = path.with_name(path.name.removesuffix(".coverage.yml") + ".yml")
        if path not in paths:
            paths.append(path)
    return paths


@dataclass
class Catalog:
    """The catalog's entries by id, its systems' names, and its mutating commands."""

    entries: dict[str, dict]
    systems: dict[str, str]
    mutations: list[dict]
    shown: str


def read_catalog(path: Path) -> Catalog:
    document = read_yaml(path, "catalog")
    data = document.data if isinstance(document.data, dict) else {}
    checks = data.get("checks")
    if not isinstance(checks, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in checks):
        raise ConfigError([f"{document.shown}: not the seed catalog (no `checks:` list of entries with a text id)"])
    systems_list = data.get("systems") or []
    mutations = data.get("excluded_mutations") or []
    if not isinstance(systems_list, list) or not isinstance(mutations, list):
        raise ConfigError([f"{document.shown}: `systems` and `excluded_mutations` must be lists"])
    if not all(isinstance(m, dict) for m in mutations):
        raise ConfigError([f"{document.shown}: every `excluded_mutations` entry must be a mapping"])
    systems = {str(s.get("prefix", "")): str(s.get("name", "")) for s in systems_list if isinstance(s, dict)}
    return Catalog({c["id"]: c for c in checks}, systems, mutations, document.shown)


@dataclass
class Plan:
    inventory: Path
    mapping: CoverageFile
    document_shown: str
    lines: dict[str, int]
    env: dict[str, str]
    loaded: Inventory


def plan(inventory: Path, catalog: Catalog) -> Plan:
    """Read an inventory's mapping and env example, and the inventory with those variables."""
    mapping_path = coverage_path(inventory)
    if not inventory.is_file():
        raise ConfigError([f"{shown_path(inventory)}: no such inventory"])
    if not mapping_path.is_file():
        raise ConfigError(
            [
                f"{shown_path(inventory)}: no {mapping_path.name} beside it (the catalog mapping; without "
                "arguments, opscheck coverage takes every inventory that has one)"
            ]
        )
    document = read_yaml(mapping_path, "coverage mapping")
    try:
        mapping = CoverageFile.model_validate(document.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(document, exc.errors(include_input=False))) from None
    example = env_example_path(inventory)
    env = read_env_file(example) if example.is_file() else {}
    with environment(env):
        loaded = load(inventory, here=False)
    lines = {key[1]: line for key, line in document.lines.items() if len(key) == 2 and key[0] == "entries"}
    return Plan(inventory, mapping, document.shown, lines, env, loaded)


@contextmanager
def environment(values: dict[str, str]):
    """os.environ with `values` set, restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def collect(inventory: Path, env: dict[str, str], params: dict[str, str]) -> set[str] | str:
    """The check ids `pytest --collect-only` gives for the inventory, or why it failed."""
    with tempfile.TemporaryDirectory(prefix="opscheck-coverage-") as reports:
        command = [
            sys.executable,
            "-m",
            "pytest",
            f"--inventory={inventory.resolve()}",
            f"--reports-dir={reports}",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *[f"--param={name}={value}" for name, value in params.items()],
        ]
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=COLLECT_TIMEOUT_S,
                env={**os.environ, **env},
                cwd=Path.cwd(),
            )
        except subprocess.TimeoutExpired:
            return f"pytest --collect-only did not finish within {COLLECT_TIMEOUT_S} s"
    if proc.returncode != 0:
        tail = "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        return f"pytest --collect-only exited {proc.returncode}:\n    {tail}"
    return {line.split("::", 1)[1].strip() for line in proc.stdout.splitlines() if "::" in line}


# --- the verdict -------------------------------------------------------------------------


def judge(plan: Plan, catalog: Catalog, collected: set[str] | str) -> Report:
    mapping, inventory = plan.mapping, plan.loaded
    prefix = mapping.system
    report = Report(plan.inventory, prefix, catalog.systems.get(prefix, prefix.rstrip("-")))
    report.mutations = [m.get("id", "?") for m in catalog.mutations if str(m.get("id", "")).startswith(prefix)]
    if isinstance(collected, str):
        report.problems.append(f"{shown_path(plan.inventory)}: {collected}")
        collected = set()
    mutating = {m.get("catalog_entry") for m in catalog.mutations}
    items = {item.name: item for item in inventory.checklists}

    def problem(entry_id: str, message: str) -> None:
        report.problems.append(f"{plan.document_shown}:{plan.lines.get(entry_id, 1)}: {entry_id}: {message}")

    wanted = [i for i in catalog.entries if i.startswith(prefix)]
    if not wanted:
        report.problems.append(f"{plan.document_shown}: the catalog {catalog.shown} has no entry {prefix}*")
    for entry_id in mapping.entries:
        if entry_id not in catalog.entries:
            problem(entry_id, "not an entry of the catalog")
        elif not entry_id.startswith(prefix):
            problem(entry_id, f"belongs to another system (this file maps {prefix}*)")
    for entry_id in wanted:
        entry = mapping.entries.get(entry_id)
        if entry is None:
            report.problems.append(
                f"{plan.document_shown}: {entry_id}: unmapped (give checks, checklist, excluded or not_yet)"
            )
            report.rows.append(Row(entry_id, "unmapped"))
            continue
        checks = list(entry.checks)
        if entry.checklist:
            item = items.get(entry.checklist)
            if item is None:
                problem(entry_id, f"the inventory has no checklist item {entry.checklist!r}")
                status = "unmapped"
            elif item.automated_by:
                status, checks = "implemented", list(item.automated_by)
            else:
                status, checks = "sign-off", [f"test_checklist_signed_off[{item.name}]"]
        elif entry.excluded:
            status = "excluded"
            read_only = catalog.entries[entry_id].get("read_only", True)
            if entry.excluded == "mutating" and read_only is not False and entry_id not in mutating:
                problem(entry_id, "excluded as mutating, but the catalog marks it read-only")
        else:
            status = "not yet" if entry.not_yet else "implemented"
        for check in checks:
            if check not in collected:
                problem(entry_id, f"{check} is not collected from {shown_path(plan.inventory)}")
        why = f"{entry.excluded}: {entry.reason}" if entry.excluded else entry.not_yet or ""
        report.rows.append(Row(entry_id, status, checks, why, entry.note))
    return report


# --- output ------------------------------------------------------------------------------


def print_report(report: Report, verbose: bool) -> None:
    files = f"{shown_path(report.inventory)}, {shown_path(coverage_path(report.inventory))}"
    print(f"{report.name} ({report.system}*): {len(report.rows)} catalog entries, {files}")
    for status in STATUSES:
        rows = report.by_status(status)
        print(f"  {status:<12} {len(rows):>3}")
        if rows and not verbose:
            ids = ", ".join(r.id for r in rows)
            print(textwrap.fill(ids, 100, initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False))
        if verbose:
            for row in rows:
                print(f"    {row.id}")
                for check in row.checks:
                    print(f"      {check}")
                for text in (row.why, row.note):
                    if text:
                        print(f"      ({text})")
    print(f"  runbook commands never run (catalog excluded_mutations): {len(report.mutations)}")
    for problem in report.problems:
        print(f"  PROBLEM {problem}")


def markdown(reports: list[Report]) -> str:
    lines = [
        "| system | catalog entries | implemented | sign-off | excluded | not yet |",
        "|---|---|---|---|---|---|",
    ]
    totals = [0] * 5
    for report in reports:
        counts = [len(report.rows)] + [len(report.by_status(s)) for s in STATUSES]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        lines.append(f"| {report.name} (`{shown_path(report.inventory)}`) | " + " | ".join(map(str, counts)) + " |")
    lines.append("| **all** | " + " | ".join(f"**{n}**" for n in totals) + " |")
    return "\n".join(lines)
