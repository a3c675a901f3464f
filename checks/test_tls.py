"""tls checks: served chains, expiry, protocols, keys, signatures, mTLS and pinning.

Each endpoint is probed once per kind of handshake (opscheck/families/tls.py): the served
chain with verification off and @SECLEVEL=0, judged with cryptography; the chain verified
in its own handshake.
"""

import re

import pytest

from opscheck.core.checking import expect
from opscheck.core.x509 import (
    describe,
    expiry_problem,
    fingerprint,
    hostname_matches,
    issued_by,
    key_problem,
    load_pem_certs,
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
    expect(
        served.handshake_ms < tls.timeout * 1000,
        f"{tls_endpoint.shown}: handshake took {served.handshake_ms:.0f} ms >= timeout {tls.timeout:g} s",
    )


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(VERIFY_HINT)
def test_tls_chain_verifies(tls_endpoint, tls):
    error = tls.verification_error()
    store = f"CA file {tls_endpoint.ca_file}" if tls_endpoint.ca_file else "the system trust store"
    expect(
        error is None,
        f"{tls_endpoint.shown}: the served chain does not verify against {store}: {error}; "
        f"leaf {describe(tls.served().leaf)}",
    )


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
    expect(
        ok,
        f"{tls_endpoint.shown}: certificate {describe(leaf)} does not match "
        f"{tls_endpoint.name_to_match!r}; its subjectAltName lists {names or 'nothing'}",
    )


def _expiry(endpoint, tls, limit: float, level: str):
    served = tls.served()
    certs = [("served", c) for c in served.chain]
    if endpoint.client_cert:
        try:
            with open(endpoint.client_cert, "rb") as f:
                certs += [("client", c) for c in load_pem_certs(f.read(), f"client_cert {endpoint.client_cert}")[:1]]
        except OSError as exc:
            expect(False, f"{endpoint.shown}: cannot read client_cert {endpoint.client_cert}: {exc.strerror}")
    short = [expiry_problem(f"{role} certificate", cert, limit, level) for role, cert in certs]
    expect(not any(short), f"{endpoint.shown}: " + "; ".join(filter(None, short)))


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
    weak = [
        f"{describe(c)} signed with {signature_hash(c).upper()}"
        for c in tls.served().chain
        if not self_signed(c) and signature_hash(c).lower() in forbidden
    ]
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
    expect(
        days <= endpoint.validity_limit,
        f"{endpoint.shown}: leaf {describe(leaf)} is valid for {days:.0f} days > limit {endpoint.validity_limit} days",
    )


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
            problems.append(
                f"missing intermediate: the chain ends at {describe(last)}, whose issuer is not a root in {store}"
            )
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
    expect(
        not (isinstance(status, int) and 200 <= status < 300),
        f"{tls_mtls_endpoint.shown}: GET {tls_mtls_endpoint.http_path} without a client certificate "
        f"answered {status}: client certificates are not enforced",
    )


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
    expect(
        status in endpoint.expect_status,
        f"{endpoint.shown}: GET {endpoint.http_path} with client certificate {endpoint.client_cert} "
        f"answered {status}, expected {' or '.join(map(str, endpoint.expect_status))}",
    )


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


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The endpoint serves a different certificate than the file on disk (runbook: `openssl "
    "s_client -connect localhost:8443 -showcerts` vs certs/server/server.crt): the certificate "
    "was renewed but the proxy was not reloaded, and the old one will expire in service. "
    "Reload the proxy (nginx -s reload) after checking its configuration."
)
def test_tls_serves_certificate_file(tls_file_endpoint, tls, inventory, cert_readers):
    name = tls_file_endpoint.serves_certificate_file
    files = {f.name: f for f in inventory.certificate_files}
    expect(
        name in files, f"{tls_file_endpoint.shown}: serves_certificate_file {name!r} is not a certificate_files target"
    )
    reader = cert_readers.get(files[name])
    data = reader.facts().certs.get(files[name].cert)
    expect(data is not None, f"{reader.shown}: {files[name].cert} does not exist or cannot be read")
    on_disk = load_pem_certs(data, f"{reader.shown}: {files[name].cert}")[0]
    served = tls.served().leaf
    expect(
        fingerprint(served) == fingerprint(on_disk),
        f"{tls_file_endpoint.shown}: serves {describe(served)} (sha256 {fingerprint(served)[:16]}...), but "
        f"{files[name].cert} on {files[name].spec} holds {describe(on_disk)} "
        f"(sha256 {fingerprint(on_disk)[:16]}...)",
    )
