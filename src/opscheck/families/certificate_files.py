"""Certificate files on hosts (a certificate or bundle, its key and CA), read through the
host transport: one command per target. When openssl is on the host the private key never
leaves it (only its public half is compared), and a key is never shown.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from opscheck.core.cache import TargetReader
from opscheck.core.model import Param, Target
from opscheck.core.redact import clip
from opscheck.core.values import HostSpec
from opscheck.core.x509 import public_pem_of_private
from opscheck.families.hosts import command_seconds, run_script


class CertificateFiles(Target):
    """A certificate (or bundle) on a host, with its key and CA, read through testinfra."""

    spec: HostSpec = Field(default="local://", description="testinfra host spec: local://, ssh://..., docker://...")
    cert: str = Field(description="PEM certificate or bundle (leaf first)")
    key: str | None = Field(default=None, description="its private key: must match, must not be readable by all")
    ca: str | None = Field(default=None, description="CA file the certificate must verify against")
    warn_days: float = Field(default=30, gt=0)
    crit_days: float = Field(default=14, gt=0)
    server_auth: bool = Field(
        default=False, description="the leaf is a server certificate: extendedKeyUsage must include serverAuth"
    )

    def secrets(self) -> list[str]:
        return [self.spec]  # testinfra accepts ssh://user:password@host

    @model_validator(mode="after")
    def _warn_above_crit(self):
        if self.warn_days < self.crit_days:
            raise ValueError("warn_days must not be below crit_days")
        return self


@dataclass
class FileFacts:
    """What one read of a host found for a CertificateFiles target. Never holds a private key."""

    certs: dict[str, bytes | None] = field(default_factory=dict)  # path -> PEM (None: missing)
    key_mode: tuple[int, str] | None = None  # (mode, owner)
    key_public: bytes | None = None  # the key's PUBLIC half, PEM
    key_error: str | None = None


FILE_SCRIPT = r"""
cert() { if [ -r "$1" ]; then echo "@@cert $1"; cat "$1"; echo; else echo "@@missing $1"; fi; }
"""
KEY_SCRIPT = r"""
k={key}
if [ ! -e "$k" ]; then echo "@@keymissing"
else
  echo "@@keymode"; stat -c '%a %U' "$k"
  echo "@@pubkey"
  if command -v openssl >/dev/null 2>&1; then
    openssl pkey -in "$k" -pubout -passin pass: 2>/dev/null || echo "@@keyunreadable"
  else
    echo "@@keyraw"; cat "$k"
  fi
fi
"""


class CertFileReader(TargetReader):
    """Reads one CertificateFiles target through its host transport: one command per target."""

    def __init__(self, target: CertificateFiles, timeout: float):
        super().__init__()
        self.target = target
        self.timeout = timeout

    @property
    def shown(self) -> str:
        return f'certificate files "{self.target.name}" ({self.target.spec})'

    def facts(self) -> FileFacts:
        return self.once("facts", self._read_or_fail)

    def _read_or_fail(self) -> FileFacts:
        try:
            return self._read()
        except Exception as exc:  # noqa: BLE001 - any backend error: cannot read the host
            # the message names the failure only: never the command's output (a key)
            with self.lock:
                reason = f"{type(exc).__name__}: {clip(str(exc), 200)}"
                self.unreachable.fail(f"{self.shown}: cannot read the files: {reason}")

    def _read(self) -> FileFacts:
        t = self.target
        script = FILE_SCRIPT + "".join(f"cert {shlex.quote(p)}\n" for p in (t.cert, t.ca) if p)
        if t.key:
            script += KEY_SCRIPT.format(key=shlex.quote(t.key))
        result = run_script(t.spec, script, command_seconds(self.timeout))
        if result.rc not in (0,) and "@@" not in result.stdout:
            raise RuntimeError(f"exit {result.rc}: {clip(result.stderr.strip(), 200)}")
        return parse_files(result.stdout)


def parse_files(text: str) -> FileFacts:
    facts = FileFacts()
    section: str | None = None
    path: str | None = None
    buf: list[str] = []

    def flush():
        if section == "cert":
            facts.certs[path] = "\n".join(buf).encode()
        elif section == "keymode" and buf:
            mode, _, owner = buf[0].partition(" ")
            facts.key_mode = (int(mode, 8), owner)
        elif section == "pubkey":
            raw = "\n".join(buf).encode()
            if "@@keyunreadable" in buf:
                facts.key_error = "the key cannot be read (encrypted, or not a key)"
            else:
                facts.key_public = raw
        elif section == "keyraw":
            facts.key_public = _public_from_private("\n".join(buf).encode(), facts)

    for line in text.splitlines():
        if line.startswith("@@"):
            word, _, rest = line[2:].partition(" ")
            if word == "keyunreadable":
                buf.append(line)
                continue
            flush()
            section, path, buf = word, rest, []
            if word == "missing":
                facts.certs[rest] = None
            elif word == "keymissing":
                facts.key_error = "the key file does not exist"
        else:
            buf.append(line)
    flush()
    return facts


def _public_from_private(data: bytes, facts: FileFacts) -> bytes | None:
    """The public half of a private key read raw (no openssl on the host); the key is dropped."""
    public = public_pem_of_private(data)
    del data
    if public is None:
        facts.key_error = "the key cannot be read (encrypted, or not a PEM private key)"
    return public


SECTION = list[CertificateFiles]  # the inventory's `certificate_files:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the certificate_files family."""
    files = inventory.certificate_files

    def each(condition=lambda _: True) -> list[Param]:
        return [Param(f, f.name, f) for f in files if condition(f)]

    return {
        "certificate_files": each(),
        "certificate_files_server": each(lambda f: f.server_auth),
        "certificate_files_with_key": each(lambda f: f.key),
        "certificate_files_with_ca": each(lambda f: f.ca),
    }
