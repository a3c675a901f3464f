"""`opscheck signoff ITEM --by NAME`: record that a human checklist item was done.

The record is appended to `<inventory>.signoffs.yml` beside the inventory (kept in git);
the item must be a manual item of the inventory's checklists section.
"""

import difflib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError

from opscheck.cli.common import USAGE_ERROR, add_inventory_options, inventory_of, non_blank
from opscheck.core.errors import ConfigError
from opscheck.core.options import option_type
from opscheck.families.checklists import (
    FUTURE_SLACK,
    SignOff,
    SignOffFile,
    load_signoffs,
    parse_instant,
    signoffs_path,
)
from opscheck.inventory import Inventory, load


def add_command(commands) -> None:
    cmd = commands.add_parser(
        "signoff",
        help="record a sign-off of a checklist item (appends to <inventory>.signoffs.yml)",
        description="Record that a human checklist item was done (or does not apply, with a reason).",
    )
    cmd.add_argument("item", help="checklist item id, as in the inventory's checklists section")
    cmd.add_argument("--by", required=True, metavar="NAME", type=option_type(non_blank), help="who signs")
    add_inventory_options(cmd)
    cmd.add_argument("--outcome", choices=["done", "not-applicable"], default="done")
    cmd.add_argument("--reason", default="", help="why it does not apply (required with not-applicable)")
    cmd.add_argument("--note", default="")
    cmd.add_argument("--evidence", default="", metavar="URL", help="link to the evidence (ticket, report)")
    cmd.add_argument("--at", default=None, metavar="TIME", help="when it was done (ISO 8601; default now)")
    cmd.set_defaults(func=run)


def run(args) -> int:
    path = inventory_of(args)
    try:
        inventory = load(path)
        record = record_signoff(
            inventory,
            path,
            args.item,
            by=args.by,
            outcome=args.outcome,
            reason=args.reason,
            note=args.note,
            evidence=args.evidence,
            at=args.at,
        )
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"opscheck signoff: {problem}", file=sys.stderr)
        return USAGE_ERROR
    print(
        f"recorded: {record.item} {record.outcome} by {record.by} at {record.at.isoformat(timespec='seconds')} "
        f"in {signoffs_path(path)}"
    )
    return 0


def record_signoff(
    inventory: Inventory,
    inventory_path: Path,
    item: str,
    *,
    by: str,
    outcome: Literal["done", "not-applicable"] = "done",
    reason: str = "",
    note: str = "",
    evidence: str = "",
    at: str | None = None,
) -> SignOff:
    """Validate and append one record; ConfigError for an unknown or automated item."""
    items = {i.name: i for i in inventory.checklists}
    if item not in items:
        close = difflib.get_close_matches(item, items, n=3)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else ("" if items else f"; {inventory_path} has no checklists section")
        )
        raise ConfigError([f"{item!r} is not a checklist item of {inventory_path}{hint}"])
    if items[item].automated_by:
        automated = ", ".join(items[item].automated_by)
        raise ConfigError([f"{item!r} is automated by {automated}: its checks decide, a sign-off is not accepted"])
    try:
        when = parse_instant(at) if at else datetime.now(UTC).replace(microsecond=0)
    except ValueError:
        raise ConfigError([f"--at {at!r}: not an ISO 8601 time"]) from None
    if when > datetime.now(UTC) + FUTURE_SLACK:
        raise ConfigError([f"--at {at}: in the future"])
    for flag, value in (("--by", by), ("--reason", reason), ("--note", note), ("--evidence", evidence)):
        try:
            (value or "").encode("utf-8")
        except UnicodeEncodeError:  # a byte the terminal's encoding could not decode: the file must stay UTF-8
            raise ConfigError([f"{flag}: not valid text (bytes that are not UTF-8)"]) from None
    try:
        record = SignOff(item=item, by=by, at=when, outcome=outcome, reason=reason, note=note, evidence=evidence)
    except ValidationError as exc:
        raise ConfigError(
            [f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors(include_input=False)]
        ) from None
    path = signoffs_path(inventory_path)
    before = load_signoffs(path)  # refuses to append to a malformed file
    entry = {k: v for k, v in record.model_dump(mode="json").items() if v != ""}
    existing = path.read_text() if path.exists() else ""
    if not existing.strip():
        existing = "# Sign-offs of human checklist items: written by `opscheck signoff`, kept in git.\nsignoffs:\n"
    elif not existing.endswith("\n"):
        existing += "\n"
    text = existing + yaml.safe_dump([entry], sort_keys=False, allow_unicode=True)
    try:  # appending keeps comments and history readable; verify it parses as intended
        appended = SignOffFile.model_validate(yaml.safe_load(text)).signoffs == [*before, record]
    except (yaml.YAMLError, ValidationError):
        appended = False
    if not appended:  # e.g. `signoffs: []` or another layout: rewrite the whole file
        records = [{k: v for k, v in r.model_dump(mode="json").items() if v != ""} for r in [*before, record]]
        text = yaml.safe_dump({"signoffs": records}, sort_keys=False, allow_unicode=True)
    path.write_text(text)
    return record
