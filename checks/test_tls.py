"""TLS family: served chains, expiry, protocols, keys, signatures, mTLS, pinning; and
certificate files on hosts.

Each endpoint is probed once per kind of handshake (fixtures/tls.py): the served chain with
verification off and @SECLEVEL=0, judged with cryptography; the chain verified in its own
handshake. Certificate files are read through the host's testinfra transport, one command
per target; a private key never leaves the host when openssl is there (its public half is
compared), and is never shown.
"""

import datetime as dt
import re

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from fixtures.checking import expect
from fixtures.tls import (
    days_left,
    describe,
    fingerprint,
    hostname_matches,
    issued_by,
    key_description,
    key_problem,
    load_pem_certs,
    public_pem,
    self_signed,
    signature_hash,
    trust_anchors,
)

pytestmark = [pytest.mark.tls]

EXPIRY_HINT = (
    "A certificate expires soon or has expired (runbook: 'SSL certificate errors | Certificate "
    "expiration | Renew certificates'; `openssl x509 -noout -enddate`). Renew it (cert-manager: "
    "`kubectl get certificates`, `kubectl describe certificate ...`; AWE: "
    "scripts/security/emergency_cert_renewal.sh) and reload the proxy so it serves the new one."
)
VERIFY_HINT = (
    "Clients cannot verify the server's certificate (runbook: `openssl verify -CAfile "
    "certs/ca/ca.crt certs/server/server.crt`, `openssl s_client -connect host:443 -servername host "
    "</dev/null`: 'Verify return code: 0 (ok)'). Likely causes: expired certificate, a self-signed or "
    "wrong-CA certificate, a missing intermediate, or the proxy serving an old file."
)


# --- TLS endpoints ---------------------------------------------------------------------------


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "No TLS handshake with the endpoint (runbook: `openssl s_client -connect host:443 -servername "
    "host </dev/null`). Is the service/proxy up and listening, the port right, a firewall in the way, "
    "or TLS misconfigured (no certificate loaded)? Look at the proxy's error log."
)
def test_tls_handshake(tls_endpoint, tls):
    served = tls.served()
    expect(served.handshake_ms < tls.timeout * 1000,
           f"{tls_endpoint.shown}: handshake took {served.handshake_ms:.0f} ms >= timeout {tls.timeout:g} s")


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(VERIFY_HINT)
def test_tls_chain_verifies(tls_endpoint, tls):
    error = tls.verification_error()
    store = f"CA file {tls_endpoint.ca_file}" if tls_endpoint.ca_file else "the system trust store"
    expect(error is None, f"{tls_endpoint.shown}: the served chain does not verify against {store}: {error}; "
                          f"leaf {describe(tls.served().leaf)}")


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "The certificate does not name the host clients connect to (runbook: `openssl s_client "
    "-servername`, cert-manager `spec.dnsNames`). The proxy serves the wrong certificate (default "
    "server block, wrong SNI) or the certificate lacks the name in its subjectAltName."
)
def test_tls_hostname_matches(tls_endpoint, tls):
    leaf = tls.served().leaf
    ok, names = hostname_matches(leaf, tls_endpoint.name_to_match)
    expect(ok, f"{tls_endpoint.shown}: certificate {describe(leaf)} does not match "
               f"{tls_endpoint.name_to_match!r}; its subjectAltName lists {names or 'nothing'}")


def _expiry(endpoint, tls, limit: float, level: str):
    served = tls.served()
    certs = [("served", c) for c in served.chain]
    if endpoint.client_cert:
        try:
            with open(endpoint.client_cert, "rb") as f:
                certs += [("client", c) for c in load_pem_certs(f.read(), f"client_cert {endpoint.client_cert}")[:1]]
        except OSError as exc:
            expect(False, f"{endpoint.shown}: cannot read client_cert {endpoint.client_cert}: {exc.strerror}")
    short = [_expiring(f"{role} certificate", cert, limit, level) for role, cert in certs]
    expect(not any(short), f"{endpoint.shown}: " + "; ".join(filter(None, short)))


