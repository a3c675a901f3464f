"""Certificates and TLS servers for the tls family's self-tests.

`Pki` issues a CA, an intermediate and leaf certificates with cryptography (trustme cannot
make the broken ones the checks must catch: SHA-1 signed, 1024-bit RSA, expired, expiring in
N days, wrong hostname, self-signed). `Nginx` serves them with REAL nginx (Debian
nginx-light), one master process with a server block per case on random loopback ports.
"""

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers import Service, free_port, wait_for

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Issued:
    """A certificate, its key and the files they were written to."""

    cert: x509.Certificate
    key: object
    name: str
    cert_path: Path | None = None
    key_path: Path | None = None

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opscheck self-test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def new_key(kind: str = "ec256"):
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Pki:
    """A private CA with one intermediate; issues leaves into `directory`."""

    directory: Path
    root: Issued = field(init=False)
    intermediate: Issued = field(init=False)

    def __post_init__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.root = self.issue("opscheck-test-root", ca=True, issuer=None, days=3650)
        self.intermediate = self.issue("opscheck-test-intermediate", ca=True, issuer=self.root, days=1800)
        self.ca_file = self.write("ca.crt", self.root.pem)

    def write(self, name: str, data: bytes, mode: int = 0o644) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def issue(
        self,
        cn: str,
        *,
        issuer: "Issued | None | str" = "intermediate",
        ca: bool = False,
        days: float = 90,
        hosts: tuple = ("localhost", "127.0.0.1"),
        key: str = "ec256",
        hash_alg=None,
        client: bool = False,
        expired: bool = False,
    ) -> Issued:
        """A certificate for `cn` valid `days` from now (or expired yesterday)."""
        if issuer == "intermediate":
            issuer = self.intermediate
        private = new_key(key if not ca else "ec256")
        not_before = NOW - dt.timedelta(days=2 if not expired else 60)
        not_after = NOW - dt.timedelta(days=1) if expired else NOW + dt.timedelta(days=days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(issuer.cert.subject if issuer else _name(cn))
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            sans = [
                x509.IPAddress(__import__("ipaddress").ip_address(h)) if h[0].isdigit() else x509.DNSName(h)
                for h in hosts
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        signer = issuer.key if issuer else private
        cert = builder.sign(signer, hashes.SHA256())
        if hash_alg is not None:
            cert = _resign(cert, signer, hash_alg.name)
        issued = Issued(cert, private, cn)
        issued.cert_path = self.write(f"{cn}.crt", issued.pem)
        issued.key_path = self.write(f"{cn}.key", issued.key_pem, 0o600)
        return issued

    def chain_file(self, leaf: Issued, *extra: Issued, name: str | None = None) -> Path:
        """The leaf followed by `extra` (the intermediate, normally), as nginx serves it."""
        return self.write(name or f"{leaf.name}.chain.pem", leaf.pem + b"".join(e.pem for e in extra))


def _resign(cert: x509.Certificate, key, digest: str) -> x509.Certificate:
    """The same certificate signed with a legacy digest (cryptography no longer signs SHA-1)."""
    from OpenSSL import crypto

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = crypto.X509.from_cryptography(cert)
        legacy.sign(crypto.PKey.from_cryptography_key(key), digest)
        return legacy.to_cryptography()


# --- nginx --------------------------------------------------------------------------------


@dataclass
class Site:
    """One nginx server block: a port, a certificate chain and TLS settings."""

    chain: Path
    key: Path
    protocols: str = "TLSv1.2 TLSv1.3"
    weak: bool = False  # ssl_ciphers DEFAULT:@SECLEVEL=0 (TLS 1.0, SHA-1, 1024-bit RSA)
    client_ca: Path | None = None
    headers: dict = field(default_factory=dict)
    server_tokens: bool = False
    plain_redirect: bool = False  # an extra plain-HTTP port redirecting to this site
    api_keys: dict = field(default_factory=dict)  # key -> status (anything else: 401)
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)


class Nginx(Service):
    """One nginx master serving every Site; runs as root in a private prefix."""

    def __init__(self, sites: dict[str, Site]):
        self.sites = sites
        self.dir = Path(tempfile.mkdtemp(prefix="opscheck-nginx-", dir="/tmp"))
        self.proc: subprocess.Popen | None = None

    def _server_block(self, site: Site) -> str:
        lines = [
            f"listen 127.0.0.1:{site.port} ssl;",
            "server_name localhost;",
            f"ssl_certificate {site.chain};",
            f"ssl_certificate_key {site.key};",
            f"ssl_protocols {site.protocols};",
            f"server_tokens {'on' if site.server_tokens else 'off'};",
        ]
        if site.weak:
            lines.append("ssl_ciphers DEFAULT:@SECLEVEL=0;")
        if site.client_ca:
            lines += [f"ssl_client_certificate {site.client_ca};", "ssl_verify_client on;", "ssl_verify_depth 3;"]
        lines += [f"add_header {k} {_quote(v)} always;" for k, v in site.headers.items()]
        if site.api_keys:
            lines.append("location / {")
            for key, status in site.api_keys.items():
                lines.append(f'  if ($http_x_api_key = "{key}") {{ return {status} "key ok\\n"; }}')
            lines.append('  return 401 "unauthorized\\n";')
            lines.append("}")
        else:
            lines.append('location / { return 200 "ok\\n"; }')
        block = "server {\n  " + "\n  ".join(lines) + "\n}\n"
        if site.plain_redirect:
            block += (
                f"server {{\n  listen 127.0.0.1:{site.http_port};\n"
                f"  return 301 https://localhost:{site.port}$request_uri;\n}}\n"
            )
        return block

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise RuntimeError("nginx not found (apt-get install nginx-light)")
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"worker_processes 1;\nerror_log {self.dir}/error.log warn;\npid {self.dir}/nginx.pid;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"  access_log off;\n  client_body_temp_path {self.dir}/body;\n"
            f"  proxy_temp_path {self.dir}/proxy;\n  fastcgi_temp_path {self.dir}/fastcgi;\n"
            f"  uwsgi_temp_path {self.dir}/uwsgi;\n  scgi_temp_path {self.dir}/scgi;\n"
            "  default_type text/plain;\n" + "".join(self._server_block(s) for s in self.sites.values()) + "}\n"
        )
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.dir), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        import socket

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()[-2000:]}")
            for site in self.sites.values():
                socket.create_connection(("127.0.0.1", site.port), timeout=1).close()
            return True

        try:
            wait_for(up, 15, "nginx")
        except RuntimeError:
            log = (self.dir / "error.log").read_text() if (self.dir / "error.log").exists() else ""
            self.stop()
            raise RuntimeError(f"nginx did not start: {log[-2000:]}") from None

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _quote(value: str) -> str:
    return '"' + value.replace('"', '\\"') + '"'


