"""The `opscheck` command: everything besides running checks (that is `pytest`).

    opscheck validate inventories/prod.yml        # exit 0 when valid, 4 with the problems
    opscheck schema > inventories/inventory.schema.json
    opscheck signoff ITEM --by NAME --env prod [--evidence URL]   # a checklist sign-off
    opscheck restore-drill BACKUP --into postgresql://.../scratch  # restore the newest dump (writes)
    opscheck init DIR                              # a new project: checks, fixtures, inventory
    opscheck discover --docker URL --prometheus URL --host local://   # draft an inventory
    opscheck coverage inventories/ava.yml         # every catalog entry of its runbook, and its checks

Environments (--env NAME) are read from inventories/NAME.yml under the working directory,
or under --inventories-dir.
"""

import argparse
import importlib
import sys

# command -> its module; only the module of the command being run is imported (start-up time:
# `opscheck validate` does not pay for discover's or coverage's imports)
COMMANDS = {
    "validate": "validate",
    "schema": "schema",
    "signoff": "signoff",
    "restore-drill": "restore_drill",
    "init": "init",
    "discover": "discover",
    "coverage": "coverage",
}


def command_modules(argv: list[str]) -> list:
    """The module of the command named in argv, or every one (for --help and usage errors)."""
    named = [COMMANDS[a] for a in argv if a in COMMANDS][:1]
    return [importlib.import_module(f"opscheck.cli.{m}") for m in (named or COMMANDS.values())]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="opscheck", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--inventories-dir",
        default="inventories",
        metavar="DIR",
        help="where --env NAME finds NAME.yml (default ./inventories)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in command_modules(argv):
        command.add_command(commands)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
