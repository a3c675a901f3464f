"""Optional imports: a family's client library is loaded when a check first needs it.

`opscheck validate`, `pytest --collect-only` and a run that selects no PostgreSQL check never
import psycopg. A missing library fails the check that needed it, with the pip line that
installs it, instead of stopping every run at import time.
"""

import contextlib
import importlib
from types import ModuleType
from typing import Any

from opscheck.core.errors import MissingExtra


class OptionalModule:
    """Stands for a module until an attribute is first read; then imports it."""

    def __init__(self, name: str, extra: str):
        self._name = name
        self._extra = extra
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            try:
                self._module = importlib.import_module(self._name)
            except ImportError as exc:
                raise MissingExtra(
                    f"{self._name} is not installed ({exc}): pip install 'opscheck[{self._extra}]'"
                ) from None
        return self._module

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._load(), attribute)
        self.__dict__[attribute] = value  # later reads skip __getattr__
        return value

    def __repr__(self) -> str:
        state = "loaded" if self._module else "not loaded yet"
        return f"<optional module {self._name} ({state}), from opscheck[{self._extra}]>"


def preload(module: Any) -> None:
    """Import an optional module now, if it is installed (if not, its checks say so)."""
    if isinstance(module, OptionalModule):
        with contextlib.suppress(MissingExtra):
            module._load()


def optional(name: str, extra: str) -> Any:
    """A module imported on first use; `extra` names the opscheck extra that installs it."""
    return OptionalModule(name, extra)
