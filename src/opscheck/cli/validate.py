"""`opscheck validate PATH...`: check inventory files without running anything."""

import sys

from opscheck.cli.common import USAGE_ERROR
from opscheck.core.errors import ConfigError
from opscheck.inventory import load, sections


def add_command(commands) -> None:
    cmd = commands.add_parser("validate", help="validate inventory files (exit 4 if invalid)")
    cmd.add_argument("paths", nargs="+", metavar="PATH")
    cmd.set_defaults(func=run)


def run(args) -> int:
    status = 0
    for path in args.paths:
        try:
            inventory = load(path)
        except ConfigError as exc:
            print(f"{path}: invalid ({len(exc.problems)} problem(s))", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            status = USAGE_ERROR
            continue
        counts = ", ".join(f"{len(inventory.targets(s))} {s}" for s in sections() if inventory.targets(s))
        print(f"{path}: valid (environment {inventory.environment}: {counts})")
    return status
