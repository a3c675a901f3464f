"""The marker vocabulary, and the rule that every check carries one severity and a schedule."""

SCHEDULES = {
    "smoke": "deploy-gate check; every smoke check is also daily",
    "daily": "runs every day (pytest -m daily)",
    "weekly": "runs once a week (pytest -m weekly)",
    "monthly": "runs once a month (pytest -m monthly)",
    "adhoc": "incident-time check; deselected unless its --param NAME=VALUE is given",
}
SEVERITIES = {
    "p0": "critical: page now / block the deploy",
    "p1": "high: fix today",
    "p2": "warning: fix this week",
    "p3": "informational",
}
DOMAINS = {
    "http": "HTTP endpoints",
    "tls": "certificates and TLS endpoints",
    "database": "PostgreSQL and PgBouncer",
    "redis": "Redis",
    "containers": "Docker containers",
    "host": "host facts: disk, memory, load, processes, services, ports",
    "logs": "log patterns",
    "monitoring": "Prometheus, Alertmanager, Grafana",
    "kubernetes": "Kubernetes objects",
    "backup": "backups",
    "security": "security posture",
    "cloud": "cloud provider APIs",
    "ops": "a human checklist item, checked as a fresh sign-off record",
}
OTHER = {
    "runbook(text)": "the runbook hint a failure shows: what it means, likely causes, where to look",
}


def register(config) -> None:
    """Register every marker so --strict-markers rejects typos and --markers lists them."""
    for table in (SCHEDULES, SEVERITIES, DOMAINS, OTHER):
        for name, meaning in table.items():
            config.addinivalue_line("markers", f"{name}: {meaning}")


def problems(marker_names: list[str]) -> list[str]:
    """What is wrong with a check's markers ([] when it follows the conventions)."""
    found = []
    severities = {n for n in marker_names if n in SEVERITIES}
    if len(severities) != 1:
        found.append(f"needs exactly one severity marker (p0-p3), has {sorted(severities) or 'none'}")
    if not any(n in SCHEDULES for n in marker_names):
        found.append("needs a schedule marker (smoke, daily, weekly, monthly or adhoc)")
    if not any(n in DOMAINS for n in marker_names):
        found.append("needs a domain marker (" + ", ".join(DOMAINS) + ")")
    return found
