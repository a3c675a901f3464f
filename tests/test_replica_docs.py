"""docs/drills.md is the drill definitions' own table, and every replica's declaration holds."""

from replicas import SYSTEMS, replica_class
from replicas.docs import drills_markdown
from tests.conftest import REPO


def test_drills_doc_is_current():
    written = (REPO / "docs" / "drills.md").read_text()
    assert written == drills_markdown(), (
        "docs/drills.md is stale: .venv/bin/python -m replicas --drills-doc > docs/drills.md"
    )


def test_every_system_has_drills_with_sections_and_checks():
    for name in SYSTEMS:
        cls = replica_class(name)
        assert cls.name == name and (REPO / "inventories" / f"{name}.yml").exists()
        assert len(cls.drills) >= 5, f"{name}: {len(cls.drills)} drills"
        names = [d.name for d in cls.drills]
        assert len(names) == len(set(names)), f"{name}: a drill name twice"
        for d in cls.drills:
            assert d.section and d.fault and d.fails, f"{name}:{d.name}"
