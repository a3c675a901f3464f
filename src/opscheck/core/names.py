"""Names users type on the command line: environments (inventories/NAME.yml)."""

import re

ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def env_name(text: str) -> str:
    """An environment name as --env takes it: a file name under inventories/, never a path."""
    if not text:
        raise ValueError("empty: give an environment name (inventories/NAME.yml)")
    if not ENV_NAME.match(text) or ".." in text:
        raise ValueError(
            "an environment name is letters, digits, '_', '.', '-' (no path: use --inventory PATH for a file elsewhere)"
        )
    return text
