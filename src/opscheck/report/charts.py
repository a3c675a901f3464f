"""Pictures for the reports: what a reader takes in at a glance."""

import html
from collections import Counter, defaultdict


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
                    f'fill="{colour}"><title>{outcome}: {counts[outcome]}</title></rect>'
                )
                x += width
        label = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        rows.append(f'<text x="0" y="{y + 11}" font-size="12">{html.escape(family)}</text>')
        rows.append(f'<text x="{x + 6:.0f}" y="{y + 11}" font-size="11">{html.escape(label)}</text>')
        y += 20
    return (
        f'<h3>Checks by family</h3><svg xmlns="http://www.w3.org/2000/svg" width="640" '
        f'height="{y + 4}">{"".join(rows)}</svg>'
    )
