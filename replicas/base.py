"""What every replica shares: a temp dir, the services it started (stopped in reverse), the
environment that points the seed inventory's ${VARIABLES} at them, the few fields no
variable can reach (an adapted copy of the seed, each change with its reason), the suite
run itself, and the fault drills.

A replica is made of the self-tests' own servers (tests/servers*.py) on random loopback
ports, a private Docker engine and temp dirs, so several replicas (of the same system or
not) run at once on one machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO.parent / "shared" / "seeds"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass
class Override:
    """One field of the seed inventory that no ${VARIABLE} reaches, set in the adapted copy.

    `path` is "section[target-name].field" (or "section[target-name].list[item-name].field");
    the value is what the replica needs there; `why` is said in docs/drills.md.
    """

    path: str
    value: object
    why: str


@dataclass
class Drill:
    """A runbook's "common issue" injected into its replica, and what it must trip.

    `fails` are the check ids that must fail while the fault is in; every other check of the
    run must still pass. `inject` and `reset` take the started replica. Drills of one
    `group` touch disjoint targets and run together in one suite run.
    """

    name: str
    section: str  # the runbook section it comes from
    fault: str  # what is broken, in a few words
    fails: tuple[str, ...]
    inject: Callable[[Replica], None]
    reset: Callable[[Replica], None]
    group: int = 0


@dataclass
class Run:
    """One suite run against the replica."""

    command: list[str]
    rc: int
    output: str
    seconds: float
    reports: Path
    summary: dict = field(default_factory=dict)

    @property
    def checks(self) -> dict[str, dict]:
        return {c["id"].split("::", 1)[1]: c for c in self.summary.get("checks", [])}

    def outcomes(self) -> dict[str, str]:
        return {check_id: c["outcome"] for check_id, c in self.checks.items()}

    def failed(self) -> set[str]:
        return {check_id for check_id, outcome in self.outcomes().items() if outcome != "passed"}

    def report(self) -> Path | None:
        if not self.summary:
            return None
        found = self.reports / self.summary["environment"] / self.summary["run"] / "report.html"
        return found if found.exists() else None


def matches(pattern: str, check_id: str) -> bool:
    """A drill's `fails` entry: a check id, where `*` stands for any text (a random port in an id)."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), check_id) is not None


def parallel(*calls: Callable[[], object]) -> list:
    """Run independent start-ups at once (each server's start is mostly waiting)."""
    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def patch(document: dict, path: str, value: object) -> None:
    """Set `section[name].field` (items picked by their `name`, or `script`/`id`) in a loaded YAML."""
    node: object = document
    parts = path.split(".")
    for i, part in enumerate(parts):
        key, _, pick = part.partition("[")
        last = i == len(parts) - 1
        if pick:
            items = node[key]  # type: ignore[index]
            wanted = pick.rstrip("]")
            matches = [it for it in items if wanted in (it.get("name"), it.get("script"), it.get("id"))]
            if len(matches) != 1:
                raise KeyError(f"{path}: {len(matches)} items named {wanted!r} in {key}")
            node = matches[0]
            if last:
                raise KeyError(f"{path}: ends at an item, not a field")
        elif last:
            node[key] = value  # type: ignore[index]
        else:
            node = node.setdefault(key, {})  # type: ignore[union-attr]


