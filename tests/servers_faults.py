"""Faults made real while a run is going: servers frozen (SIGSTOP) or killed mid-check, a
reports directory that fills up or vanishes, Ctrl-C, two runs at once.

`Running` starts the suite in a subprocess exactly as run_suite does, but hands it back
while it runs, so a test can act when a check is under way and then collect the result.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import REPO, Result


def cluster_pids(server) -> list[int]:
    """The postmaster of a PostgresServer and every process it started (backends, workers)."""
    with open(os.path.join(server.data, "postmaster.pid")) as f:
        root = int(f.readline())
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == root:
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def frozen(pids: list[int]):
    """SIGSTOP the processes (the kernel still accepts and ACKs their TCP), SIGCONT after."""
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a backend that just exited
                os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def wait_until(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            found = predicate()
            if found:
                return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds} s")


@dataclass
class Running:
    """A suite run in progress."""

    proc: subprocess.Popen
    reports: Path
    started: float

    def result(self, timeout: float = 120) -> tuple[Result, float]:
        """(the run's Result, its wall time in seconds)."""
        out, _ = self.proc.communicate(timeout=timeout)
        seconds = time.monotonic() - self.started
        result = Result(self.proc.returncode, out, self.reports)
        summaries = sorted({p.resolve() for p in self.reports.glob("*/*/summary.json")})
        if summaries:
            result.summary = json.loads(summaries[-1].read_text())
        return result, seconds

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)


def start_suite(inventory, folder: Path, *args: str, reports: Path | None = None) -> Running:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inventory.yml"
    path.write_text(inventory if isinstance(inventory, str) else yaml.safe_dump(inventory, sort_keys=False))
    reports = reports or folder / "reports"
    command = [sys.executable, "-m", "pytest", f"--inventory={path}", f"--reports-dir={reports}", "-p", "no:randomly"]
    proc = subprocess.Popen([*command, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Running(proc, reports, time.monotonic())


def report_files(reports: Path) -> dict[str, str]:
    """The files of the newest run directory, name -> text ({} if none)."""
    runs = sorted(p for p in reports.glob("*/*") if p.is_dir() and not p.is_symlink())
    return {f.name: f.read_text(errors="replace") for f in runs[-1].iterdir()} if runs else {}
