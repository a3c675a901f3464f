"""Backups in S3-compatible storage: moto's server mode on loopback, reached with boto3 over
HTTP exactly like MinIO or AWS. moto cannot backdate an object, so the stale case uses a
limit of a few seconds on a real object age (said so below)."""

import hashlib
import time

import boto3
import pytest

from tests.conftest import run_suite
from tests.servers import closed_port
from tests.servers_aws import MotoServer

KEY_ID, SECRET = "opscheck-key", "opscheck-Secret-S3-8812"


@pytest.fixture(scope="module")
def s3():
    server = MotoServer().__enter__()  # a fresh moto state (it is per process, not per server)
    endpoint = server.url
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    client.create_bucket(Bucket="backups")
    good = b"PGDMP" + bytes(range(256)) * 100
    client.put_object(Bucket="backups", Key="pg/daily/db-2026-11-24.dump", Body=b"old" * 5000)
    client.put_object(Bucket="backups", Key="pg/daily/db-2026-11-25.dump", Body=good)
    client.put_object(
        Bucket="backups",
        Key="pg/daily/db-2026-11-25.dump.sha256",
        Body=f"{hashlib.sha256(good).hexdigest()}  db-2026-11-25.dump\n".encode(),
    )
    client.put_object(Bucket="backups", Key="pg/tiny/db.dump", Body=b"x" * 100)
    client.put_object(Bucket="backups", Key="pg/corrupt/db.dump", Body=good)
    client.put_object(Bucket="backups", Key="pg/corrupt/db.dump.sha256", Body=b"0" * 64)
    yield endpoint
    server.__exit__()


def target(name, endpoint, prefix, **extra):
    s3 = {
        "bucket": "backups",
        "prefix": prefix,
        "pattern": "*.dump",
        "endpoint_url": endpoint,
        "access_key_id": KEY_ID,
        "secret_access_key": "${S3_SECRET}",
        **extra.pop("s3", {}),
    }
    return {"name": name, "s3": s3, **extra}


def test_s3_backups(s3, tmp_path):
    time.sleep(2)  # the objects are now 2 s old: the "stale" target's limit is 1 s
    inventory = {
        "environment": "selftest-s3",
        "backups": [
            target("daily", s3, "pg/daily/", checksum="sha256"),
            target("stale", s3, "pg/daily/", max_age_hours=1 / 3600),
            target("tiny", s3, "pg/tiny/"),
            target("corrupt", s3, "pg/corrupt/", checksum="sha256"),
            target("empty", s3, "pg/none/"),
            target("no-bucket", s3, "pg/", s3={"bucket": "no-such-bucket"}),
            target("down", f"http://127.0.0.1:{closed_port()}", "pg/", timeout=1),
        ],
    }
    result = run_suite(inventory, tmp_path, "-m", "backup", env={"S3_SECRET": SECRET})
    result.assert_passed(
        "test_backup_recent[daily]", "test_backup_size_above_minimum[daily]", "test_backup_checksum_matches[daily]"
    )
    result.assert_failed("test_backup_recent[stale]", "s3://backups/pg/daily/db-2026-11-25.dump", "> daily limit")
    result.assert_failed("test_backup_size_above_minimum[tiny]", "is 100 bytes <= minimum 1,024 bytes")
    result.assert_failed("test_backup_checksum_matches[corrupt]", "db.dump.sha256 says 0000")
    result.assert_failed("test_backup_recent[empty]", "no backup matches s3://backups/pg/none/*.dump")
    result.assert_failed("test_backup_recent[no-bucket]", "NoSuchBucket")
    result.assert_failed("test_backup_recent[down]", "cannot reach the storage")
    result.assert_failed("test_backup_size_above_minimum[down]", "blocked:")
    assert SECRET not in result.output
