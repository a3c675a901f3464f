"""Judging certificates: expiry, keys, signatures, names, chains (with cryptography).

Shared by the tls family (served chains) and the certificate_files family (files on hosts).
Host name matching is RFC 6125 as service-identity implements it: the subjectAltName
only, no fall-back to the CN, wildcards in the leftmost label only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from opscheck.core.errors import OpscheckError
from opscheck.core.lazy import optional

if TYPE_CHECKING:
    import service_identity
    from cryptography import exceptions as crypto_exceptions
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
    from service_identity import cryptography as identity
else:
    x509 = optional("cryptography.x509", "tls")
    crypto_exceptions = optional("cryptography.exceptions", "tls")
    serialization = optional("cryptography.hazmat.primitives.serialization", "tls")
    dsa = optional("cryptography.hazmat.primitives.asymmetric.dsa", "tls")
    ec = optional("cryptography.hazmat.primitives.asymmetric.ec", "tls")
    rsa = optional("cryptography.hazmat.primitives.asymmetric.rsa", "tls")
    service_identity = optional("service_identity", "tls")
    identity = optional("service_identity.cryptography", "tls")


def describe(cert: x509.Certificate) -> str:
    """subject, issuer and not-after: how a failure names a certificate."""
    return (
        f'"{cert.subject.rfc4514_string()}" (issuer "{cert.issuer.rfc4514_string()}", '
        f"not after {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
    )


def days_left(cert: x509.Certificate, now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now(dt.UTC)
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


def expiry_problem(label: str, cert, limit: float, level: str) -> str | None:
    """Why `cert` fails an expiry limit (expired always does), or None."""
    left = days_left(cert)
    if left < 0:
        return f"{label} {describe(cert)} EXPIRED {-left:.1f} days ago"
    if left < limit:
        return f"{label} {describe(cert)} expires in {left:.1f} days < {level} {limit:g} days"
    return None


def self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def signature_hash(cert: x509.Certificate) -> str:
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - an algorithm cryptography does not know
        return cert.signature_algorithm_oid.dotted_string
    return algorithm.name if algorithm else "none (EdDSA)"


def key_problem(cert: x509.Certificate, min_rsa: int, min_ec: int) -> str | None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < min_rsa:
        return f"RSA {key.key_size} bits < {min_rsa}"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < min_ec:
        return f"EC {key.curve.name} {key.curve.key_size} bits < {min_ec}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size} bits (DSA is deprecated)"
    return None


def key_description(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__


def san_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses of the subjectAltName ([] without one)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName) + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def hostname_matches(cert: x509.Certificate, name: str) -> tuple[bool, list[str]]:
    """Whether the subjectAltName covers `name` (RFC 6125), and the names it lists."""
    listed = san_names(cert)
    try:
        if _is_ip(name):
            identity.verify_certificate_ip_address(cert, name)
        else:
            identity.verify_certificate_hostname(cert, name.rstrip("."))
    except (service_identity.VerificationError, service_identity.CertificateError):
        return False, listed
    return True, listed


def extended_key_usages(cert: x509.Certificate) -> tuple[bool, list[str]]:
    """(whether extendedKeyUsage allows serverAuth, the usages it names)."""
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = []
    names = [getattr(u, "_name", u.dotted_string) for u in usages]
    return x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usages, names


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def load_pem_certs(data: bytes, what: str) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise OpscheckError(f"{what}: no PEM certificate in it")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise OpscheckError(f"{what}: not a valid PEM certificate: {exc}") from None


_system_roots: list[x509.Certificate] | None = None


def trust_anchors(ca_file: str | None) -> list[x509.Certificate]:
    """The certificates a chain may end at: the CA file's, or the system store's."""
    global _system_roots
    if ca_file:
        try:
            return load_pem_certs(Path(ca_file).read_bytes(), f"ca_file {ca_file}")
        except OSError as exc:
            raise OpscheckError(f"ca_file {ca_file}: {exc.strerror}") from None
    if _system_roots is None:
        paths = ssl.get_default_verify_paths()
        found: list[x509.Certificate] = []
        for candidate in (paths.cafile, paths.openssl_cafile):
            if candidate and Path(candidate).is_file():
                with warnings.catch_warnings():  # the OS bundle is not the target's: its quirks are not a finding
                    warnings.filterwarnings("ignore", "Parsed a serial number which wasn't positive")
                    found = x509.load_pem_x509_certificates(Path(candidate).read_bytes())
                break
        _system_roots = found
    return _system_roots


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (crypto_exceptions.UnsupportedAlgorithm, ValueError) as exc:
        # SHA-1/MD5: cryptography will not check it. The names match, and the weak signature
        # fails its own check (test_tls_signatures_not_weak).
        return "nsupported" in str(exc)
    except (crypto_exceptions.InvalidSignature, TypeError):
        return False
    return True


def public_pem(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem_of_private(data: bytes) -> bytes | None:
    """The public half of a PEM private key (None if it cannot be read); the key is dropped."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return None
    finally:
        del data
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
