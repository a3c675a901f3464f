"""One run read as an on-call engineer reads it: what fails, how badly, where, and why.

Works on summary.json's check entries (plain dicts), so the run page, the terminal, the
metrics and the history page all say the same thing.
"""

from collections import Counter

SEVERITIES = ("p0", "p1", "p2", "p3")
STATUSES = ("failed", "waived", "passed", "skipped")


def status(entry: dict) -> str:
    """failed (failed, error, a stale waiver), waived, passed or skipped (a check cut off by
    Ctrl-C counts as skipped: it has no verdict; the page says the run was interrupted)."""
    outcome = entry.get("outcome", "")
    if outcome == "xfailed":
        return "waived"
    if outcome == "interrupted":
        return "skipped"
    if outcome in ("passed", "skipped"):
        return outcome
    return "failed"


def failing(entry: dict) -> bool:
    return status(entry) == "failed"


def name(entry: dict) -> str:
    """The check id without its module: test_http_status[api]."""
    return entry["id"].split("::", 1)[-1]


def target_ref(entry: dict) -> str:
    """section:name of the check's target (a family's checks look at its own section's targets)."""
    target = entry.get("target") or ""
    return f"{entry.get('family') or 'other'}:{target}" if target else ""


def severity_rank(entry: dict) -> int:
    severity = entry.get("severity", "")
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def failing_by_severity(checks: list[dict]) -> dict[str, int]:
    counts = Counter(c.get("severity") or "unrated" for c in checks if failing(c))
    return {s: counts[s] for s in (*SEVERITIES, "unrated") if counts[s]}


def verdict_line(checks: list[dict]) -> str:
    """ "3 p0, 5 p1 failing on 4 targets", or "no check failing: 160 passed, 2 waived"."""
    bad = [c for c in checks if failing(c)]
    if not bad:
        counts = Counter(status(c) for c in checks)
        parts = [f"{counts[s]} {s}" for s in ("passed", "waived", "skipped") if counts[s]]
        return "no check failing: " + ", ".join(parts)
    by_severity = ", ".join(f"{n} {s}" for s, n in failing_by_severity(checks).items())
    targets = {target_ref(c) for c in bad}
    return f"{by_severity} failing on {len(targets)} target{'' if len(targets) == 1 else 's'}"


def measured(entry: dict) -> str:
    """The failure's own message: without the runbook hint appended to it, or the waiver's words before it."""
    text = entry.get("message") or ""
    hint = entry.get("runbook")
    if hint:
        text = text.removesuffix(f"\n\nrunbook: {hint}")
    if status(entry) == "waived":
        text = text.partition("\n\n")[2] or text
    return text.strip()


def first_line(text: str, limit: int = 200) -> str:
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --- root causes -------------------------------------------------------------------------


def root_causes(checks: list[dict], depends_on: dict[str, list[str]]) -> list[dict]:
    """Dependents' failures grouped under the unreachable dependency they need.

    A target is unreachable when one of its checks failed with a connection error (the
    `unreachable` property). A failing check of a target that depends, directly or
    through others, on an unreachable target gets `caused_by`; the nearest unreachable
    dependency that does not itself depend on another unreachable one is named. Marks the
    entries in place and returns the groups: [{target, message, text, checks}].
    """
    unreachable: dict[str, str] = {}
    for entry in checks:
        if failing(entry) and entry.get("unreachable"):
            ref = target_ref(entry)
            if ref not in unreachable or unreachable[ref].startswith("blocked: "):
                unreachable[ref] = entry["unreachable"]

    def needs(ref: str) -> list[str]:
        """Every target `ref` depends on, nearest first (a cycle stops where it closes)."""
        seen: list[str] = []
        queue = list(depends_on.get(ref, []))
        while queue:
            dep = queue.pop(0)
            if dep != ref and dep not in seen:
                seen.append(dep)
                queue += depends_on.get(dep, [])
        return seen

    def cause_of(ref: str) -> str | None:
        for dep in needs(ref):
            if dep in unreachable and not any(d in unreachable for d in needs(dep) if d != ref):
                return dep
        return None

    groups: dict[str, list[str]] = {}
    for entry in checks:
        if not failing(entry):
            continue
        cause = cause_of(target_ref(entry))
        if cause:
            entry["caused_by"] = cause
            groups.setdefault(cause, []).append(entry["id"])
    result = []
    for cause, ids in groups.items():
        own = [c["id"] for c in checks if failing(c) and target_ref(c) == cause]
        message = _without_target(unreachable[cause].removeprefix("blocked: "), cause)
        result.append(
            {
                "target": cause,
                "message": message,
                "text": f"likely caused by {cause}: {message}",
                "checks": own + ids,
            }
        )
    return sorted(result, key=lambda g: g["target"])


def _without_target(message: str, ref: str) -> str:
    """'redis "q" (redis://...): cannot connect: refused' -> 'cannot connect: refused' (the ref names it)."""
    section, _, target = ref.partition(":")
    if message.startswith(f'{section} "{target}"') and ": " in message:
        return message.split(": ", 1)[1]
    return message
