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
import sys

from opscheck.cli import coverage, discover, init, restore_drill, schema, signoff, validate

COMMANDS = (validate, schema, signoff, restore_drill, init, discover, coverage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opscheck", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--inventories-dir",
        default="inventories",
        metavar="DIR",
        help="where --env NAME finds NAME.yml (default ./inventories)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_command(commands)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
