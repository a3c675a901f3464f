"""TLS endpoints: served chains, expiry, protocols, keys, signatures, mTLS and pinning.

Probing and judging are separate steps, as check_ssl_cert and blackbox_exporter do it:
- the served chain is fetched with pyOpenSSL (Python 3.11's ssl exposes only the leaf),
  verification OFF and `@SECLEVEL=0`, so a 1024-bit key or a SHA-1 chain still comes back
  to be judged (Debian's OpenSSL at security level 2 would refuse the handshake instead);
- protocol probes offer one version each, also at `@SECLEVEL=0`: a default-settings probe
  cannot even offer TLS 1.0, and "TLS 1.0 refused" would pass on a server that accepts it;
- what came back is judged with cryptography (expiry, key size, signature hash, SAN);
- the chain is verified in a separate handshake (Python's ssl, the CA file or the system
  store), so a verification failure never hides the other findings.

One probe per endpoint per run: the checks of an endpoint share its handshakes.
"""

from __future__ import annotations

import ipaddress
import re
import select
import socket
import ssl
import struct
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError
from opscheck.core.lazy import optional
from opscheck.core.model import Param, Target
from opscheck.core.values import LocalFile, Regex

if TYPE_CHECKING:
    from cryptography import x509
    from OpenSSL import SSL
else:
    SSL = optional("OpenSSL.SSL", "tls")

Protocol = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
WEAK = "DEFAULT:@SECLEVEL=0"
PUBLIC_MAX_VALIDITY_DAYS = 398


