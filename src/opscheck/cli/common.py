"""What the commands share: which inventory a command works on."""

import os
from pathlib import Path

from opscheck.core.names import env_name
from opscheck.core.options import option_type
from opscheck.inventory import path_for_env

USAGE_ERROR = 4


def add_inventory_options(cmd) -> None:
    """--inventory PATH or --env NAME (default $OPSCHECK_ENV or local)."""
    where = cmd.add_mutually_exclusive_group()
    where.add_argument("--inventory", metavar="PATH", help="inventory file")
    where.add_argument(
        "--env",
        metavar="NAME",
        type=option_type(env_name),
        help="<inventories-dir>/NAME.yml (default $OPSCHECK_ENV or local)",
    )


def non_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("blank: give a name")
    return text.strip()


def inventory_of(args) -> Path:
    """The inventory a command works on: --inventory, else <inventories-dir>/<env>.yml."""
    if getattr(args, "inventory", None):
        return Path(args.inventory)
    env = getattr(args, "env", None) or env_name(os.environ.get("OPSCHECK_ENV") or "local")
    return path_for_env(env, Path(args.inventories_dir))
