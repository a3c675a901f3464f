"""Configuration files on hosts (an env file, JSON, YAML, TOML), read through the host
transport, one command per file, and judged by key without ever showing a value.

An env file is filtered on the host (`grep` for the asked keys only), so the other
variables, secrets among them, never leave it. A structured file is read whole (at most
`max_bytes`) and parsed here; its keys are JMESPath expressions. Every value read is
registered with the redactor (opscheck.core.settings).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from typing import Any, Literal

import jmespath
import yaml
from pydantic import Field, model_validator

from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError, TargetUnreachable, one_line
from opscheck.core.model import Item, Param, Target
from opscheck.core.redact import clip
from opscheck.core.settings import Setting, marks
from opscheck.families.hosts import command_seconds, run_script

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class ConfigFile(Target):
    """A configuration file on a host, and conditions on its keys."""

    host: str | None = Field(default=None, description="name of a hosts target (its transport and timeout)")
    spec: str | None = Field(default=None, description="or a testinfra host spec: local://, ssh://..., docker://...")
    path: str = Field(pattern=r"^/", description="absolute path of the file on that host")
    format: Literal["env", "json", "yaml", "toml"] = Field(
        default="env",
        description="env: KEY=VALUE lines (.env, systemd EnvironmentFile); else parsed, keys are JMESPath",
    )
    max_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="bytes read at most")
    settings: list[Setting] = Field(min_length=1, description="conditions on keys; values are never shown")

    def secrets(self) -> list[str]:
        return [self.spec] if self.spec else []  # testinfra accepts ssh://user:password@host

    @model_validator(mode="after")
    def _keys_fit_the_format(self):
        if (self.host is None) == (self.spec is None):
            raise ValueError("give host (a hosts target) or spec (local://, ssh://..., docker://...)")
        ids = [s.id for s in self.settings]
        if len(ids) != len(set(ids)):
            raise ValueError("settings: two entries with one name (give `name` to tell them apart)")
        for setting in self.settings:
            if self.format == "env" and not ENV_KEY.match(setting.key):
                raise ValueError(f"settings: {setting.key!r} is not an env variable name")
            if self.format != "env":
                try:
                    jmespath.compile(setting.key)
                except jmespath.exceptions.JMESPathError:
                    raise ValueError(f"settings: {setting.key!r} is not a JMESPath expression") from None
        return self

    @property
    def shown(self) -> str:
        return f'config file "{self.name}" ({self.host or self.spec}:{self.path})'


READ = """f={path}
[ -e "$f" ] || {{ echo "@@missing"; exit 0; }}
[ -r "$f" ] || {{ echo "@@unreadable"; exit 0; }}
echo "@@found"
{read}
"""


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines as docker compose and systemd read them: `export ` allowed, quotes
    removed, a ` #` comment after an unquoted value dropped; the last definition wins."""
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0]
        found[name.strip()] = value
    return found


class ConfigFileReader(TargetReader):
    """Reads one file through its host, once per run."""

    def __init__(self, target: ConfigFile, host: Any, timeout: float):
        super().__init__()
        self.target, self.timeout = target, timeout
        self.spec = target.spec or (host.spec if host is not None else None)
        self.via = f"host {host.name}" if host is not None else target.spec

    def value(self, key: str) -> tuple[bool, Any]:
        """(set?, value) of one key: text in an env file, the parsed value in a structured one."""
        values = self.once("values", self._read)
        if self.target.format == "env":
            return (key in values), values.get(key)
        found = jmespath.search(key, values)
        return found is not None, found

    def _read(self) -> Any:
        target = self.target
        if self.spec is None:
            raise OpscheckError(f"{target.shown}: no hosts target named {target.host!r} in the inventory")
        if target.format == "env":  # only the asked keys leave the host
            keys = "|".join(re.escape(s.key) for s in target.settings)
            pattern = shlex.quote(f"^[[:space:]]*(export[[:space:]]+)?({keys})[[:space:]]*=")
            read = f'grep -E {pattern} "$f" | head -c {target.max_bytes}; true'
        else:
            read = f'head -c {target.max_bytes} "$f"'
        script = READ.format(path=shlex.quote(target.path), read=read)
        try:
            result = run_script(self.spec, script, command_seconds(self.timeout))
        except Exception as exc:  # noqa: BLE001 - any transport error: the host cannot be read
            raise TargetUnreachable(f"{target.shown}: cannot read through {self.via}: {one_line(exc)}") from None
        head, _, body = result.stdout.partition("\n")
        if head == "@@missing":
            raise OpscheckError(f"{target.shown}: the file does not exist")
        if head == "@@unreadable":
            raise OpscheckError(f"{target.shown}: the file is not readable by the login of {self.via}")
        if head != "@@found":
            raise OpscheckError(
                f"{target.shown}: reading failed (exit {result.rc}): {clip(result.stderr.strip(), 300)}"
            )
        if target.format == "env":
            return parse_env(body)
        try:
            if target.format == "json":
                return json.loads(body)
            if target.format == "toml":
                return tomllib.loads(body)
            return yaml.safe_load(body)
        except (ValueError, RecursionError, yaml.YAMLError) as exc:
            # the parser's message may quote the file's text: only its kind is shown
            raise OpscheckError(f"{target.shown}: not valid {target.format} ({type(exc).__name__})") from None


SECTION = list[ConfigFile]  # the inventory's `config_files:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """One check per condition on a key."""
    files = inventory.config_files
    return {
        "config_setting": [Param(Item(f, s), f"{f.name}:{s.id}", f, marks(s)) for f in files for s in f.settings],
    }
