"""The inventory: one YAML file per environment that says which targets exist.

Checks are parametrized over it, so adding a service is an edit to YAML, not to Python.
Loading is strict: bad YAML, unknown keys, wrong types and unset ${VARS} all stop the
run with a message naming file, line and field, and never echo a value (it may be a
secret). The file has one section per family (opscheck.families.FAMILIES), each a list
of that family's targets.
"""

import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr, TypeAdapter, ValidationError, field_validator

from opscheck.core import redact
from opscheck.core.errors import ConfigError
from opscheck.core.model import Model, Target
from opscheck.core.yamlfile import YamlDocument, booleans_as_numbers, read_yaml, validation_problems
from opscheck.families import FAMILIES, family

if TYPE_CHECKING:  # at run time a family's module is imported only when its section is present
    from opscheck.families.alertmanager import Alertmanager
    from opscheck.families.aws import Aws
    from opscheck.families.backups import Backup
    from opscheck.families.certificate_files import CertificateFiles
    from opscheck.families.checklists import ChecklistItem
    from opscheck.families.cloudflare import Cloudflare
    from opscheck.families.commands import CommandTarget
    from opscheck.families.comparisons import Comparison
    from opscheck.families.config_files import ConfigFile
    from opscheck.families.docker import Docker
    from opscheck.families.grafana import Grafana
    from opscheck.families.grpc import GrpcHealth
    from opscheck.families.hosts import SECTION as HostEntries
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


class InventoryHead(Model):
    """What an inventory says besides its sections."""

    environment: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)

    @field_validator("environment")
    @classmethod
    def _not_a_page(cls, value: str) -> str:
        if value.lower().endswith((".html", ".json", ".lock", ".tmp")):  # reports/<env>/ beside reports/index.html
            raise ValueError("cannot end in .html, .json, .lock or .tmp: it names a folder of reports/")
        return value


class Inventory(InventoryHead):
    """One environment: everything opscheck checks there. One field per family."""

    # A section's type is its family's SECTION. load() validates only the sections a file
    # has, each with its family's model, so a run imports the families it checks and no
    # others; complete() builds the whole model (the JSON Schema, `opscheck schema`).

    hosts: "HostEntries" = Field(
        default_factory=list, description="hosts, and fleets read from Ansible inventories (ansible_inventory)"
    )
    http: "list[HttpEndpoint]" = Field(default_factory=list)
    grpc: "list[GrpcHealth]" = Field(default_factory=list)
    tls: "list[TlsEndpoint]" = Field(default_factory=list)
    certificate_files: "list[CertificateFiles]" = Field(default_factory=list)
    postgres: "list[Postgres]" = Field(default_factory=list)
    pgbouncer: "list[Pgbouncer]" = Field(default_factory=list)
    redis: "list[Redis]" = Field(default_factory=list)
    docker: "list[Docker]" = Field(default_factory=list)
    kubernetes: "list[Kubernetes]" = Field(default_factory=list)
    logs: "list[LogSource]" = Field(default_factory=list)
    commands: "list[CommandTarget]" = Field(default_factory=list)
    prometheus: "list[Prometheus]" = Field(default_factory=list)
    alertmanager: "list[Alertmanager]" = Field(default_factory=list)
    grafana: "list[Grafana]" = Field(default_factory=list)
    backups: "list[Backup]" = Field(default_factory=list)
    checklists: "list[ChecklistItem]" = Field(default_factory=list)
    config_files: "list[ConfigFile]" = Field(default_factory=list)
    comparisons: "list[Comparison]" = Field(default_factory=list)
    aws: "list[Aws]" = Field(default_factory=list)
    cloudflare: "list[Cloudflare]" = Field(default_factory=list)

    def check_references(self) -> None:
        """Unique names, and targets that name other targets (a log's host, a backup's
        host, depends_on ...) name real ones: ValueError otherwise."""
        for section in sections():
            seen: set[str] = set()
            for target in self.targets(section):
                if target.name in seen:
                    raise ValueError(f"{section}: duplicate target name {target.name!r}")
                seen.add(target.name)
        for pg in self.postgres:
            names = [a.name for a in pg.assertions]
            if len(names) != len(set(names)):
                raise ValueError(f"postgres {pg.name!r}: duplicate assertion names")
        self._references_exist()

    def _references_exist(self) -> None:
        def names(section: str) -> set[str]:
            return {t.name for t in self.targets(section)}

        references = [
            *((f"backups {b.name!r}: host", b.host, "hosts") for b in self.backups if b.host),
            *((f"logs {s.name!r}: host", s.host, "hosts") for s in self.logs if s.host),
            *((f"logs {s.name!r}: docker", s.docker, "docker") for s in self.logs if s.docker),
            *((f"config_files {f.name!r}: host", f.host, "hosts") for f in self.config_files if f.host),
            *(
                (f"comparisons {c.name!r}: {side.family}", side.target, side.family)
                for c in self.comparisons
                for side in (c.left, c.right)
            ),
            *((f"commands {c.name!r}: host", c.host, "hosts") for c in self.commands if c.host),
            *((f"commands {c.name!r}: docker", c.docker, "docker") for c in self.commands if c.docker),
            *((f"logs {s.name!r}: kubernetes", s.kubernetes, "kubernetes") for s in self.logs if s.kubernetes),
            *(
                (f"tls {t.name!r}: serves_certificate_file", t.serves_certificate_file, "certificate_files")
                for t in self.tls
                if t.serves_certificate_file
            ),
        ]
        for section in sections():
            for target in getattr(self, section):
                for ref in target.depends_on:
                    needed, _, name = ref.partition(":")
                    where = f"{section} {target.name!r}: depends_on"
                    if needed not in FAMILIES:
                        raise ValueError(f"{where}: {ref!r} names no section of the inventory")
                    if (needed, name) == (section, target.name):
                        raise ValueError(f"{where}: {ref!r} is the target itself")
                    references.append((where, name, needed))
        for where, name, section in references:
            if name not in names(section):
                raise ValueError(f"{where}: {name!r} is not a target of the {section} section")

    def timeout(self, target: Target) -> float:
        return target.timeout or self.defaults.timeout

    def targets(self, stem: str) -> list[Target]:
        """The targets of one family (its section)."""
        return getattr(self, stem)

    def families(self) -> list[str]:
        """The families this inventory has targets for, in the registry's order."""
        return [stem for stem in FAMILIES if getattr(self, stem)]


