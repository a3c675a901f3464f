"""Backups family: the newest backup is younger than its period, large enough, and intact.

Backups are read on their host through the host transport (local://, ssh://, docker://):
one `find` per backup target, shared by its checks. A restore drill writes, so it is not
a check.
"""

from datetime import UTC, datetime

import pytest

from opscheck.core.checking import expect, fmt

pytestmark = [pytest.mark.backup]


def _age(delta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _newest(backup, backup_files):
    newest = backup_files.newest()
    expect(newest is not None, f"{backup_files.shown}: no backup matches {backup.where}")
    return newest


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The newest backup is older than its period (runbook: 'Verify backup completion status'; "
    "`/backup/latest.sql`). The backup job did not run or failed: look at its cron/CronJob "
    "history and log, the disk it writes to, and the database credentials it uses."
)
def test_backup_recent(backup, backup_files):
    newest = _newest(backup, backup_files)
    age = newest.age(datetime.now(UTC))
    expect(
        age <= backup.max_age(),
        f"{backup_files.shown}: newest backup {newest.path} is {_age(age)} old "
        f"(written {newest.mtime:%Y-%m-%d %H:%M} UTC) > {backup.period} limit {_age(backup.max_age())}",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The newest backup is smaller than the minimum: a dump that stopped early (disk full, "
    "connection lost, wrong database) still leaves a file. Compare with earlier sizes and "
    "look at the backup job's log; `pg_restore --list FILE` shows what a dump holds."
)
def test_backup_size_above_minimum(backup, backup_files):
    newest = _newest(backup, backup_files)
    expect(
        newest.size > backup.min_size_bytes,
        f"{backup_files.shown}: newest backup {newest.path} is {fmt(newest.size)} bytes "
        f"<= minimum {fmt(backup.min_size_bytes)} bytes",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The newest backup does not match its checksum file (or has none): the file was truncated "
    "or changed after it was written, and a restore from it may fail. Take a new backup and "
    "look at the storage it sits on."
)
def test_backup_checksum_matches(backup_checksum, backup_files):
    newest = _newest(backup_checksum, backup_files)
    algorithm = backup_checksum.checksum
    actual, recorded = backup_files.checksum(newest, algorithm)
    expect(recorded is not None, f"{backup_files.shown}: {newest.path}.{algorithm} is missing")
    expect(
        actual.lower() == recorded,
        f"{backup_files.shown}: {algorithm} of {newest.path} is {actual}, but {newest.path}.{algorithm} "
        f"says {recorded}",
    )