def _expiring(label: str, cert, limit: float, level: str) -> str | None:
    """Why `cert` fails an expiry limit (expired always does), or None."""
    left = days_left(cert)
    if left < 0:
        return f"{label} {describe(cert)} EXPIRED {-left:.1f} days ago"
    if left < limit:
        return f"{label} {describe(cert)} expires in {left:.1f} days < {level} {limit:g} days"
    return None


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(EXPIRY_HINT)
def test_tls_certificates_expiry_warning(tls_endpoint, tls):
    _expiry(tls_endpoint, tls, tls_endpoint.warn_days, "warning")


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(EXPIRY_HINT)
def test_tls_certificates_expiry_critical(tls_endpoint, tls):
    _expiry(tls_endpoint, tls, tls_endpoint.crit_days, "critical")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The server accepts a protocol version it must refuse (TLS 1.0/1.1 are broken and "
    "deprecated, RFC 8996). Set the proxy's protocol list (nginx `ssl_protocols TLSv1.2 TLSv1.3;`, "
    "Caddy `protocols tls1.2 tls1.3`, PostgreSQL `ssl_min_protocol_version = 'TLSv1.2'`) and reload."
)
def test_tls_legacy_protocols_refused(tls_endpoint, tls):
    accepted = []
    for version in tls_endpoint.refuse_protocols:
        ok, detail = tls.accepts(version)
        if ok:
            accepted.append(f"{version} accepted ({detail})")
    expect(not accepted, f"{tls_endpoint.shown}: " + "; ".join(accepted) + " (must be refused)")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The server refuses a protocol version clients need (TLS 1.2 by default). Look at the "
    "proxy's protocol list and cipher settings; old clients will fail to connect."
)
def test_tls_modern_protocols_accepted(tls_endpoint, tls):
    refused = []
    for version in tls_endpoint.accept_protocols:
        ok, detail = tls.accepts(version)
        if not ok:
            refused.append(f"{version} refused ({detail})")
    expect(not refused, f"{tls_endpoint.shown}: " + "; ".join(refused) + " (must be accepted)")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A served certificate is signed with a broken hash (SHA-1, MD5): browsers and current "
    "OpenSSL reject it. Reissue it from the CA with SHA-256."
)
def test_tls_signatures_not_weak(tls_endpoint, tls):
    forbidden = {h.lower() for h in tls_endpoint.forbidden_signature_hashes}
    weak = [f"{describe(c)} signed with {signature_hash(c).upper()}"
            for c in tls.served().chain if not self_signed(c) and signature_hash(c).lower() in forbidden]
    expect(not weak, f"{tls_endpoint.shown}: " + "; ".join(weak))


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A served certificate has a weak key (RSA < 2048 bits, EC < 256 bits): current clients "
    "refuse it at their default security level. Reissue it with a new, stronger key."
)
def test_tls_key_strength(tls_endpoint, tls):
    weak = []
    for cert in tls.served().chain:
        problem = key_problem(cert, tls_endpoint.min_rsa_bits, tls_endpoint.min_ec_bits)
        if problem:
            weak.append(f"{describe(cert)}: {problem}")
    expect(not weak, f"{tls_endpoint.shown}: " + "; ".join(weak))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The leaf certificate is valid for longer than public CAs may issue (398 days since "
    "2020): browsers reject it. Issue a shorter-lived certificate and automate its renewal."
)
def test_tls_validity_period(tls_validity_endpoint, tls):
    endpoint, leaf = tls_validity_endpoint, tls.served().leaf
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() / 86400
    expect(days <= endpoint.validity_limit,
           f"{endpoint.shown}: leaf {describe(leaf)} is valid for {days:.0f} days "
           f"> limit {endpoint.validity_limit} days")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The served chain is incomplete (a missing intermediate: clients without it cached fail "
    "to verify) or carries the root (wasted bytes; clients must use their own). Runbook: "
    "`openssl s_client -connect host:443 -showcerts`. Serve leaf + intermediates (nginx: "
    "fullchain.pem as ssl_certificate)."
)
def test_tls_served_chain_complete(tls_endpoint, tls):
    chain = tls.served().chain
    problems = []
    for cert, parent in zip(chain, chain[1:], strict=False):
        if not issued_by(cert, parent):
            problems.append(f"{describe(cert)} is followed by {describe(parent)}, which did not issue it")
    last = chain[-1]
    if self_signed(last):
        if len(chain) > 1:
            problems.append(f"serves the root {describe(last)} (leave it out)")
    else:
        anchors = trust_anchors(tls_endpoint.ca_file)
        if not any(issued_by(last, anchor) for anchor in anchors):
            store = f"CA file {tls_endpoint.ca_file}" if tls_endpoint.ca_file else "the system store"
            problems.append(f"missing intermediate: the chain ends at {describe(last)}, whose issuer "
                            f"is not a root in {store}")
    expect(not problems, f"{tls_endpoint.shown} ({len(chain)} certificate(s) served): " + "; ".join(problems))


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "The mTLS endpoint answers a client WITHOUT a certificate: client authentication is off "
    "(nginx `ssl_verify_client on;` missing, or a route that bypasses the mTLS proxy). Anyone "
    "can call the API: treat it as a security incident."
)
def test_tls_client_certificate_required(tls_mtls_endpoint, tls):
    status = tls.http_status(with_client_cert=False)
    expect(not (isinstance(status, int) and 200 <= status < 300),
           f"{tls_mtls_endpoint.shown}: GET {tls_mtls_endpoint.http_path} without a client certificate "
           f"answered {status}: client certificates are not enforced")


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "The mTLS endpoint refuses the configured client certificate (runbook: `curl -v --cert "
    "certs/client/client.crt --key certs/client/client.key --cacert certs/ca/ca.crt "
    "https://localhost:8443/health`). Likely causes: the client certificate expired or was issued "
    "by another CA than the proxy's ssl_client_certificate, or the proxy's CA file changed."
)
def test_tls_client_certificate_accepted(tls_mtls_endpoint, tls):
    endpoint = tls_mtls_endpoint
    status = tls.http_status(with_client_cert=True)
    expect(status in endpoint.expect_status,
           f"{endpoint.shown}: GET {endpoint.http_path} with client certificate {endpoint.client_cert} "
           f"answered {status}, expected {' or '.join(map(str, endpoint.expect_status))}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The served certificate is not the pinned one (fingerprint or issuer differs): a renewal "
    "with another CA, a proxy serving a stale or foreign certificate, or interception. Compare "
    "`openssl s_client -showcerts` with the expected certificate and update the pin after a "
    "planned change."
)
def test_tls_pinned(tls_pinned_endpoint, tls):
    endpoint, chain = tls_pinned_endpoint, tls.served().chain
    problems = []
    if endpoint.pin_sha256:
        pins = {p.replace(":", "").lower() for p in endpoint.pin_sha256}
        served = [fingerprint(c) for c in chain if not self_signed(c) or len(chain) == 1]
        if not pins & set(served):
            problems.append(f"no served certificate matches the pinned SHA-256 fingerprint(s); leaf is {served[0]}")
    if endpoint.expect_issuer:
        issuer = chain[0].issuer.rfc4514_string()
        if not re.search(endpoint.expect_issuer, issuer):
            problems.append(f"leaf issuer {issuer!r} does not match {endpoint.expect_issuer!r}")
    expect(not problems, f"{endpoint.shown}: " + "; ".join(problems))