def sections() -> list[str]:
    """The inventory's target lists, one per family, in the registry's order."""
    return list(FAMILIES)


@cache
def section_type(stem: str) -> TypeAdapter:
    """The validator of one family's section (built on first use: only present sections)."""
    return TypeAdapter(family(stem).SECTION)


@cache
def complete() -> type[Inventory]:
    """The Inventory model with every family's section in it (imports every family)."""
    types = {name: value for stem in FAMILIES for name, value in vars(family(stem)).items() if isinstance(value, type)}
    types["HostEntries"] = family("hosts").SECTION
    Inventory.model_rebuild(_types_namespace=types)
    return Inventory


def empty(environment: str) -> Inventory:
    """An inventory with no targets."""
    return Inventory.model_construct(environment=environment)


ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
REFERENCE_START = re.compile(r"\$\{([A-Za-z0-9_]{0,64})")
# the names of variables that hold a secret, whatever field they are used in
SECRET_NAME = re.compile(
    r"PASS|PWD|(^|_)PW(_|$)|SECRET|TOKEN|(^|_)(API_?)?KEY(S?)(_|$)|APIKEY|CREDENTIAL|(^|_)AUTH|COOKIE|SESSION|PRIVATE",
    re.IGNORECASE,
)
SWITCHES = frozenset(["true", "false", "yes", "no", "on", "off", "none", "null"])
NOT_SECRETS = frozenset(["PWD", "OLDPWD"])  # the shell's working directories


def _may_be_secret(value: str) -> bool:
    """A value a secret-named variable holds that could be one: not a switch (${USE_AUTH}=true),
    a short number (${SESSION_TIMEOUT}=3600) or a path (${CLIENT_KEY}=/srv/tls/client.key), which
    masked everywhere would hide what a message is about."""
    text = value.strip()
    short_number = text.replace(".", "", 1).isdigit() and len(text) < 8  # a long one may be a PIN
    return text.lower() not in SWITCHES and not short_number and not text.startswith(("/", "~/"))


def path_for_env(env: str, inventories: Path | None = None) -> Path:
    """inventories/<env>.yml under `inventories` (default: ./inventories)."""
    return (inventories or Path("inventories")) / f"{env}.yml"


