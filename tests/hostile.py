"""Run one hostile input in a forked child, bounded in time and memory.

The child calls the real entry point in-process (`opscheck ...` or `pytest ...`), so a
case costs milliseconds, not a new interpreter; the fork keeps a crash, a hang or a
memory blow-up of the case from touching the self-test run. What comes back is the exit
code, everything the child printed, its wall time and its peak memory.
"""

import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

SECONDS = 10  # a refused input is refused within this
MEMORY_MB = 400  # growth of the child's peak memory allowed for one case
KILLED = -9


@dataclass
class Outcome:
    rc: int
    output: str
    seconds: float
    grown_mb: float

    def clean(self) -> list[str]:
        """What is wrong with the way the input was refused ([] when nothing)."""
        wrong = []
        for mark in ("Traceback", "INTERNALERROR", "MemoryError", "RecursionError"):
            if mark in self.output:
                wrong.append(f"{mark} in the output")
        if self.seconds > SECONDS:
            wrong.append(f"took {self.seconds:.1f} s > {SECONDS} s")
        if self.grown_mb > MEMORY_MB:
            wrong.append(f"grew {self.grown_mb:.0f} MB > {MEMORY_MB} MB")
        return wrong


def run_forked(entry: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Outcome:
    """Run `opscheck argv` (entry "opscheck") or `pytest argv` (entry "pytest") in a child."""
    out = tempfile.NamedTemporaryFile(prefix="opscheck-hostile-", delete=False)  # noqa: SIM115 - the child writes it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 99
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            for sig in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            with open("/proc/self/statm") as statm:
                size = int(statm.read().split()[0]) * resource.getpagesize()
            limit = size + 2 * MEMORY_MB * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            os.chdir(cwd)
            os.environ.update(env or {})
            if entry == "opscheck":
                from opscheck.cli import main

                code = main(argv)
            else:
                import pytest

                pytest.mark._config = None  # the parent's config: a fresh process has none
                code = int(pytest.main(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - the point is to see it
            traceback.print_exc()
            code = 98
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = started + SECONDS * 3
    status, usage = 0, None
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.005)
    seconds = time.monotonic() - started
    rc = os.waitstatus_to_exitcode(status)
    output = Path(out.name).read_text(errors="replace")
    os.unlink(out.name)
    grown = max(0.0, usage.ru_maxrss / 1024 - before) if usage else 0.0
    return Outcome(rc, output, seconds, grown)
