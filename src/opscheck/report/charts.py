"""Pictures for the reports: what a reader takes in at a glance."""

import html
from collections import Counter, defaultdict

SHOWN = {"xfailed": "waived"}  # pytest's outcome name, and what opscheck calls it


def family_chart(results: dict) -> str:
    """A bar per family, green for passed and red for failed: the morning's answer at a glance."""
    by_family: defaultdict[str, Counter] = defaultdict(Counter)
    for entry in results.values():
        by_family[entry.get("family") or "other"][entry["outcome"]] += 1
    if not by_family:
        return ""
    rows, y = [], 10
    widest = max(sum(c.values()) for c in by_family.values())
    for family, counts in sorted(by_family.items()):
        x = 110.0
        for outcome, colour in (
            ("passed", "#2e7d32"),
            ("failed", "#c62828"),
            ("error", "#6a1b9a"),
            ("xfailed", "#f9a825"),
            ("skipped", "#9e9e9e"),
        ):
            width = 300 * counts.get(outcome, 0) / widest
            if width:
                rows.append(
                    f'<rect x="{x:.0f}" y="{y}" width="{width:.0f}" height="14" '
                    f'fill="{colour}"><title>{SHOWN.get(outcome, outcome)}: {counts[outcome]}</title></rect>'
                )
                x += width
        label = ", ".join(f"{SHOWN.get(k, k)} {v}" for k, v in sorted(counts.items()))
        rows.append(f'<text x="0" y="{y + 11}" font-size="12">{html.escape(family)}</text>')
        rows.append(f'<text x="{x + 6:.0f}" y="{y + 11}" font-size="11">{html.escape(label)}</text>')
        y += 20
    return (
        f'<h3>Checks by family</h3><svg xmlns="http://www.w3.org/2000/svg" width="640" '
        f'height="{y + 4}">{"".join(rows)}</svg>'
    )


SEVERITY_COLOURS = {"p0": "#b71c1c", "p1": "#e65100", "p2": "#f9a825", "p3": "#78909c"}


def trend_chart(runs: list[dict]) -> str:
    """Failing checks by severity, one stacked bar per kept run, oldest on the left."""
    if not runs:
        return ""
    totals = [sum((r.get("failing") or {}).get(s, 0) for s in SEVERITY_COLOURS) for r in runs]
    top = max(max(totals), 1)
    step = max(8.0, min(32.0, 640 / len(runs)))
    left, base, height = 40, 150, 180
    width = left + step * len(runs) + 10
    parts = [
        f'<line x1="{left}" y1="{base}" x2="{width - 10:.0f}" y2="{base}" stroke="#90a4ae"/>',
        f'<text x="{left - 6}" y="{base - 124}" font-size="11" text-anchor="end">{top}</text>',
        f'<text x="{left - 6}" y="{base + 4}" font-size="11" text-anchor="end">0</text>',
    ]
    for i, run in enumerate(runs):
        x = left + i * step + 2
        y = float(base)
        failing = run.get("failing") or {}
        tip = ", ".join(f"{failing[s]} {s}" for s in SEVERITY_COLOURS if failing.get(s)) or "none failing"
        for severity, colour in SEVERITY_COLOURS.items():
            h = 120 * failing.get(severity, 0) / top
            if h:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{step - 4:.1f}" height="{h:.1f}" fill="{colour}"/>')
        parts.append(
            f'<rect class="run" x="{x - 2:.1f}" y="{base - 124}" width="{step:.1f}" height="124" fill="transparent">'
            f"<title>{html.escape(_when(run.get('started', '')))}: {html.escape(tip)}</title></rect>"
        )
    parts.append(
        f'<text x="{left}" y="{base + 18}" font-size="11">{html.escape(_when(runs[0].get("started", "")))}</text>'
    )
    if len(runs) > 1:
        parts.append(
            f'<text x="{width - 10:.0f}" y="{base + 18}" font-size="11" text-anchor="end">'
            f"{html.escape(_when(runs[-1].get('started', '')))}</text>"
        )
    legend_x = left
    for severity, colour in SEVERITY_COLOURS.items():
        parts.append(f'<rect x="{legend_x}" y="{base + 24}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{base + 33}" font-size="11">{severity}</text>')
        legend_x += 50
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="failing checks by severity per run" '
        f'width="{max(width, 260):.0f}" height="{height + 10}">{"".join(parts)}</svg>'
    )


def sparkline(values: list[float], width: int = 160, height: int = 28) -> str:
    """A line of values over runs (seconds per family), scaled to its own maximum."""
    if not values:
        return ""
    top = max(max(values), 1e-9)
    n = len(values)
    points = " ".join(
        f"{2 + (width - 4) * (i / (n - 1) if n > 1 else 0.5):.1f},{height - 2 - (height - 4) * v / top:.1f}"
        for i, v in enumerate(values)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="max {top:.2f} s"><polyline fill="none" stroke="#1565c0" stroke-width="1.5" '
        f'points="{points}"/></svg>'
    )


def _when(iso: str) -> str:
    """2026-12-01T06:00:00+00:00 -> 2026-12-01 06:00."""
    return iso[:16].replace("T", " ")