def load(path: str | Path, here: bool = True) -> Inventory:
    """Read, expand and validate an inventory file; raise ConfigError listing every problem.

    `here`: the inventory is loaded where its checks run, so the local files it names (CA,
    client certificates) must exist; `opscheck validate` checks only their syntax unless
    `--here` is given."""
    document = read_yaml(Path(path), "inventory")
    if not isinstance(document.data, dict):
        raise ConfigError([f"{document.shown}:1: the top level must be a mapping (environment: ..., hosts: ...)"])
    expansion = Expansion(document)
    data = _expand(document.data, (), expansion)
    problems, unset = expansion.problems, expansion.unset
    context = {"base": Path(path).parent, "here": here}
    errors: list[Any] = []
    fields: dict[str, Any] = {}
    try:
        raw_head = {k: v for k, v in data.items() if k not in FAMILIES}
        head = InventoryHead.model_validate(raw_head)
    except ValidationError as exc:
        errors += exc.errors(include_input=False)
    else:
        fields.update((name, getattr(head, name)) for name in head.model_fields_set)
        problems += [
            document.problem(loc, "a boolean is not a number")
            for loc in booleans_as_numbers(raw_head, head.model_dump(by_alias=True))
        ]
    for stem in (s for s in FAMILIES if s in data):
        adapter = section_type(stem)
        try:
            fields[stem] = adapter.validate_python(data[stem], context=context)
        except ValidationError as exc:
            errors += [{**e, "loc": (stem, *e["loc"])} for e in exc.errors(include_input=False)]
        else:
            made = adapter.dump_python(fields[stem], by_alias=True)
            problems += [
                document.problem((stem, *loc), "a boolean is not a number")
                for loc in booleans_as_numbers(data[stem], made)
            ]
    inventory = Inventory.model_construct(**fields)
    if not errors:
        try:
            inventory.check_references()
        except ValueError as exc:
            errors.append({"loc": (), "msg": f"Value error, {exc}"})
    problems += validation_problems(document, _untagged(errors), skip=unset)
    if problems:
        raise ConfigError(problems)
    _register_secrets(inventory)
    for value in expansion.secrets:
        redact.register(value)
    return inventory


def _untagged(errors: list) -> list:
    """Errors of a `hosts:` entry carry its union tag (hosts.0.host.field): drop it, so the
    location is the file's path to the field and its line is found."""
    for error in errors:
        loc = tuple(error["loc"])
        if len(loc) > 2 and loc[0] == "hosts" and loc[2] in ("host", "fleet"):
            error["loc"] = loc[:2] + loc[3:]
    return errors


@dataclass
class Expansion:
    """What expanding an inventory's ${VAR}s found: its problems, the fields left unset, the
    values of variables named like secrets, and how many characters the variables added."""

    document: YamlDocument
    problems: list[str] = field(default_factory=list)
    unset: set[tuple] = field(default_factory=set)
    secrets: list[str] = field(default_factory=list)
    added: int = 0


MAX_EXPANDED = 8 * 1024 * 1024  # characters ${VAR}s may add: 20,000 references to a 100 KB value is a bomb


def _expand(value, path: tuple, expansion: Expansion):
    """Replace ${VAR} and ${VAR:-default} in every string from the environment; the value of
    a variable named like a secret (`${REDIS_PW}`, `${API_TOKEN}`) is kept as a secret, wherever
    it is used: an argv, a request body or a URL path are not fields known to hold one."""
    if isinstance(value, dict):
        return {k: _expand(v, path + (k,), expansion) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path + (i,), expansion) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def refuse(message: str) -> str:
        expansion.problems.append(expansion.document.problem(path, message))
        expansion.unset.add(path)
        return ""

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if default is not None and "${" in default:
            return refuse(f"${{{name}:-...}}: a default cannot hold another ${{...}} reference")
        found = os.environ.get(name, default)
        if found is None:
            return refuse(f"environment variable {name} is not set")
        if expansion.added > MAX_EXPANDED:  # said once, at the first reference past the limit
            expansion.unset.add(path)
            return ""
        expansion.added += len(found)
        if expansion.added > MAX_EXPANDED:
            return refuse(f"${{{name}}}: the variables expand the inventory past {MAX_EXPANDED // 1024 // 1024} MB")
        if SECRET_NAME.search(name) and name not in NOT_SECRETS and _may_be_secret(found):
            expansion.secrets.append(found)
        return found

    result, pos = [], 0
    for start in REFERENCE_START.finditer(value):
        if start.start() < pos:
            continue
        match = ENV_VAR.match(value, start.start())
        if match is None:
            return refuse(
                f"malformed reference ${{{start.group(1) or '...'}: write ${{NAME}} or ${{NAME:-default}} "
                "(NAME: letters, digits and _, not starting with a digit; closed by })"
            )
        result.append(value[pos : match.start()])
        result.append(substitute(match))
        pos = match.end()
    result.append(value[pos:])
    return "".join(result)


def _register_secrets(inventory: Inventory) -> None:
    """Every target's secrets(), and the credentials of every URL-bearing or secret field
    anywhere in it (a redirect origin, an API-key URL, an S3 endpoint ...): a field added
    later is covered without anyone remembering to list it."""
    for section in sections():
        for target in inventory.targets(section):
            for secret in target.secrets():
                redact.register(secret)
            for value in _strings(target):
                if isinstance(value, SecretStr):
                    redact.register(value.get_secret_value())
                elif "://" in value:
                    redact.register(value)


def _strings(value) -> list:
    """Every str and SecretStr inside a model (nested models, lists and dicts)."""
    if isinstance(value, str | SecretStr):
        return [value]
    if isinstance(value, BaseModel):
        return [s for name in type(value).model_fields for s in _strings(getattr(value, name))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []
