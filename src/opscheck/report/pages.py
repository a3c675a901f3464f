"""The HTML pages: the run page, an environment's history, the list of environments.

Jinja2 templates beside this module (templates/), rendered from summary.json data only,
each page one file with its style and script inline: readable offline, nothing fetched.
pytest-html's own page stays as the detailed log (details.html); its hooks can add cells
and a summary block to a table it orders itself, not the severity-first page an on-call
engineer needs. This module is imported at the end of a run, never at start-up.
"""

import functools
import os
import re
import uuid
from collections import Counter, defaultdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jinja2
from markupsafe import Markup

from opscheck.report import charts, history
from opscheck.report.verdict import (
    SEVERITIES,
    STATUSES,
    failing_by_severity,
    first_line,
    measured,
    name,
    severity_rank,
    status,
    target_ref,
    verdict_line,
)

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("opscheck.report", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def prepare() -> None:
    """Compile the templates now (about 40 ms): called while the checks wait for their reads,
    so the end of a run only renders."""
    for template in ("run.html.j2", "history.html.j2", "environments.html.j2"):
        _ENV.get_template(template)
    _version()


@functools.cache
def _version() -> str:
    try:
        return version("opscheck")
    except PackageNotFoundError:
        return ""


def when(iso: str) -> str:
    """2026-12-01T06:00:00+00:00 -> 2026-12-01 06:00:00 UTC."""
    return f"{iso[:19].replace('T', ' ')} UTC" if iso else ""


def _write(path: Path, template: str, **context) -> int:
    text = _ENV.get_template(template).render(version=_version(), **context)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # runs at once: a name each
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(text.encode())


NOT_ID = re.compile(r"[^0-9A-Za-z]")
# keys a check entry may lack (the templates read them all)
OPTIONAL = dict.fromkeys(
    ("severity", "family", "runbook", "caused_by", "flapping", "waived_by", "waived_until", "waiver_reason"), ""
)


def _view(entry: dict, summary: dict, new: set[str]) -> dict:
    """A check entry with what the templates show."""
    since_run = entry.get("failing_since_run")
    view = {**OPTIONAL, **entry}
    view.update(
        name=name(entry),
        ref=target_ref(entry),
        status=status(entry),
        measured=measured(entry),
        anchor="c-" + NOT_ID.sub("-", name(entry)),
        new=entry["id"] in new,
        since=when(entry.get("failing_since", "")),
        since_link=f"../{since_run}/report.html" if since_run and since_run != summary.get("run") else "",
        failing_runs=int(entry.get("failing_runs") or 1),
    )
    view["blocked"] = view["measured"].startswith("blocked: ")
    return view


def _order(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda c: (severity_rank(c), c["ref"], c["name"]))


def run_page(summary: dict, path: Path, details: str = "") -> int:
    """reports/<env>/<run>/report.html; returns its size in bytes."""
    new = set(summary.get("changes", {}).get("new_failures", []))
    views = [_view(c, summary, new) for c in summary["checks"]]
    by_id = {v["id"]: v for v in views}
    causes = []
    grouped: set[str] = set()
    for cause in summary.get("causes", []):
        items = _order([by_id[i] for i in cause["checks"] if i in by_id])
        grouped.update(c["id"] for c in items)
        refs = sorted({c["ref"] for c in items})
        causes.append(dict(cause, entries=items, targets=refs, dependents=[r for r in refs if r != cause["target"]]))
    by_severity: list[tuple[str, list[dict]]] = []
    rest = [v for v in views if v["status"] == "failed" and v["id"] not in grouped]
    for severity in (*SEVERITIES, ""):
        of_severity = [v for v in rest if (v.get("severity") or "") == severity]
        if of_severity:
            targets: defaultdict[str, list[dict]] = defaultdict(list)
            for v in _order(of_severity):
                targets[v["ref"]].append(v)
            by_severity.append((severity, [{"ref": r, "entries": items} for r, items in sorted(targets.items())]))
    counts = {s: sum(1 for v in views if v["status"] == s) for s in STATUSES}
    return _write(
        path,
        "run.html.j2",
        env=summary["environment"],
        verdict=summary["verdict"],
        n_failing=counts["failed"],
        n_grouped=len(grouped),
        causes=causes,
        by_severity=by_severity,
        waived=_order([v for v in views if v["status"] == "waived"]),
        passed=_order([v for v in views if v["status"] == "passed"]),
        skipped=_order([v for v in views if v["status"] == "skipped"]),
        meta=summary,
        started=when(summary["started"]),
        counts_text=", ".join(f"{n} {s}" for s, n in counts.items() if n),
        severities=SEVERITIES,
        statuses=STATUSES,
        families=sorted({v["family"] for v in views if v.get("family")}),
        targets=sorted({v["ref"] for v in views if v["ref"]}),
        details=details,
        family_chart=Markup(charts.family_chart({v["id"]: v for v in views})),
    )


def _run_row(summary: dict) -> dict:
    checks = summary.get("checks", [])
    counted = Counter(map(status, checks))  # one pass: a history of 30 runs of 2,000 checks each
    statuses = {s: counted[s] for s in STATUSES}
    return dict(
        summary,
        when=when(summary.get("started", "")),
        failing=summary.get("failing") or failing_by_severity(checks),
        status_counts=statuses,
        n_failing=statuses["failed"],
        verdict=summary.get("verdict") or verdict_line(checks),  # a summary from before the field
    )


def history_page(environment: str, runs: list[dict], path: Path) -> int:
    """reports/<env>/index.html from the kept runs (oldest first, the current one last)."""
    rows = [_run_row(r) for r in runs]
    latest = rows[-1] if rows else None
    previous = runs[-2] if len(runs) > 1 else None
    current = runs[-1] if runs else {"checks": []}
    entries = {c["id"]: c for c in current.get("checks", [])}
    if previous:
        for c in previous.get("checks", []):
            entries.setdefault(c["id"], c)

    def view(check_id: str) -> dict:
        c = entries[check_id]
        return dict(c, name=name(c), ref=target_ref(c), short=first_line(measured(c), 160))

    change = history.changes(previous, current)
    flaps = history.flapping(runs)
    flapping = [
        dict(view(c), changes=n, timeline=history.timeline(runs, c))
        for c, n in sorted(flaps.items(), key=lambda kv: (-kv[1], kv[0]))
        if c in entries
    ]
    recent = runs[-history.FLAP_WINDOW :]
    families = sorted({f for r in runs for f in (r.get("family_durations_s") or {})})
    family_rows = []
    for family in families:
        values = [float((r.get("family_durations_s") or {}).get(family, 0)) for r in runs]
        family_rows.append(
            {
                "family": family,
                "spark": Markup(charts.sparkline(values)),
                "last": [f"{v:.2f}" for v in values[-len(recent) :]],
            }
        )
    return _write(
        path,
        "history.html.j2",
        env=environment,
        runs=rows,
        latest=latest,
        previous=previous,
        trend=Markup(charts.trend_chart(rows)),
        new_failures=_order([view(c) for c in change["new_failures"]]),
        recovered=_order([view(c) for c in change["recovered"]]),
        flapping=flapping,
        flap_window=history.FLAP_WINDOW,
        flap_changes=history.FLAP_CHANGES,
        severities=SEVERITIES,
        family_runs=[
            {"when": when(r.get("started", "")), "short": "latest" if n == 0 else f"-{n}"}
            for n, r in reversed(list(enumerate(reversed(recent))))
        ],
        family_rows=family_rows,
    )


def environments_page(root: Path) -> int:
    """reports/index.html: every environment with a kept run."""
    environments = []
    for env_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        runs = history.run_dirs(env_dir)
        latest = history.latest_summary(runs)
        if latest is None:
            continue
        row = _run_row(latest)
        environments.append(
            {
                "name": env_dir.name,
                "when": row["when"],
                "verdict": row["verdict"],
                "n_failing": row["n_failing"],
                "runs": len(runs),
            }
        )
    return _write(root / "index.html", "environments.html.j2", environments=environments)
