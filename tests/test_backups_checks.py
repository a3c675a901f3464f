"""Backups family against real files on this host (local://) with controlled ages and sizes:
fresh, stale, too small, missing, checksum right / wrong / absent, and a host that cannot
be reached (an ssh:// spec to a closed port)."""

import hashlib
import os
import time
from pathlib import Path

import pytest

from tests.conftest import run_suite
from tests.servers import closed_port

HOUR = 3600


def _file(path, size: int, age_hours: float, data: bytes | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else os.urandom(size))
    when = time.time() - age_hours * HOUR
    os.utime(path, (when, when))
    return str(path)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("backup-files")
    # fresh: an old dump and a newer one; the newer one is judged
    _file(root / "fresh" / "db-1.dump", 50_000, 50)
    good = _file(root / "fresh" / "db-2.dump", 20_000, 3)
    digest = hashlib.sha256(Path(good).read_bytes()).hexdigest()
    (root / "fresh" / "db-2.dump.sha256").write_text(f"{digest}  db-2.dump\n")
    _file(root / "stale" / "db.dump", 20_000, 30)
    _file(root / "weekly" / "db.dump", 20_000, 30)
    _file(root / "small" / "db.dump", 100, 1)
    (root / "empty").mkdir()
    bad = _file(root / "corrupt" / "db.dump", 20_000, 1)
    (root / "corrupt" / "db.dump.sha256").write_text("0" * 64 + "  db.dump\n")
    _file(root / "nosum" / "db.dump", 20_000, 1)
    _file(root / "nested" / "2026-11-25" / "db.dump", 20_000, 2)
    assert bad
    inventory = {
        "environment": "selftest-backups",
        "hosts": [{"name": "db-host", "spec": "local://"}],
        "backups": [
            {"name": "fresh", "host": "db-host", "path": f"{root}/fresh/*.dump", "checksum": "sha256"},
            {"name": "stale", "path": f"{root}/stale/*.dump"},
            {"name": "weekly", "path": f"{root}/weekly/*.dump", "period": "weekly"},
            {"name": "small", "path": f"{root}/small/*.dump", "min_size_bytes": 1024},
            {"name": "missing", "path": f"{root}/empty/*.dump"},
            {"name": "corrupt", "path": f"{root}/corrupt/*.dump", "checksum": "sha256"},
            {"name": "nosum", "path": f"{root}/nosum/*.dump", "checksum": "sha256"},
            {"name": "nested", "path": f"{root}/nested/*/db.dump"},
            {
                "name": "unreachable",
                "spec": f"ssh://nobody@127.0.0.1:{closed_port()}",
                "path": "/backups/*.dump",
                "timeout": 2,
            },
        ],
    }
    return run_suite(inventory, tmp_path_factory.mktemp("backups"), "-m", "backup")


def test_fresh_backup_passes(result):
    result.assert_passed(
        "test_backup_recent[fresh]",
        "test_backup_size_above_minimum[fresh]",
        "test_backup_checksum_matches[fresh]",
        "test_backup_recent[weekly]",
        "test_backup_recent[nested]",
    )


def test_stale_backup_fails(result):
    result.assert_failed("test_backup_recent[stale]", "/stale/db.dump is 30.0 h old", "> daily limit 26.0 h")


def test_small_backup_fails(result):
    result.assert_failed("test_backup_size_above_minimum[small]", "is 100 bytes <= minimum 1,024 bytes")
    result.assert_passed("test_backup_recent[small]")


def test_missing_backup_fails(result):
    result.assert_failed("test_backup_recent[missing]", "no backup matches", "/empty/*.dump")


def test_checksum_mismatch_and_absence_fail(result):
    result.assert_failed("test_backup_checksum_matches[corrupt]", "db.dump.sha256 says 0000")
    result.assert_failed("test_backup_checksum_matches[nosum]", "db.dump.sha256 is missing")


def test_unreachable_host_fails_then_blocks(result):
    result.assert_failed("test_backup_recent[unreachable]", "cannot reach the host")
    result.assert_failed("test_backup_size_above_minimum[unreachable]", "blocked:")
