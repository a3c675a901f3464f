"""The family registry: every kind of target opscheck checks, named once.

A family's stem is its name everywhere: the inventory section (`redis:`), this package's
module (opscheck/families/redis.py: the section model and the client), the project's
fixture module (fixtures/redis.py), its check module (checks/test_redis.py), its self-test
(tests/test_redis*.py), the summary's `family` and the report's group. Everything that
needs the list of families derives it from FAMILIES; adding a family is one line here and
one field in opscheck.inventory.Inventory (see CONTRIBUTING.md).

A family module defines its section model(s), its client (how the target is read) and
`parameters(inventory) -> {argname: [Param, ...]}`: the check arguments it hands out.
It imports its client library only when a check first needs it (core/lazy.py).
"""

import importlib
from collections.abc import Iterable
from types import ModuleType

FAMILIES: dict[str, str] = {
    "hosts": "opscheck.families.hosts",
    "http": "opscheck.families.http",
    "grpc": "opscheck.families.grpc",
    "tls": "opscheck.families.tls",
    "certificate_files": "opscheck.families.certificate_files",
    "postgres": "opscheck.families.postgres",
    "pgbouncer": "opscheck.families.pgbouncer",
    "redis": "opscheck.families.redis",
    "docker": "opscheck.families.docker",
    "kubernetes": "opscheck.families.kubernetes",
    "logs": "opscheck.families.logs",
    "commands": "opscheck.families.commands",
    "prometheus": "opscheck.families.prometheus",
    "alertmanager": "opscheck.families.alertmanager",
    "grafana": "opscheck.families.grafana",
    "backups": "opscheck.families.backups",
    "checklists": "opscheck.families.checklists",
    "config_files": "opscheck.families.config_files",
    "comparisons": "opscheck.families.comparisons",
    "aws": "opscheck.families.aws",
    "cloudflare": "opscheck.families.cloudflare",
}


def family(stem: str) -> ModuleType:
    """The family module of a stem (imported on first use)."""
    return importlib.import_module(FAMILIES[stem])


def fixture_modules(stems: Iterable[str] = FAMILIES) -> list[str]:
    """The project's fixture modules of these families: what the root conftest.py loads."""
    return [f"fixtures.{stem}" for stem in stems]


def check_module(stem: str) -> str:
    """The file name of a family's checks in the project's checks/ folder."""
    return f"test_{stem}.py"
