"""`opscheck validate PATH...`: check inventory files without running anything.

The sign-off and waiver files beside each inventory (`<inventory>.signoffs.yml`,
`<inventory>.waivers.yml`) are checked with it, as strictly as a run reads them.
"""

import sys
from pathlib import Path

from opscheck.cli.common import USAGE_ERROR
from opscheck.core.errors import ConfigError
from opscheck.families.checklists import load_signoffs, signoffs_path
from opscheck.inventory import load, sections
from opscheck.waivers import load_waivers, waivers_path


def add_command(commands) -> None:
    cmd = commands.add_parser(
        "validate", help="validate inventory files and the sign-off and waiver files beside them (exit 4 if invalid)"
    )
    cmd.add_argument("paths", nargs="+", metavar="PATH")
    cmd.add_argument(
        "--here",
        action="store_true",
        help="this machine runs the checks: the local files the inventory names (CA, client certificates) must exist",
    )
    cmd.set_defaults(func=run)


def run(args) -> int:
    status = 0
    for path in args.paths:
        problems: list[str] = []
        inventory = None
        try:
            inventory = load(path, here=args.here)
        except ConfigError as exc:
            problems += exc.problems
        try:
            load_signoffs(signoffs_path(path), inventory)
        except ConfigError as exc:
            problems += exc.problems
        try:
            load_waivers(waivers_path(path))
        except ConfigError as exc:
            problems += exc.problems
        if problems:
            print(f"{path}: invalid ({len(problems)} problem(s))", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            status = USAGE_ERROR
            continue
        assert inventory is not None
        counts = ", ".join(f"{len(inventory.targets(s))} {s}" for s in sections() if inventory.targets(s))
        extra = [p.name for p in (signoffs_path(path), waivers_path(path)) if Path(p).exists()]
        print(
            f"{path}: valid (environment {inventory.environment}: {counts})"
            + (f"; {', '.join(extra)}" if extra else "")
        )
    return status