class TlsEndpoint(Target):
    """A TLS endpoint: host:port, plain TLS or PostgreSQL's own SSL negotiation."""

    host: str = Field(description="host name or address to connect to")
    port: int = Field(default=443, gt=0, lt=65536)
    server_name: str | None = Field(
        default=None, description="SNI name, and the name the certificate must match (default: host)"
    )
    starttls: Literal["postgres"] | None = Field(
        default=None, description="'postgres': PostgreSQL's SSLRequest before the handshake"
    )
    ca_file: LocalFile | None = Field(
        default=None, description="CA bundle to verify against (default: the system store: a public endpoint)"
    )
    warn_days: float = Field(default=30, gt=0, description="certificates expiring sooner warn (p2)")
    crit_days: float = Field(default=14, gt=0, description="certificates expiring sooner are critical (p0)")
    refuse_protocols: list[Protocol] = Field(
        default_factory=lambda: list[Protocol](["TLSv1", "TLSv1.1"]), description="versions the server must refuse"
    )
    accept_protocols: list[Protocol] = Field(
        default_factory=lambda: list[Protocol](["TLSv1.2"]), description="versions the server must accept"
    )
    min_rsa_bits: int = Field(default=2048, gt=0)
    min_ec_bits: int = Field(default=256, gt=0)
    forbidden_signature_hashes: list[str] = Field(default_factory=lambda: ["sha1", "md5"])
    max_validity_days: int | None = Field(
        default=None,
        gt=0,
        description=f"longest leaf validity (default: {PUBLIC_MAX_VALIDITY_DAYS} without ca_file, none with one)",
    )
    client_cert: LocalFile | None = Field(default=None, description="client certificate (PEM) for mTLS")
    client_key: LocalFile | None = Field(default=None, description="its private key (PEM, unencrypted)")
    client_cert_required: bool = Field(
        default=False, description="mTLS: without a client certificate no 2xx answer; with it one"
    )
    http_path: str = Field(default="/", description="path requested over TLS by the mTLS checks")
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    pin_sha256: list[str] = Field(
        default_factory=list, description="SHA-256 fingerprints; the leaf or a served intermediate must match one"
    )
    expect_issuer: Regex | None = Field(default=None, description="regex the leaf's issuer DN must match")
    serves_certificate_file: str | None = Field(
        default=None,
        description="a certificate_files target whose leaf this endpoint must serve (a renewed file "
        "the proxy has not reloaded fails)",
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.warn_days < self.crit_days:
            raise ValueError("warn_days must not be below crit_days")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("give client_cert and client_key together")
        if self.client_cert_required and not self.client_cert:
            raise ValueError("client_cert_required needs client_cert and client_key")
        if set(self.refuse_protocols) & set(self.accept_protocols):
            raise ValueError("a protocol cannot be both refused and accepted")
        return self

    @property
    def name_to_match(self) -> str:
        return self.server_name or self.host

    @property
    def validity_limit(self) -> int | None:
        if self.max_validity_days is not None:
            return self.max_validity_days
        return None if self.ca_file else PUBLIC_MAX_VALIDITY_DAYS

    @property
    def shown(self) -> str:
        via = " (postgres SSL)" if self.starttls else ""
        return f'tls "{self.name}" {self.host}:{self.port}{via}'


# --- probing TLS endpoints --------------------------------------------------------------------


@dataclass
class Served:
    protocol: str
    cipher: str
    chain: list[x509.Certificate]
    handshake_ms: float

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


SSL_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class TlsProbe(TargetReader):
    """Handshakes with one endpoint, each kind once per run; failures are remembered."""

    def __init__(self, target: TlsEndpoint, timeout: float):
        super().__init__()
        self.target = target
        self.timeout = timeout

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        t = self.target
        sock = socket.create_connection((t.host, t.port), timeout=self.timeout)
        if t.starttls == "postgres":
            try:
                sock.sendall(POSTGRES_SSL_REQUEST)
                answer = sock.recv(1)
            except OSError:
                sock.close()
                raise
            if answer != b"S":
                sock.close()
                raise ConnectionError(f"the server declined SSL (answered {answer!r}: ssl = off?)")
        return sock

    def _context(self, version: str | None = None, verify: bool = False, client: bool = True) -> ssl.SSLContext:
        t = self.target
        if verify:
            ctx = ssl.create_default_context(cafile=t.ca_file) if t.ca_file else ssl.create_default_context()
            ctx.check_hostname = False  # judged separately (hostname_matches), with its own message
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers(WEAK)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = SSL_VERSIONS[version] if version else ssl.TLSVersion.TLSv1
            if version:
                ctx.maximum_version = SSL_VERSIONS[version]
        if client and t.client_cert:
            try:
                ctx.load_cert_chain(t.client_cert, t.client_key)
            except (OSError, ssl.SSLError) as exc:
                raise OpscheckError(f"{t.shown}: cannot load client_cert/client_key: {_reason(exc)}") from None
        return ctx

    def _handshake(self, ctx: ssl.SSLContext) -> ssl.SSLSocket:
        sock = self._connect()
        try:
            return ctx.wrap_socket(sock, server_hostname=self._sni())
        except BaseException:
            sock.close()
            raise

    def _sni(self) -> str | None:
        name = self.target.name_to_match
        try:
            ipaddress.ip_address(name)
            return None
        except ValueError:
            return name

    # -- the served chain (pyOpenSSL) ---------------------------------------------------------

    def served(self) -> Served:
        return self.once("served", self._served_or_fail)

    def _served_or_fail(self) -> Served:
        try:
            return self._fetch()
        except (OSError, SSL.Error, ConnectionError) as exc:
            with self.lock:
                self.unreachable.fail(f"{self.target.shown}: TLS handshake failed: {_reason(exc)}")

    def _fetch(self) -> Served:
        t = self.target
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        ctx.set_cipher_list(WEAK.encode())
        ctx.set_min_proto_version(SSL.TLS1_VERSION)
        if t.client_cert:
            try:
                ctx.use_certificate_chain_file(t.client_cert)
                ctx.use_privatekey_file(t.client_key or t.client_cert)
            except SSL.Error as exc:
                raise OpscheckError(f"{t.shown}: cannot load client_cert/client_key: {_reason(exc)}") from None
        start = time.perf_counter()
        sock = self._connect()
        try:
            conn = SSL.Connection(ctx, sock)
            sni = self._sni()
            if sni:
                conn.set_tlsext_host_name(sni.encode())
            conn.set_connect_state()
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    conn.do_handshake()
                    break
                except (SSL.WantReadError, SSL.WantWriteError):
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([sock], [], [], left)[0]:
                        raise TimeoutError(f"no handshake within {self.timeout:g} s") from None
            elapsed = (time.perf_counter() - start) * 1000
            chain = [c.to_cryptography() for c in conn.get_peer_cert_chain() or []]
            if not chain:
                raise ConnectionError("the server sent no certificate")
            return Served(conn.get_protocol_version_name(), conn.get_cipher_name() or "?", chain, elapsed)
        finally:
            sock.close()

    # -- verification, protocols, HTTP over TLS (Python's ssl) --------------------------------

    def verification_error(self) -> str | None:
        """None when the chain verifies against ca_file / the system store, else the reason."""
        self.served()  # unreachable: blocked, with the first error
        return self.once("verified", self._verify)

    def _verify(self) -> str | None:
        try:
            self._handshake(self._context(verify=True)).close()
            return None
        except ssl.SSLCertVerificationError as exc:
            return exc.verify_message or str(exc)
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            return f"handshake failed: {_reason(exc)}"

    def accepts(self, version: str) -> tuple[bool, str]:
        """(accepted, negotiated version and cipher or the refusal) for one protocol version."""
        self.served()
        accepted, how = self.once(("protocol", version), lambda: self._offer(version))
        if accepted is None:
            raise OpscheckError(
                f"{self.target.shown}: cannot probe {version}: {how} (this runner cannot "
                "offer it, or the endpoint did not answer): no verdict"
            )
        return accepted, how

    def _offer(self, version: str) -> tuple[bool | None, str]:
        try:
            with self._handshake(self._context(version)) as tls:
                cipher = tls.cipher()
                return True, f"negotiated {tls.version()} {cipher[0] if cipher else ''}"
        except ssl.SSLError as exc:
            # an alert from the server is a refusal; a client that cannot offer the version is not
            local = exc.reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE")
            return (None if local else False), _reason(exc)
        except (ConnectionRefusedError, TimeoutError) as exc:
            return None, _reason(exc)  # no handshake happened: unknown
        except (ConnectionError, OSError) as exc:
            return False, _reason(exc)  # reset during the handshake

    def http_status(self, with_client_cert: bool) -> int | str:
        """The HTTP status of GET http_path over TLS, or why there was none (refused handshake...)."""
        self.served()
        return self.once(("status", with_client_cert), lambda: self._get(with_client_cert))

    def _get(self, with_client_cert: bool) -> int | str:
        """A refused handshake or a reset is an answer; silence is not: a server that accepts
        and then says nothing (or drips a byte a second) has given no verdict on certificates."""
        t = self.target
        try:
            with self._handshake(self._context(client=with_client_cert)) as tls:
                deadline = time.monotonic() + self.timeout  # the answer's, as a whole (each read is bounded too)
                host = t.server_name or t.host
                tls.sendall(
                    f"GET {t.http_path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: opscheck\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                data = b""
                while b"\r\n" not in data and len(data) < 8192:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    tls.settimeout(left)
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        except TimeoutError:
            raise OpscheckError(
                f"{t.shown}: no HTTP answer within {self.timeout:g} s over TLS "
                f"({'with' if with_client_cert else 'without'} a client certificate): no verdict"
            ) from None
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            return f"no answer: {_reason(exc)}"
        match = re.match(rb"HTTP/\d(?:\.\d)? (\d{3})", data)
        return int(match.group(1)) if match else f"no HTTP answer ({data[:60]!r})"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or "not a PEM certificate chain and private key"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    if isinstance(exc, SSL.Error):
        parts = [
            p[2] or p[0] for p in (exc.args[0] if exc.args and isinstance(exc.args[0], list) else []) if len(p) > 2
        ]
        parts = list(dict.fromkeys(p for p in parts if p))  # OpenSSL repeats, and leaves some empty
        return ", ".join(parts) or "not a PEM certificate chain and private key"
    if isinstance(exc, TimeoutError | socket.timeout):
        return str(exc) if str(exc) not in ("", "timed out") else "timed out"
    return str(exc) or type(exc).__name__


SECTION = list[TlsEndpoint]  # the inventory's `tls:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the tls family."""
    endpoints = inventory.tls

    def each(condition=lambda _: True) -> list[Param]:
        return [Param(e, e.name, e) for e in endpoints if condition(e)]

    return {
        "tls_endpoint": each(),
        "tls_validity_endpoint": each(lambda e: e.validity_limit),
        "tls_mtls_endpoint": each(lambda e: e.client_cert_required),
        "tls_pinned_endpoint": each(lambda e: e.pin_sha256 or e.expect_issuer),
        "tls_file_endpoint": each(lambda e: e.serves_certificate_file),
    }
