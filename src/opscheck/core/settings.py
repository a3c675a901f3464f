"""Configuration values judged without being shown: a container's environment variable, a
key of an env file or a config file on a host (families docker and config_files).

A configuration value may be a secret (DATABASE_URL carries a password), so a verdict names
the key, the condition and whether it held, never the value. Every value read is also
registered with the redactor, in case anything else prints it, except numbers and booleans:
they are never credentials, and masking every `true` or `50` would garble the reports.
"""

import re
from typing import Any

import pytest
from pydantic import Field, field_validator, model_validator

from opscheck.core import redact
from opscheck.core.checking import holds
from opscheck.core.markers import DOMAINS
from opscheck.core.model import Condition, InventoryCheck, check_marks

ORDERING = {"<", "<=", ">", ">="}
PLAIN = re.compile(r"^(?:[-+]?\d+(?:\.\d+)?|true|false|yes|no|on|off)$", re.IGNORECASE)


class Setting(InventoryCheck, Condition):
    """A condition on one configuration key; its value is never shown."""

    key: str = Field(min_length=1, max_length=200, description="variable name, or JMESPath in a structured file")
    name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=100, description="check id (default: key)"
    )
    domains: list[str] = Field(default_factory=list, description="extra domain markers, e.g. [security]")

    @field_validator("domains")
    @classmethod
    def _known_domains(cls, value: list[str]) -> list[str]:
        unknown = [d for d in value if d not in DOMAINS]
        if unknown:
            raise ValueError(f"unknown domain {unknown[0]!r} (one of {', '.join(DOMAINS)})")
        return value

    @model_validator(mode="after")
    def _valid_regex(self):
        if self.op == "matches":
            try:
                re.compile(str(self.value))
            except re.error as exc:
                raise ValueError(f"value: invalid regular expression: {exc}") from None
        return self

    @property
    def id(self) -> str:
        return self.name or self.key


def domain_marks(domains: list[str]) -> list:
    """Domain markers an inventory entry adds to its check."""
    return [getattr(pytest.mark, d) for d in domains]


def marks(setting: Setting) -> list:
    """The setting's severity, schedule and hint, and its extra domain markers."""
    return check_marks(setting) + domain_marks(setting.domains)


BOOLEAN_WORDS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def verdict(setting: Setting, found: bool, actual: Any, where: str) -> str | None:
    """None when the condition holds, else what failed, without the value."""
    expected = setting.value
    if isinstance(expected, bool) and isinstance(actual, str):  # ENABLE_HSTS=true against `value: true`
        actual = BOOLEAN_WORDS.get(actual.strip().lower(), actual)
    if setting.op == "exists":
        wanted = True if expected is None else bool(expected)
        if found == wanted:
            return None
        return f"{setting.key} is {'not ' if wanted else ''}set {where}"
    if not found:
        return f"{setting.key} is not set {where}"
    if holds(actual, setting.op, expected):
        return None
    if setting.op in ORDERING and isinstance(expected, int | float) and not _is_number(actual):
        return f"{setting.key} {where} is not a number (value not shown)"
    return f"{setting.key} {where}: {setting.op} {expected!r} does not hold (value not shown)"


def keep_secret(value: Any) -> None:
    """Register a configuration value with the redactor (numbers and booleans excepted)."""
    if isinstance(value, str) and value and not PLAIN.match(value.strip()):
        redact.register(value)


def _is_number(value: Any) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True