def selftest_pki() -> Pki:
    """The self-tests' certificates: a CA, an intermediate and leaves good and broken."""
    directory = Path(tempfile.mkdtemp(prefix="opscheck-pki-", dir="/tmp"))
    pki = Pki(directory)
    pki.good = pki.issue("good")
    pki.soon10 = pki.issue("soon10", days=10)
    pki.soon20 = pki.issue("soon20", days=20)
    pki.expired = pki.issue("expired", expired=True)
    pki.selfsigned = pki.issue("selfsigned", issuer=None)
    pki.wronghost = pki.issue("wronghost", hosts=("other.example",))
    pki.sha1 = pki.issue("sha1", hash_alg=hashes.SHA1())
    pki.rsa1024 = pki.issue("rsa1024", key="rsa1024")
    pki.longlived = pki.issue("longlived", days=800)
    pki.client = pki.issue("client", client=True)
    pki.client_soon = pki.issue("client-soon", client=True, days=10)
    pki.client_ca = pki.write("client-ca.crt", pki.intermediate.pem + pki.root.pem)
    pki.foreign = Pki(directory / "foreign")
    pki.foreign_client = pki.foreign.issue("foreign-client", client=True)
    return pki


def certificate_files_on_disk(pki: Pki) -> Path:
    """Certificate files on this host (local://), good and broken, as a deploy leaves them."""
    d = pki.directory / "files"
    d.mkdir()
    good = pki.good
    (d / "server.crt").write_bytes(good.pem)
    (d / "server.key").write_bytes(good.key_pem)
    (d / "server.key").chmod(0o600)
    (d / "bundle.crt").write_bytes(good.pem + pki.intermediate.pem)
    (d / "open.key").write_bytes(good.key_pem)
    (d / "open.key").chmod(0o644)
    (d / "other.key").write_bytes(pki.soon20.key_pem)
    (d / "other.key").chmod(0o600)
    (d / "not-pem.crt").write_text("hello\n")
    return d


def certificate_file_targets(pki, files) -> list[dict]:
    """certificate_files targets on this host, good and broken (shared with the tls self-test)."""
    ca = str(pki.ca_file)
    f = str(files)
    return [
        {
            "name": "good-files",
            "spec": "local://",
            "cert": f"{f}/server.crt",
            "key": f"{f}/server.key",
            "ca": str(pki.client_ca),
            "server_auth": True,
        },  # intermediate + root, as `openssl verify -CAfile` needs
        {"name": "client-cert-as-server", "cert": str(pki.client.cert_path), "server_auth": True},
        {"name": "bundle", "cert": f"{f}/bundle.crt", "ca": ca},
        {"name": "expired-file", "cert": str(pki.expired.cert_path), "ca": ca},
        {"name": "soon-file", "cert": str(pki.soon10.cert_path)},
        {"name": "wrong-key", "cert": f"{f}/server.crt", "key": f"{f}/other.key"},
        {"name": "open-key", "cert": f"{f}/server.crt", "key": f"{f}/open.key"},
        {"name": "foreign-ca", "cert": f"{f}/server.crt", "ca": str(pki.foreign.ca_file)},
        {"name": "no-intermediate-file", "cert": f"{f}/server.crt", "ca": ca},
        {"name": "missing", "cert": f"{f}/nope.crt"},
        {"name": "not-pem", "cert": f"{f}/not-pem.crt"},
    ]
