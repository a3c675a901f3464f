"""Backups: the newest backup file on a host, read through the host transport (testinfra).

A backup target names a file glob on a host (`local://`, `ssh://...`, `docker://...`, or a
host of the inventory's hosts section); one `find` over the host finds the newest match
with its age and size; the checksum check reads the file's `.sha256` (or `.md5`) beside
it. Nothing is written: a restore drill is not a check.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator

from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import Model, Param, Target
from opscheck.core.redact import clip
from opscheck.core.times import PERIODS
from opscheck.core.values import MAX_HOURS, HostSpec, HttpUrl
from opscheck.core.web import proxies_for
from opscheck.families.hosts import run_script

if TYPE_CHECKING:
    import boto3
    from botocore import config as botocore_config
    from botocore import exceptions as botocore_exceptions
else:
    boto3 = optional("boto3", "s3")
    botocore_config = optional("botocore.config", "s3")
    botocore_exceptions = optional("botocore.exceptions", "s3")


class S3Location(Model):
    """Backups as objects in S3 or S3-compatible storage (MinIO, Ceph), read with boto3."""

    bucket: str = Field(min_length=3)
    prefix: str = Field(default="", description="only keys under this prefix, e.g. pg/daily/")
    pattern: str = Field(default="*", description="glob on the key, e.g. *.dump (checksum files never count)")
    endpoint_url: HttpUrl | None = Field(default=None, description="S3-compatible endpoint")
    region: str = "us-east-1"
    access_key_id: SecretStr | None = Field(default=None, description="default: boto3's credential chain")
    secret_access_key: SecretStr | None = Field(default=None, description="use ${VAR}")
    checksum_max_bytes: int = Field(
        default=10 * 1024**3, gt=0, description="the checksum check downloads the object: refuse bigger ones"
    )


class Backup(Target):
    """Backups: the newest file matching `path` on a host, or the newest object under `s3`,
    is fresh, big enough and intact."""

    host: str | None = Field(default=None, description="a host of the inventory's hosts section (its spec)")
    spec: HostSpec = Field(default="local://", description="testinfra host spec when `host` is not given")
    path: str | None = Field(default=None, pattern=r"^/", description="absolute file glob, e.g. /var/backups/*.dump")
    s3: S3Location | None = Field(default=None, description="instead of path: objects in a bucket")
    period: Literal["daily", "weekly", "monthly"] = Field(
        default="daily", description="how often a backup is made: daily 26 h, weekly 8 days, monthly 32 days"
    )
    max_age_hours: float | None = Field(
        default=None, gt=0, le=MAX_HOURS, description="overrides the period's age limit"
    )
    min_size_bytes: int = Field(default=1024, ge=0, description="the newest backup must be larger (default 1 KiB)")
    checksum: Literal["sha256", "md5"] | None = Field(
        default=None, description="the newest backup has a <file>.sha256 (or .md5) that must match"
    )

    @model_validator(mode="after")
    def _glob_in_path(self):
        if (self.path is None) == (self.s3 is None):
            raise ValueError("give either path (a file glob on a host) or s3 (a bucket and prefix)")
        if self.path and ("'" in self.path or "\n" in self.path):
            raise ValueError("path must not contain quotes or newlines")
        return self

    @property
    def where(self) -> str:
        if self.s3 is None:
            return self.path or ""
        return f"s3://{self.s3.bucket}/{self.s3.prefix}{self.s3.pattern}"

    def secrets(self) -> list[str]:
        keys = (self.s3.access_key_id, self.s3.secret_access_key) if self.s3 else ()
        return [k.get_secret_value() for k in keys if k] + [self.spec]  # ssh://user:password@host

    def max_age(self) -> timedelta:
        return timedelta(hours=self.max_age_hours) if self.max_age_hours else PERIODS[self.period]


@dataclass
class BackupFile:
    path: str
    mtime: datetime
    size: int
    matches: int

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - self.mtime


class BackupReader(TargetReader):
    """Finds the newest backup once per run; a host that cannot be reached blocks later checks."""

    def __init__(self, target: Backup, spec: str, timeout: float):
        super().__init__()
        self.target = target
        self.spec = spec
        self.seconds = max(5, round(timeout * 4))

    @property
    def shown(self) -> str:
        return f'backup "{self.target.name}" ({self.spec} {self.target.path})'

    def _run(self, script: str) -> str:
        with self.lock:
            self.unreachable.check()
        try:
            result = run_script(self.spec, script, self.seconds)
        except Exception as exc:  # noqa: BLE001 - any backend error means "cannot read the host"
            inner = exc.args[0] if exc.args else exc  # testinfra raises with the CommandResult
            text = getattr(inner, "stderr", None) or str(exc)
            with self.lock:
                self.unreachable.fail(f"{self.shown}: cannot reach the host: {clip(' '.join(text.split()), 300)}")
        if result.rc != 0:
            raise OpscheckError(f"{self.shown}: exit {result.rc}: {clip(result.stderr.strip(), 300)}")
        return result.stdout

    def newest(self) -> BackupFile | None:
        return self.once("newest", self._find_newest)

    def _find_newest(self) -> BackupFile | None:
        pattern = self.target.path or "/"
        root = _literal_prefix(pattern)
        script = (
            f"[ -d {shlex.quote(root)} ] || {{ echo 'no such directory: {root}' >&2; exit 3; }}; "
            f"find {shlex.quote(root)} -type f -path {shlex.quote(pattern)} "
            "-printf '%T@\\t%s\\t%p\\n' 2>/dev/null | sort -n"
        )
        lines = [line.split("\t", 2) for line in self._run(script).splitlines() if line.count("\t") >= 2]
        found = None
        if lines:
            mtime, size, path = lines[-1]
            found = BackupFile(path, datetime.fromtimestamp(float(mtime), UTC), int(size), len(lines))
        return found

    def checksum(self, file: BackupFile, algorithm: str) -> tuple[str, str | None]:
        """(actual digest of the file, digest recorded in <file>.<algorithm> or None if absent)."""
        quoted = shlex.quote(file.path)
        sidecar = shlex.quote(f"{file.path}.{algorithm}")
        out = self._run(
            f"{algorithm}sum -- {quoted} | cut -d' ' -f1; echo @@; "
            f"if [ -f {sidecar} ]; then head -c 4096 {sidecar}; else echo @@absent; fi"
        )
        actual, _, recorded = out.partition("@@\n")
        if recorded.strip() == "@@absent":
            return actual.strip(), None
        match = re.search(r"\b[0-9a-fA-F]{32,128}\b", recorded)
        return actual.strip(), match.group(0).lower() if match else recorded.strip()[:80]


class S3BackupReader(TargetReader):
    """Finds the newest object under a prefix once per run (one paginated listing), with boto3.

    Every call has its own connect/read timeout and no retries; an unreachable endpoint or a
    credential error is remembered, so later checks fail at once.
    """

    CHECKSUM_SUFFIXES = (".sha256", ".md5")

    def __init__(self, target: Backup, timeout: float):
        super().__init__()
        self.target = target
        assert target.s3 is not None, "an S3 reader needs an s3 location"
        self.s3 = target.s3
        self.timeout = timeout
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The S3 client, made on first use (boto3 is imported then)."""
        with self.lock:
            if self._client is None:
                secret, key_id = self.s3.secret_access_key, self.s3.access_key_id
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.s3.endpoint_url,
                    region_name=self.s3.region,
                    aws_access_key_id=key_id.get_secret_value() if key_id else None,
                    aws_secret_access_key=secret.get_secret_value() if secret else None,
                    config=botocore_config.Config(
                        connect_timeout=self.timeout,
                        read_timeout=self.timeout,
                        retries={"max_attempts": 1},
                        s3={"addressing_style": "path"},
                        # the run's snapshot: botocore walks os.environ for them otherwise
                        proxies=proxies_for(self.s3.endpoint_url or f"https://s3.{self.s3.region}.amazonaws.com"),
                    ),
                )
            return self._client

    @property
    def shown(self) -> str:
        endpoint = f" at {self.s3.endpoint_url}" if self.s3.endpoint_url else ""
        return f'backup "{self.target.name}" (s3://{self.s3.bucket}/{self.s3.prefix}{endpoint})'

    def _call(self, what, *args, **kwargs) -> Any:
        with self.lock:
            self.unreachable.check()
        try:
            return what(*args, **kwargs)
        except botocore_exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            message = f"{self.shown}: {error.get('Code', 'error')}: {error.get('Message', '')}".strip()
            if error.get("Code") in ("NoSuchKey", "404"):
                raise OpscheckError(message) from None
            with self.lock:
                self.unreachable.fail(message)
        except botocore_exceptions.BotoCoreError as exc:
            with self.lock:
                self.unreachable.fail(f"{self.shown}: cannot reach the storage: {one_line(exc, 300)}")

    def newest(self) -> BackupFile | None:
        return self.once("newest", self._find_newest)

    def _find_newest(self) -> BackupFile | None:
        objects = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.s3.bucket, Prefix=self.s3.prefix)
        for page in self._call(list, pages):
            objects += [
                o
                for o in page.get("Contents", [])
                if not o["Key"].endswith(self.CHECKSUM_SUFFIXES)
                and fnmatch.fnmatch(o["Key"][len(self.s3.prefix) :], self.s3.pattern)
            ]
        found = None
        if objects:
            newest = max(objects, key=lambda o: (o["LastModified"], o["Key"]))  # same second: by name
            found = BackupFile(
                f"s3://{self.s3.bucket}/{newest['Key']}",
                newest["LastModified"].astimezone(UTC),
                int(newest["Size"]),
                len(objects),
            )
        return found

    def checksum(self, file: BackupFile, algorithm: str) -> tuple[str, str | None]:
        """Stream the object through the hash (read-only, bounded); read <key>.<algorithm>."""
        key = file.path.removeprefix(f"s3://{self.s3.bucket}/")
        if file.size > self.s3.checksum_max_bytes:
            raise OpscheckError(
                f"{self.shown}: {file.path} is {file.size:,} bytes, over checksum_max_bytes "
                f"{self.s3.checksum_max_bytes:,}: not downloaded"
            )
        try:
            sidecar = (
                self._call(
                    self.client.get_object, Bucket=self.s3.bucket, Key=f"{key}.{algorithm}", Range="bytes=0-4095"
                )["Body"]
                .read()
                .decode(errors="replace")
            )
        except OpscheckError:
            sidecar = None
        digest = hashlib.new(algorithm)
        body = self._call(self.client.get_object, Bucket=self.s3.bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(1024 * 1024):
            digest.update(chunk)
        if sidecar is None:
            return digest.hexdigest(), None
        match = re.search(r"\b[0-9a-fA-F]{32,128}\b", sidecar)
        return digest.hexdigest(), match.group(0).lower() if match else sidecar.strip()[:80]


def _literal_prefix(pattern: str) -> str:
    """The directory part of a glob before its first wildcard: where find starts."""
    parts = pattern.split("/")
    literal = []
    for part in parts[:-1]:
        if re.search(r"[*?\[]", part):
            break
        literal.append(part)
    return "/".join(literal) or "/"


SECTION = list[Backup]  # the inventory's `backups:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the backups family."""
    return {
        "backup": [Param(b, b.name, b) for b in inventory.backups],
        "backup_checksum": [Param(b, b.name, b) for b in inventory.backups if b.checksum],
    }


def reader(inventory: Any, target: Backup) -> BackupReader | S3BackupReader:
    """The reader of a backup target: objects in S3, or files on its host."""
    if target.s3:
        return S3BackupReader(target, inventory.timeout(target))
    hosts = {h.name: h for h in inventory.hosts}
    if target.host and target.host not in hosts:
        raise OpscheckError(f'backup "{target.name}": host {target.host!r} is not in the inventory\'s hosts')
    spec = hosts[target.host].spec if target.host else target.spec
    return BackupReader(target, spec, inventory.timeout(hosts[target.host] if target.host else target))