# --- certificate files on hosts -----------------------------------------------------------


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
    short = [_expiring(f"{path}:", cert, limit, level)
             for path in filter(None, (target.cert, target.ca)) for cert in _file_certs(target, reader, path)]
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
    expect(facts.key_public is not None and facts.key_public.strip() == public_pem(leaf).strip(),
           f"{cert_reader.shown}: key {target.key} does not match certificate {describe(leaf)} "
           f"({key_description(leaf)} public key differs)")


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
    expect(not too_open, f"{cert_reader.shown}: key {target.key} has mode {mode:04o} owner {owner} "
                         f"(at most 0600, or 0640 owned by root)")


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
            expect(False, f"{cert_reader.shown}: {target.cert} does not verify against {target.ca}: "
                          f"{describe(cert)} is outside its validity period")
        if any(issued_by(cert, a) for a in anchors):
            break
        parent = next((p for p in pool if p not in path and issued_by(cert, p)), None)
        expect(parent is not None,
               f"{cert_reader.shown}: {target.cert} does not verify against {target.ca}: no issuer of "
               f"{describe(cert)} in the CA file or the bundle (unable to get local issuer certificate)")
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
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    names = [getattr(u, "_name", u.dotted_string) for u in usages]
    expect(ExtendedKeyUsageOID.SERVER_AUTH in list(usages),
           f"{cert_reader.shown}: {target.cert}: {describe(leaf)} has extendedKeyUsage "
           f"{', '.join(names) or 'none'}, not serverAuth")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The endpoint serves a different certificate than the file on disk (runbook: `openssl "
    "s_client -connect localhost:8443 -showcerts` vs certs/server/server.crt): the certificate "
    "was renewed but the proxy was not reloaded, and the old one will expire in service. "
    "Reload the proxy (nginx -s reload) after checking its configuration."
)
def test_tls_serves_certificate_file(tls_file_endpoint, tls, inventory, _cert_file_readers):
    name = tls_file_endpoint.serves_certificate_file
    files = {f.name: f for f in inventory.certificate_files}
    expect(name in files,
           f"{tls_file_endpoint.shown}: serves_certificate_file {name!r} is not a certificate_files target")
    reader = _cert_file_readers.get(files[name])
    on_disk = _file_certs(files[name], reader, files[name].cert)[0]
    served = tls.served().leaf
    expect(fingerprint(served) == fingerprint(on_disk),
           f"{tls_file_endpoint.shown}: serves {describe(served)} (sha256 {fingerprint(served)[:16]}...), but "
           f"{files[name].cert} on {files[name].spec} holds {describe(on_disk)} "
           f"(sha256 {fingerprint(on_disk)[:16]}...)")
