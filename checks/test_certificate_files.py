"""certificate_files checks: certificates, keys and CA files on hosts.

The files are read through the host transport, one command per target
(opscheck/families/certificate_files.py); a private key never leaves the host when
openssl is there (its public half is compared), and is never shown.
"""

import datetime as dt

import pytest

from opscheck.core.checking import expect
from opscheck.core.x509 import (
    describe,
    expiry_problem,
    extended_key_usages,
    issued_by,
    key_description,
    load_pem_certs,
    public_pem,
)

pytestmark = [pytest.mark.tls]

EXPIRY_HINT = (
    "A certificate file on the host expires soon or has expired (runbook: `openssl x509 -in "
    "server.crt -noout -enddate`). Renew it (scripts/generate-pg-certs.sh, "
    "setup_mtls_infrastructure.sh, cert-manager) and reload the service that reads it."
)
VERIFY_HINT = (
    "The certificate file does not verify against its CA file (runbook: `openssl verify -CAfile "
    "certs/ca/ca.crt certs/server/server.crt`: 'OK'). Likely causes: expired certificate, a "
    "certificate from another CA, a missing intermediate in the bundle."
)


def _file_certs(target, reader, path: str) -> list:
    data = reader.facts().certs.get(path)
    expect(data is not None, f"{reader.shown}: {path} does not exist or cannot be read")
    return load_pem_certs(data, f"{reader.shown}: {path}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A certificate file is missing, unreadable or not PEM, or not yet valid (runbook: `ls -la "
    "docker/postgres/certs/`, `openssl x509 -in server.crt -text -noout`). Regenerate it "
    "(scripts/generate-pg-certs.sh, setup_mtls_infrastructure.sh) and check the mount."
)
def test_certificate_file_valid(certificate_files, cert_reader):
    target = certificate_files
    now = dt.datetime.now(dt.UTC)
    problems = []
    for path in filter(None, (target.cert, target.ca)):
        for cert in _file_certs(target, cert_reader, path):
            if cert.not_valid_before_utc > now:
                problems.append(f"{path}: {describe(cert)} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    expect(not problems, f"{cert_reader.shown}: " + "; ".join(problems))


def _file_expiry(target, reader, limit: float, level: str):
    short = [
        expiry_problem(f"{path}:", cert, limit, level)
        for path in filter(None, (target.cert, target.ca))
        for cert in _file_certs(target, reader, path)
    ]
    expect(not any(short), f"{reader.shown}: " + "; ".join(filter(None, short)))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(EXPIRY_HINT)
def test_certificate_file_expiry_warning(certificate_files, cert_reader):
    _file_expiry(certificate_files, cert_reader, certificate_files.warn_days, "warning")


@pytest.mark.p0
@pytest.mark.daily
@pytest.mark.runbook(EXPIRY_HINT)
def test_certificate_file_expiry_critical(certificate_files, cert_reader):
    _file_expiry(certificate_files, cert_reader, certificate_files.crit_days, "critical")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The private key does not belong to the certificate (a renewal replaced one file but not "
    "the other): the server fails to start or serves nothing. Regenerate or restore the pair."
)
def test_certificate_file_key_matches(certificate_files_with_key, cert_reader):
    target = certificate_files_with_key
    facts = cert_reader.facts()
    expect(facts.key_error is None, f"{cert_reader.shown}: key {target.key}: {facts.key_error}")
    leaf = _file_certs(target, cert_reader, target.cert)[0]
    expect(
        facts.key_public is not None and facts.key_public.strip() == public_pem(leaf).strip(),
        f"{cert_reader.shown}: key {target.key} does not match certificate {describe(leaf)} "
        f"({key_description(leaf)} public key differs)",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The private key is readable by other users (runbook: `ls -la docker/postgres/certs/`). "
    "PostgreSQL refuses to start with a key that is group/world readable unless owned by root "
    "(0600, or 0640 owned by root). `chmod 600` it and keep it owned by the service user."
)
def test_certificate_file_key_private(certificate_files_with_key, cert_reader):
    target = certificate_files_with_key
    facts = cert_reader.facts()
    expect(facts.key_mode is not None, f"{cert_reader.shown}: key {target.key}: {facts.key_error or 'no mode read'}")
    mode, owner = facts.key_mode
    too_open = bool(mode & 0o007) or (bool(mode & 0o070) and owner != "root") or bool(mode & 0o030)
    expect(
        not too_open,
        f"{cert_reader.shown}: key {target.key} has mode {mode:04o} owner {owner} "
        f"(at most 0600, or 0640 owned by root)",
    )


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(VERIFY_HINT)
def test_certificate_file_verifies(certificate_files_with_ca, cert_reader):
    """`openssl verify -CAfile ca.crt server.crt`: the leaf chains to the CA file (through any
    intermediates in the certificate file), every signature and validity period holds."""
    target = certificate_files_with_ca
    bundle = _file_certs(target, cert_reader, target.cert)
    anchors = _file_certs(target, cert_reader, target.ca)
    now = dt.datetime.now(dt.UTC)
    cert, pool, path = bundle[0], bundle[1:], []
    while True:
        path.append(cert)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            expect(
                False,
                f"{cert_reader.shown}: {target.cert} does not verify against {target.ca}: "
                f"{describe(cert)} is outside its validity period",
            )
        if any(issued_by(cert, a) for a in anchors):
            break
        parent = next((p for p in pool if p not in path and issued_by(cert, p)), None)
        expect(
            parent is not None,
            f"{cert_reader.shown}: {target.cert} does not verify against {target.ca}: no issuer of "
            f"{describe(cert)} in the CA file or the bundle (unable to get local issuer certificate)",
        )
        cert = parent


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The server certificate on disk is not allowed for TLS servers (runbook: `openssl x509 -in "
    "certs/server/server.crt -text -noout`, X509v3 Extended Key Usage: TLS Web Server "
    "Authentication). A client certificate was deployed in its place, or the CSR lacked the "
    "serverAuth usage: reissue it with extendedKeyUsage=serverAuth."
)
def test_certificate_file_server_auth(certificate_files_server, cert_reader):
    target = certificate_files_server
    leaf = _file_certs(target, cert_reader, target.cert)[0]
    server_auth, names = extended_key_usages(leaf)
    expect(
        server_auth,
        f"{cert_reader.shown}: {target.cert}: {describe(leaf)} has extendedKeyUsage "
        f"{', '.join(names) or 'none'}, not serverAuth",
    )
