"""Record files kept beside the inventory in version control: sign-offs and waivers.

`inventories/prod.yml` has `inventories/prod.signoffs.yml` and `prod.waivers.yml`. They
are validated like the inventory: a malformed file stops the run naming file, line and field.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from opscheck.core.errors import ConfigError
from opscheck.core.yamlfile import YamlDocument, booleans_as_numbers, read_yaml, validation_problems

M = TypeVar("M", bound=BaseModel)


def beside(inventory_path: str | Path, kind: str, env_var: str) -> Path:
    """`inventories/prod.yml` → `inventories/prod.<kind>.yml` (the environment variable overrides)."""
    if os.environ.get(env_var):
        return Path(os.environ[env_var])
    path = Path(inventory_path)
    path = path if path.name else path.resolve()
    return path.with_name(f"{path.stem}.{kind}.yml")


def load(
    path: Path, model: type[M], what: str, check: Callable[[M, YamlDocument], list[str]] | None = None
) -> M | None:
    """The validated file (None when it does not exist or is empty); ConfigError otherwise.

    `check(loaded, document)` adds problems only the caller can see (an unknown item).
    """
    if not path.exists() and not path.is_symlink():  # a dangling or looping link is read, and refused
        return None
    document = read_yaml(path, what, allow_empty=True)
    if document.data is None:
        return None
    try:
        loaded = model.model_validate(document.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(document, exc.errors(include_input=False))) from None
    problems = [
        document.problem(loc, "a boolean is not a number")
        for loc in booleans_as_numbers(document.data, loaded.model_dump(by_alias=True))
    ]
    problems += check(loaded, document) if check else []
    if problems:
        raise ConfigError(problems)
    return loaded
