"""docs/drills.md, written from the drill definitions (`python -m replicas --drills-doc`).

tests/test_replica_docs.py fails when the file and the definitions disagree; the drill
self-tests (tests/test_drills_<system>.py) prove each drill trips exactly what it lists.
"""

from __future__ import annotations

import inspect
import sys

from replicas import SYSTEMS, replica_class

HEAD = """# Fault drills

Each "common issue" / "problem" section of the five runbooks in ../shared/seeds is a fault
injected into its system's replica (`replicas/`, made of real parts: see the README's
"See it work in two minutes"). A drill's run is `pytest -m daily` on the system's seed
inventory; **the checks listed fail, and every other check of the run passes**. The self-tests
`tests/test_drills_<system>.py` start each replica once, inject the drills group by group
(the drills of a group touch different targets and run together), assert exactly that, and
reset the fault before the next group. Check ids with `*` stand for a random port.

See one drill yourself (as root, once `.ci/run` has installed the packages):

```sh
.venv/bin/python -m replicas agentauri --fault notify-trigger-disabled
.venv/bin/python -m replicas --list          # every system's drills
```

This file is generated: `.venv/bin/python -m replicas --drills-doc > docs/drills.md`
(tests/test_replica_docs.py fails when it is stale).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def drills_markdown() -> str:
    parts = [HEAD]
    total = 0
    for name in sorted(SYSTEMS):
        cls = replica_class(name)
        total += len(cls.drills)
        doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
        parts.append(f"\n## {name}: {cls.title}\n")
        parts.append(f"Runbook `{cls.runbook}`, seed inventory `inventories/{name}.yml`.\n")
        parts += ["\n" + paragraph.replace("\n", " ").strip() + "\n" for paragraph in doc.split("\n\n")]
        if cls.adapted:
            parts.append(
                f"\nThe replica runs an adapted copy of the seed: {len(cls.adapted)} field(s) that no "
                "${VARIABLE} reaches are set to the stand-ins (every other value comes from the seed "
                "and its variables):\n\n"
            )
            parts += [f"- `{path}`: {why}\n" for path, why in cls.adapted.items()]
        else:
            parts.append("\nThe replica runs the seed inventory itself; its variables point at the stand-ins.\n")
        parts.append("\n| drill | runbook section | fault injected | checks that fail |\n|---|---|---|---|\n")
        for d in cls.drills:
            checks = "<br>".join(f"`{c}`" for c in d.fails)
            parts.append(f"| `{d.name}` | {_cell(d.section)} | {_cell(d.fault)} | {checks} |\n")
    parts.append(f"\n{total} drills on {len(SYSTEMS)} systems.\n")
    return "".join(parts)
