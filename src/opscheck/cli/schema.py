"""`opscheck schema`: the JSON Schema of an inventory file, for editors (yaml-language-server)."""

import json

from opscheck.inventory import complete


def schema() -> dict:
    doc = complete().model_json_schema(mode="validation")
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "opscheck inventory"
    return doc


def add_command(commands) -> None:
    cmd = commands.add_parser("schema", help="print the inventory JSON Schema")
    cmd.set_defaults(func=run)


def run(args) -> int:
    print(json.dumps(schema(), indent=2))
    return 0
