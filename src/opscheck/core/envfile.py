"""`.env` files: the variables an inventory reads, one `NAME=value` a line.

The format docker compose's env_file and a shell's `set -a; . FILE` both read: comments
start with `#`, a value may be wrapped in single or double quotes (needed for the shell
when it holds `&`, spaces or parentheses), no expansion inside.
"""

import re
from pathlib import Path

from opscheck.core.errors import ConfigError
from opscheck.core.yamlfile import shown_path

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME -> value, in file order; ConfigError naming file:line for a malformed line."""
    shown = shown_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{shown}: cannot read the env file: {type(exc).__name__}"]) from None
    found: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        name = name.removeprefix("export ").strip()
        if not sep or not NAME.match(name):
            problems.append(f"{shown}:{number}: expected NAME=value (NAME: letters, digits and _)")
            continue
        if name in found:
            problems.append(f"{shown}:{number}: {name} is set twice")
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name] = value
    if problems:
        raise ConfigError(problems)
    return found


def comments_of(path: Path) -> dict[str, str]:
    """NAME -> the comment right above it (what to put in it); one comment may describe the
    lines that follow it up to a blank line (a host and its port)."""
    found: dict[str, str] = {}
    above: list[str] = []
    after_value = False
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above = [] if after_value else above
            above.append(stripped.lstrip("#").strip())
            after_value = False
        elif not stripped:
            above, after_value = [], False
        else:
            name = stripped.partition("=")[0].removeprefix("export ").strip()
            found[name] = " ".join(a for a in above if a)
            after_value = True
    return found
