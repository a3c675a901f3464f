"""The inventory: one YAML file per environment that says which targets exist.

Checks are parametrized over it, so adding a service is an edit to YAML, not to Python.
Loading is strict: bad YAML, unknown keys, wrong types and unset ${VARS} all stop the
run with a message naming file, line and field, and never echo a value (it may be a
secret). The file has one section per family (opscheck.families.FAMILIES), each a list
of that family's targets.
"""

import os
import re
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from opscheck.core import redact
from opscheck.core.errors import ConfigError
from opscheck.core.model import Model, Target
from opscheck.core.yamlfile import YamlDocument, read_yaml, validation_problems
from opscheck.families import FAMILIES
from opscheck.families.alertmanager import Alertmanager
from opscheck.families.backups import Backup
from opscheck.families.certificate_files import CertificateFiles
from opscheck.families.checklists import ChecklistItem
from opscheck.families.docker import Docker
from opscheck.families.grafana import Grafana
from opscheck.families.hosts import Host
from opscheck.families.http import HttpEndpoint
from opscheck.families.kubernetes import Kubernetes
from opscheck.families.logs import LogSource
from opscheck.families.pgbouncer import Pgbouncer
from opscheck.families.postgres import Postgres
from opscheck.families.prometheus import Prometheus
from opscheck.families.redis import Redis
from opscheck.families.tls import TlsEndpoint


class Defaults(Model):
    timeout: float = Field(default=5, gt=0, le=300, description="seconds per network call")


class Inventory(Model):
    """One environment: everything opscheck checks there. One field per family."""

    environment: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)
    hosts: list[Host] = Field(default_factory=list)
    http: list[HttpEndpoint] = Field(default_factory=list)
    tls: list[TlsEndpoint] = Field(default_factory=list)
    certificate_files: list[CertificateFiles] = Field(default_factory=list)
    postgres: list[Postgres] = Field(default_factory=list)
    pgbouncer: list[Pgbouncer] = Field(default_factory=list)
    redis: list[Redis] = Field(default_factory=list)
    docker: list[Docker] = Field(default_factory=list)
    kubernetes: list[Kubernetes] = Field(default_factory=list)
    logs: list[LogSource] = Field(default_factory=list)
    prometheus: list[Prometheus] = Field(default_factory=list)
    alertmanager: list[Alertmanager] = Field(default_factory=list)
    grafana: list[Grafana] = Field(default_factory=list)
    backups: list[Backup] = Field(default_factory=list)
    checklists: list[ChecklistItem] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self):
        for section in sections():
            seen: set[str] = set()
            for target in getattr(self, section):
                if target.name in seen:
                    raise ValueError(f"{section}: duplicate target name {target.name!r}")
                seen.add(target.name)
        for pg in self.postgres:
            names = [a.name for a in pg.assertions]
            if len(names) != len(set(names)):
                raise ValueError(f"postgres {pg.name!r}: duplicate assertion names")
        self._references_exist()
        return self

    def _references_exist(self) -> None:
        """Targets that name other targets (a log's host, a backup's host, ...) name real ones."""

        def names(section: str) -> set[str]:
            return {t.name for t in getattr(self, section)}

        references = [
            *((f"backups {b.name!r}: host", b.host, "hosts") for b in self.backups if b.host),
            *((f"logs {s.name!r}: host", s.host, "hosts") for s in self.logs if s.host),
            *((f"logs {s.name!r}: docker", s.docker, "docker") for s in self.logs if s.docker),
            *((f"logs {s.name!r}: kubernetes", s.kubernetes, "kubernetes") for s in self.logs if s.kubernetes),
            *(
                (f"tls {t.name!r}: serves_certificate_file", t.serves_certificate_file, "certificate_files")
                for t in self.tls
                if t.serves_certificate_file
            ),
        ]
        for where, name, section in references:
            if name not in names(section):
                raise ValueError(f"{where}: {name!r} is not a target of the {section} section")

    def timeout(self, target: Target) -> float:
        return target.timeout or self.defaults.timeout

    def targets(self, stem: str) -> list[Target]:
        """The targets of one family (its section)."""
        return getattr(self, stem)


def sections() -> list[str]:
    """The inventory's target lists, one per family, in the registry's order."""
    return list(FAMILIES)


ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def path_for_env(env: str, inventories: Path | None = None) -> Path:
    """inventories/<env>.yml under `inventories` (default: ./inventories)."""
    return (inventories or Path("inventories")) / f"{env}.yml"


def load(path: str | Path) -> Inventory:
    """Read, expand and validate an inventory file; raise ConfigError listing every problem."""
    document = read_yaml(Path(path), "inventory")
    if not isinstance(document.data, dict):
        raise ConfigError([f"{document.shown}:1: the top level must be a mapping (environment: ..., hosts: ...)"])
    problems: list[str] = []
    unset: set[tuple] = set()
    data = _expand(document.data, (), document, problems, unset)
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        problems += validation_problems(document, exc.errors(include_input=False), skip=unset)
    if problems:
        raise ConfigError(problems)
    _register_secrets(inventory)
    return inventory


def _expand(value, path: tuple, document: YamlDocument, problems: list, unset: set):
    """Replace ${VAR} and ${VAR:-default} in every string from the environment."""
    if isinstance(value, dict):
        return {k: _expand(v, path + (k,), document, problems, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path + (i,), document, problems, unset) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(document.problem(path, f"environment variable {name} is not set"))
        unset.add(path)
        return ""

    return ENV_VAR.sub(substitute, value)


def _register_secrets(inventory: Inventory) -> None:
    for section in sections():
        for target in inventory.targets(section):
            for secret in target.secrets():
                redact.register(secret)
