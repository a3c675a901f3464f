"""A run's results as Prometheus metrics: a textfile for node_exporter, or a Pushgateway push.

A failed scheduled check then alerts through Alertmanager like any other metric (the
README has the rules). The file is written whole and renamed into place, as the textfile
collector asks, so a scrape never reads half a run; checks that no longer run vanish.
"""

import os
import tempfile
from pathlib import Path

from opscheck.core.redact import clip_line, mask_url
from opscheck.report.verdict import SEVERITIES, STATUSES, failing_by_severity, name, status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    """Exactly: 1, 0.25, 1796118587.035 (the format's `%g` would round a timestamp to 1.79612e+09)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def exposition(summary: dict, finished_ts: float) -> str:
    """The run in the Prometheus text format (0.0.4)."""
    env = summary["environment"]
    lines: list[str] = []

    def family(metric: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} gauge")
        lines.extend(f"{metric}{_labels(**labels)} {_number(value)}" for labels, value in samples)

    checks = summary["checks"]

    def labels_of(entry: dict) -> dict:
        return {
            "environment": env,
            "check": name(entry),
            "target": entry.get("target") or "",
            "severity": entry.get("severity") or "",
            "family": entry.get("family") or "",
        }

    family(
        "opscheck_check_ok",
        "1 if the check passed in the last run (a waived failure counts as passed), 0 if it failed or did not run.",
        [(labels_of(c), 1.0 if status(c) in ("passed", "waived") else 0.0) for c in checks],
    )
    family(
        "opscheck_check_waived",
        "1 for a failing check covered by a waiver (owner and expiry in the run page).",
        [(labels_of(c), 1.0) for c in checks if status(c) == "waived"],
    )
    counts = {s: 0 for s in STATUSES}
    for entry in checks:
        counts[status(entry)] += 1
    family(
        "opscheck_run_checks",
        "Checks of the last run by status.",
        [({"environment": env, "status": s}, float(n)) for s, n in counts.items()],
    )
    by_severity = failing_by_severity(checks)
    family(
        "opscheck_run_failing_checks",
        "Failing checks of the last run by severity.",
        [({"environment": env, "severity": s}, float(by_severity.get(s, 0))) for s in SEVERITIES],
    )
    family(
        "opscheck_run_duration_seconds",
        "Wall time of the last run.",
        [({"environment": env}, float(summary["duration_s"]))],
    )
    family(
        "opscheck_run_exit_status",
        "pytest's exit status of the last run (0 all passed, 1 a check failed).",
        [({"environment": env}, float(summary["exit_status"]))],
    )
    family(
        "opscheck_last_run_timestamp_seconds",
        "When the last run finished (Unix time).",
        [({"environment": env}, round(finished_ts, 3))],
    )
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Write whole, then rename: the collector never reads a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def push(url: str, environment: str, text: str, timeout: float) -> str | None:
    """PUT the run to a Pushgateway (it replaces the environment's group); None, or why it failed."""
    import requests  # imported only for a run that pushes: start-up time

    target = f"{url.rstrip('/')}/metrics/job/opscheck/environment/{environment}"
    try:
        response = requests.put(target, data=text.encode(), headers={"Content-Type": CONTENT_TYPE}, timeout=timeout)
    except requests.RequestException as exc:
        return f"push to {mask_url(target)} failed: {type(exc).__name__}: {clip_line(exc, 300)}"
    if response.status_code >= 300:
        return f"push to {mask_url(target)} answered {response.status_code}: {clip_line(response.text, 300)}"
    return None
