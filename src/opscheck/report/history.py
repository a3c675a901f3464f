"""Across runs: the kept runs' summary.json files, read back to say what changed.

Everything here is computed from reports/<env>/<run>/summary.json alone, so the history
page is static and rebuilt by every run, and a summary written before a field existed
still reads (its statuses are derived from outcomes).
"""

import re
from pathlib import Path

from opscheck.core import jsondoc
from opscheck.report.verdict import failing, status

FLAP_WINDOW = 10  # runs
FLAP_CHANGES = 3  # verdict changes within the window that make a check flapping


def run_key(name: str) -> tuple[str, int]:
    """Run directories in time order: 20261201T060000Z, ...Z-1, ...Z-2, ..., ...Z-10."""
    base, _, n = name.partition("-")
    return base, int(n) if n.isdigit() else 0


def run_dirs(env_dir: Path) -> list[Path]:
    """The run directories of an environment, oldest first (not latest, not state.json)."""
    if not env_dir.is_dir():
        return []
    found = [p for p in env_dir.iterdir() if p.is_dir() and not p.is_symlink() and re.match(r"\d{8}T", p.name)]
    return sorted(found, key=lambda p: run_key(p.name))


MAX_JSON_BYTES = 256 * 1024 * 1024  # a summary of 10,000 checks is about 5 MB


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> object:
    """A JSON file of a reports directory, or None when it is missing, damaged, larger than
    `limit`, or not a regular file (a FIFO there would wait for a writer forever)."""
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return jsondoc.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_summary(folder: Path) -> dict | None:
    """A run's summary.json with its directory name as `run`; None while written, or when
    damaged: a file of the wrong shape is passed over like a truncated one, or every later
    run would fail on it."""
    summary = read_json(folder / "summary.json")
    if not isinstance(summary, dict) or not _well_formed(summary):
        return None
    summary["run"] = folder.name
    return summary


def _well_formed(summary: dict) -> bool:
    """The fields the history reads have the types a run writes."""
    number = (int, float)
    if not (
        isinstance(summary.get("checks"), list)
        and isinstance(summary.get("started"), str)
        and isinstance(summary.get("duration_s"), number)
        and isinstance(summary.get("exit_status"), int)
        and isinstance(summary.get("failing", {}), dict)
        and isinstance(summary.get("verdict", ""), str)
    ):
        return False
    durations = summary.get("family_durations_s", {})
    if not isinstance(durations, dict) or not all(isinstance(v, number) for v in durations.values()):
        return False
    return all(
        isinstance(c, dict)
        and isinstance(c.get("id"), str)
        and isinstance(c.get("outcome", ""), str)
        and isinstance(c.get("failing_runs", 1), int)
        and all(isinstance(c.get(k, ""), str) for k in ("failing_since", "failing_since_run", "target", "family"))
        for c in summary["checks"]
    )


def load_runs(env_dir: Path, exclude: Path | None = None) -> list[dict]:
    """The summaries of the kept runs, oldest first."""
    found = (read_summary(folder) for folder in run_dirs(env_dir) if folder != exclude)
    return [s for s in found if s is not None]


def latest_summary(folders: list[Path]) -> dict | None:
    """The newest readable summary among run directories (oldest first)."""
    return next((s for s in map(read_summary, reversed(folders)) if s is not None), None)


def verdicts(summary: dict) -> dict[str, bool]:
    """{check id: failing?} for the checks that ran (skipped ones did not say)."""
    return {c["id"]: failing(c) for c in summary.get("checks", []) if status(c) != "skipped"}


def mark_failing_since(previous: list[dict], checks: list[dict], started: str, run: str) -> None:
    """Each failing check gets the first run of its current failing streak (and its length).

    The streak is carried from the last earlier run that ran the check, so it survives
    pruning: a check red for 40 runs says so with 30 kept.
    """
    last: dict[str, tuple[dict, dict]] = {}  # check id -> (its entry, its run's summary)
    for summary in previous:
        for entry in summary.get("checks", []):
            if status(entry) != "skipped":
                last[entry["id"]] = (entry, summary)
    for entry in checks:
        if not failing(entry):
            continue
        found = last.get(entry["id"])
        if found is not None and failing(found[0]):
            before, run_of = found
            entry["failing_since"] = before.get("failing_since") or run_of.get("started", "")
            entry["failing_since_run"] = before.get("failing_since_run") or run_of["run"]
            entry["failing_runs"] = int(before.get("failing_runs") or 1) + 1
        else:
            entry["failing_since"], entry["failing_since_run"], entry["failing_runs"] = started, run, 1


def changes(previous: dict | None, current: dict) -> dict[str, list[str]]:
    """Checks that ran in both runs and changed verdict: new failures and recovered ones."""
    if previous is None:
        return {"new_failures": [], "recovered": []}
    before, now = verdicts(previous), verdicts(current)
    both = sorted(set(before) & set(now))
    return {
        "new_failures": [c for c in both if now[c] and not before[c]],
        "recovered": [c for c in both if before[c] and not now[c]],
    }


def flapping(runs: list[dict], window: int = FLAP_WINDOW, threshold: int = FLAP_CHANGES) -> dict[str, int]:
    """{check id: verdict changes} for checks whose verdict changed >= threshold times in the last runs."""
    seen: dict[str, list[bool]] = {}
    for summary in runs[-window:]:
        for check, bad in verdicts(summary).items():
            seen.setdefault(check, []).append(bad)
    counted = {check: sum(a != b for a, b in zip(v, v[1:], strict=False)) for check, v in seen.items()}
    return {check: n for check, n in sorted(counted.items()) if n >= threshold}


def timeline(runs: list[dict], check: str, window: int = FLAP_WINDOW) -> list[str]:
    """A check's status in each of the last runs ("" where it did not run)."""
    out = []
    for summary in runs[-window:]:
        entry = next((c for c in summary.get("checks", []) if c["id"] == check), None)
        out.append(status(entry) if entry else "")
    return out