class Replica:
    """A local stand-in of one runbook's system; a context manager (start, then stop)."""

    name = ""  # the system: inventories/<name>.yml
    runbook = ""  # its runbook in ../shared/seeds
    title = ""
    drills: list[Drill] = []
    # the seed's fields no ${VARIABLE} reaches, with why: set by build() through adapt()
    adapted: dict[str, str] = {}

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"opscheck-replica-{self.name}-", dir="/tmp"))
        os.chmod(self.dir, 0o755)  # the postgres user reads certificates under it
        self.stack = contextlib.ExitStack()
        self.env: dict[str, str] = {}
        self.overrides: list[Override] = []
        self.unset: set[str] = set()  # variables of the caller's environment the suite must not see
        self.started_s = 0.0

    # --- life cycle ---

    def __enter__(self) -> Replica:
        try:
            started = time.monotonic()
            self.build()
            self.started_s = time.monotonic() - started
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def build(self) -> None:
        """Start the services and fill self.env / self.overrides (each system's own)."""
        raise NotImplementedError

    def stop(self) -> None:
        try:
            self.stack.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def services(self, *servers) -> None:
        """Start several tests/servers*.py servers at once; each is stopped when the replica stops.

        A server is a context manager, or has start() and stop() (the Docker engine).
        """

        def up(server):
            if hasattr(server, "__enter__"):
                server.__enter__()
                return server.__exit__
            server.start()
            return lambda *exc: server.stop()

        with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
            futures = [pool.submit(up, s) for s in servers]
        errors = []
        for future in futures:
            if future.exception() is None:
                self.stack.push(future.result())
            else:
                errors.append(future.exception())
        if errors:
            raise errors[0]

    def adapt(self, path: str, value: object) -> None:
        """Set a field the seed has no variable for (it must be declared in `adapted`, with its reason)."""
        self.overrides = [o for o in self.overrides if o.path != path]
        self.overrides.append(Override(path, value, self.adapted[path]))

    @classmethod
    def groups_of(cls) -> dict[int, list[Drill]]:
        found: dict[int, list[Drill]] = {}
        for d in cls.drills:
            found.setdefault(d.group, []).append(d)
        return found

    # --- trust: the replica's CA beside the system's ---

    def trust(self, *ca_files: Path) -> Path:
        """A CA bundle with the system's roots and the replica's, used as "the system store".

        Public endpoints in the seed inventories are verified against the system store; the
        replica's certificates come from its own CA, so the suite runs with SSL_CERT_FILE
        (OpenSSL, Python's ssl), REQUESTS_CA_BUNDLE (requests) and
        GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (grpcio) naming this bundle.
        """
        bundle = self.dir / "trust.pem"
        parts = [Path(SYSTEM_CA_BUNDLE).read_bytes()] if Path(SYSTEM_CA_BUNDLE).exists() else []
        parts += [Path(f).read_bytes() for f in ca_files]
        bundle.write_bytes(b"\n".join(parts))
        for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"):
            self.env[var] = str(bundle)
        return bundle

    # --- the inventory: the seed, or an adapted copy ---

    @property
    def seed(self) -> Path:
        return REPO / "inventories" / f"{self.name}.yml"

    def inventory(self) -> Path:
        """The seed itself when no override is needed, else a copy with only the overrides changed."""
        missing = set(self.adapted) - {o.path for o in self.overrides}
        if missing:
            raise RuntimeError(f"{self.name}: no value for the adapted field(s) {sorted(missing)}")
        if not self.overrides:
            return self.seed
        document = yaml.safe_load(self.seed.read_text())
        for override in self.overrides:
            patch(document, override.path, override.value)
        path = self.dir / f"{self.name}.yml"
        header = "".join(f"# replica override {o.path}: {o.why}\n" for o in self.overrides)
        path.write_text(f"# adapted copy of inventories/{self.name}.yml for its replica\n{header}")
        with path.open("a") as f:
            yaml.safe_dump(document, f, sort_keys=False, allow_unicode=True)
        return path

    def command(self, *args: str, reports_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest",
            f"--inventory={self.inventory()}",
            f"--reports-dir={reports_dir}",
            *args,
        ]

    def run(self, *args: str, reports_dir: Path | None = None, timeout: float = 300, echo: bool = False) -> Run:
        """Run the suite (pytest, in a subprocess, as a user would) against the replica."""
        reports = reports_dir or Path(tempfile.mkdtemp(prefix="reports-", dir=self.dir))
        command = self.command(*args, reports_dir=reports)
        env = {k: v for k, v in {**os.environ, **self.env}.items() if k not in self.unset}
        wall_start = time.time() - 1
        started = time.monotonic()
        if echo:
            proc = subprocess.run(command, cwd=REPO, env=env, timeout=timeout)
            output = ""
        else:
            proc = subprocess.run(command, cwd=REPO, env=env, timeout=timeout, capture_output=True, text=True)
            output = proc.stdout + proc.stderr
        run = Run(command, proc.returncode, output, time.monotonic() - started, reports)
        summaries = [p for p in reports.glob("*/*/summary.json") if p.stat().st_mtime >= wall_start]
        if summaries:  # this run's (a shared reports dir holds other runs too)
            run.summary = json.loads(max(summaries, key=lambda p: p.stat().st_mtime).read_text())
        return run

    # --- drills ---

    def drill(self, name: str) -> Drill:
        for found in self.drills:
            if found.name == name:
                return found
        raise KeyError(f"{self.name} has no drill {name!r}; drills: {', '.join(d.name for d in self.drills)}")

    def groups(self) -> dict[int, list[Drill]]:
        return self.groups_of()

    def inject(self, drills: Iterable[Drill]) -> None:
        for d in drills:
            d.inject(self)

    def reset(self, drills: Iterable[Drill]) -> None:
        for d in drills:
            d.reset(self)
