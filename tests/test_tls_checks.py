"""TLS family against REAL nginx (one master, a server block per case) and PostgreSQL with
ssl=on, serving certificates generated here: valid, expiring in 10 and 20 days, expired,
self-signed, wrong hostname, SHA-1 signed, 1024-bit RSA, missing intermediate, root served,
TLS 1.0 accepted, TLS 1.3 only, too long-lived, mTLS. Every check passes on the good server
and fails on a bad one, with a message naming the certificate.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from opscheck.core.x509 import fingerprint
from tests.conftest import run_suite
from tests.servers import Misbehaving, PostgresServer, SilentListener, closed_port
from tests.servers_tls import Nginx, Site, certificate_file_targets, certificate_files_on_disk, selftest_pki


@pytest.fixture(scope="module")
def pki():
    pki = selftest_pki()
    yield pki
    shutil.rmtree(pki.directory, ignore_errors=True)


SECURE_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-RateLimit-Remaining": "99",
}
API_KEYS = {"sk_test_GoodKey123": 200, "sk_test_RevokedKey456": 401}


@pytest.fixture(scope="module")
def nginx(pki):
    def site(leaf, *extra, **kwargs):
        return Site(pki.chain_file(leaf, *extra, name=f"{leaf.name}-{len(extra)}.pem"), leaf.key_path, **kwargs)

    i = pki.intermediate
    sites = {
        "good": site(pki.good, i, headers=SECURE_HEADERS, plain_redirect=True, api_keys=API_KEYS),
        "soon10": site(pki.soon10, i),
        "soon20": site(pki.soon20, i),
        "expired": site(pki.expired, i),
        "selfsigned": site(pki.selfsigned),
        "wronghost": site(pki.wronghost, i),
        "sha1": site(pki.sha1, i, weak=True),
        "rsa1024": site(pki.rsa1024, i, weak=True),
        "longlived": site(pki.longlived, i),
        "no-intermediate": site(pki.good),
        "with-root": site(pki.good, i, pki.root),
        "tls10": site(pki.good, i, protocols="TLSv1 TLSv1.1 TLSv1.2", weak=True),
        "tls13only": site(pki.good, i, protocols="TLSv1.3"),
        "mtls": site(pki.good, i, client_ca=pki.client_ca),
        "leaky": site(
            pki.good,
            i,
            server_tokens=True,
            headers={"Strict-Transport-Security": "max-age=300", "X-Powered-By": "PHP/8.1.2"},
        ),
    }
    with Nginx(sites) as server:
        yield server


@pytest.fixture(scope="module")
def postgres_ssl(pki):
    """PostgreSQL with ssl=on serving leaf + intermediate; files readable by postgres only."""
    leaf = pki.issue("pg", hosts=("localhost", "127.0.0.1"))
    certs = Path(tempfile.mkdtemp(prefix="opscheck-pgcerts-", dir="/tmp"))
    (certs / "server.crt").write_bytes(leaf.pem + pki.intermediate.pem)
    (certs / "server.key").write_bytes(leaf.key_pem)
    (certs / "server.key").chmod(0o600)
    for path in (certs, *certs.iterdir()):
        shutil.chown(path, "postgres", "postgres")
    server = PostgresServer(
        {"ssl": "on", "ssl_cert_file": f"'{certs}/server.crt'", "ssl_key_file": f"'{certs}/server.key'"}
    )
    server.plain = PostgresServer()  # ssl = off: answers the SSLRequest with 'N'
    try:
        server.start()
        server.plain.start()
        yield server
    finally:
        server.close()
        server.plain.close()
        shutil.rmtree(certs, ignore_errors=True)


def tls_target(nginx, site, name=None, **extra):
    return {
        "name": name or site,
        "host": "127.0.0.1",
        "port": nginx.sites[site].port,
        "server_name": "localhost",
        **extra,
    }


@pytest.fixture(scope="module")
def files(pki):
    return certificate_files_on_disk(pki)


@pytest.fixture(scope="module")
def http_plain():
    from tests.servers import HttpServer, Route

    with HttpServer({"/": Route(status=200, body="plain")}) as server:
        yield server


@pytest.fixture(scope="module")
def silent():
    with SilentListener() as listener:
        yield listener


@pytest.fixture(scope="module")
def result(pki, nginx, postgres_ssl, files, http_plain, silent, tmp_path_factory):
    ca = str(pki.ca_file)
    good_url = f"https://localhost:{nginx.sites['good'].port}/"
    leaky_url = f"https://localhost:{nginx.sites['leaky'].port}/"
    tls = [
        tls_target(
            nginx,
            "good",
            ca_file=ca,
            max_validity_days=398,
            serves_certificate_file="good-files",
            pin_sha256=[fingerprint(pki.good.cert)],
            expect_issuer="CN=opscheck-test-intermediate",
        ),
        tls_target(nginx, "soon10", ca_file=ca),
        tls_target(nginx, "soon20", ca_file=ca, serves_certificate_file="good-files"),  # not reloaded
        tls_target(nginx, "expired", ca_file=ca),
        tls_target(nginx, "selfsigned", ca_file=ca),
        tls_target(nginx, "wronghost", ca_file=ca),
        tls_target(nginx, "sha1", ca_file=ca),
        tls_target(nginx, "rsa1024", ca_file=ca),
        tls_target(nginx, "longlived", ca_file=ca, max_validity_days=398),
        tls_target(nginx, "no-intermediate", ca_file=ca),
        tls_target(nginx, "with-root", ca_file=ca),
        tls_target(nginx, "tls10", ca_file=ca),
        tls_target(nginx, "tls13only", ca_file=ca),
        tls_target(nginx, "good", "public-good"),  # system store: a private CA does not verify
        tls_target(nginx, "good", "wrong-pin", ca_file=ca, pin_sha256=["00" * 32], expect_issuer="Let's Encrypt"),
        tls_target(
            nginx,
            "mtls",
            ca_file=ca,
            client_cert=str(pki.client.cert_path),
            client_key=str(pki.client.key_path),
            client_cert_required=True,
        ),
        tls_target(
            nginx,
            "mtls",
            "mtls-foreign-client",
            ca_file=ca,
            client_cert=str(pki.foreign_client.cert_path),
            client_key=str(pki.foreign_client.key_path),
            client_cert_required=True,
        ),
        tls_target(
            nginx,
            "mtls",
            "mtls-client-expiring",
            ca_file=ca,
            client_cert=str(pki.client_soon.cert_path),
            client_key=str(pki.client_soon.key_path),
        ),
        tls_target(
            nginx,
            "soon20",
            "not-mtls",
            ca_file=ca,
            client_cert=str(pki.client.cert_path),
            client_key=str(pki.client.key_path),
            client_cert_required=True,
        ),
        {
            "name": "postgres",
            "host": "127.0.0.1",
            "port": postgres_ssl.port,
            "server_name": "localhost",
            "starttls": "postgres",
            "ca_file": ca,
        },
        {
            "name": "postgres-no-ssl",
            "host": "127.0.0.1",
            "port": postgres_ssl.plain.port,
            "starttls": "postgres",
            "ca_file": ca,
        },
        {"name": "dead", "host": "127.0.0.1", "port": closed_port(), "timeout": 2},
        {"name": "silent", "host": "127.0.0.1", "port": silent.port, "timeout": 1},
    ]
    certificate_files = certificate_file_targets(pki, files)
    security = {
        "hsts_include_subdomains": True,
        "csp": True,
        "frame_policy": True,
        "rate_limit_headers": ["X-RateLimit-Remaining"],
        "https_redirect_from": f"http://127.0.0.1:{nginx.sites['good'].http_port}/",
    }
    http = [
        {
            "name": "secure",
            "url": good_url,
            "verify": ca,
            "security": {
                **security,
                "api_key": {
                    "key": "${OPSCHECK_TEST_API_KEY}",
                    "header": "X-API-Key",
                    "scheme": "",
                    "revoked_key": "${OPSCHECK_TEST_REVOKED_KEY}",
                },
            },
        },
        {
            "name": "secure-revoked",
            "url": good_url,
            "verify": ca,
            "security": {
                "hsts_min_max_age": None,
                "api_key": {"key": "${OPSCHECK_TEST_REVOKED_KEY}", "header": "X-API-Key", "scheme": ""},
            },
        },
        {
            "name": "leaky",
            "url": leaky_url,
            "verify": ca,
            "security": {
                **security,
                "https_redirect_from": http_plain.url("/"),
                "api_key": {
                    "key": "${OPSCHECK_TEST_BAD_KEY}",
                    "header": "X-API-Key",
                    "scheme": "",
                    "revoked_key": "${OPSCHECK_TEST_REVOKED_KEY}",
                },
            },
        },
    ]
    env = {
        "OPSCHECK_TEST_API_KEY": "sk_test_GoodKey123",
        "OPSCHECK_TEST_REVOKED_KEY": "sk_test_RevokedKey456",
        "OPSCHECK_TEST_BAD_KEY": "live-NotAKey789",
    }
    inventory = {"environment": "selftest-tls", "tls": tls, "certificate_files": certificate_files, "http": http}
    return run_suite(inventory, tmp_path_factory.mktemp("tls"), "-m", "tls or security", env=env)


GOOD_CHECKS = [
    "test_tls_handshake",
    "test_tls_chain_verifies",
    "test_tls_hostname_matches",
    "test_tls_certificates_expiry_warning",
    "test_tls_certificates_expiry_critical",
    "test_tls_legacy_protocols_refused",
    "test_tls_modern_protocols_accepted",
    "test_tls_signatures_not_weak",
    "test_tls_key_strength",
    "test_tls_served_chain_complete",
]


def test_good_endpoint_passes_every_check(result):
    result.assert_passed(
        *(f"{c}[good]" for c in GOOD_CHECKS), "test_tls_validity_period[good]", "test_tls_pinned[good]"
    )


def test_expiring_in_20_days_warns_only(result):
    result.assert_failed(
        "test_tls_certificates_expiry_warning[soon20]",
        'served certificate "CN=soon20',
        'issuer "CN=opscheck-test-intermediate',
        "not after",
        "< warning 30 days",
    )
    result.assert_passed("test_tls_certificates_expiry_critical[soon20]")


def test_expiring_in_10_days_is_critical(result):
    result.assert_failed("test_tls_certificates_expiry_critical[soon10]", "CN=soon10", "< critical 14 days")
    result.assert_failed("test_tls_certificates_expiry_warning[soon10]", "CN=soon10")


def test_expired_always_fails(result):
    for check in ("test_tls_certificates_expiry_warning[expired]", "test_tls_certificates_expiry_critical[expired]"):
        result.assert_failed(check, "CN=expired", "EXPIRED")
    result.assert_failed("test_tls_chain_verifies[expired]", "certificate has expired", "CN=expired")


def test_untrusted_chains_fail_verification(result):
    result.assert_failed("test_tls_chain_verifies[selfsigned]", "self-signed certificate", "CN=selfsigned")
    result.assert_failed("test_tls_chain_verifies[no-intermediate]", "unable to get local issuer certificate")
    result.assert_failed("test_tls_chain_verifies[public-good]", "the system trust store")


def test_wrong_hostname_fails(result):
    result.assert_failed(
        "test_tls_hostname_matches[wronghost]", "CN=wronghost", "does not match 'localhost'", "other.example"
    )
    result.assert_passed("test_tls_chain_verifies[wronghost]")  # trust and name are judged apart


def test_sha1_signature_fails(result):
    result.assert_failed("test_tls_signatures_not_weak[sha1]", "CN=sha1", "signed with SHA1")
    result.assert_passed(
        "test_tls_handshake[sha1]",
        "test_tls_key_strength[sha1]",
        "test_tls_served_chain_complete[sha1]",
        "test_tls_chain_verifies[sha1]",
    )


def test_weak_rsa_key_fails(result):
    result.assert_failed("test_tls_key_strength[rsa1024]", "CN=rsa1024", "RSA 1024 bits < 2048")
    result.assert_passed("test_tls_signatures_not_weak[rsa1024]")


def test_long_validity_fails(result):
    result.assert_failed("test_tls_validity_period[longlived]", "CN=longlived", "valid for 802 days > limit 398")


def test_served_chain_problems(result):
    result.assert_failed(
        "test_tls_served_chain_complete[no-intermediate]",
        "missing intermediate",
        "CN=good",
        'issuer "CN=opscheck-test-intermediate',
    )
    result.assert_failed("test_tls_served_chain_complete[with-root]", "serves the root", "CN=opscheck-test-root")
    result.assert_passed("test_tls_chain_verifies[with-root]")


def test_legacy_protocols(result):
    message = result.assert_failed(
        "test_tls_legacy_protocols_refused[tls10]", "TLSv1 accepted (negotiated TLSv1 ", "TLSv1.1 accepted"
    )
    assert "must be refused" in message
    result.assert_failed("test_tls_modern_protocols_accepted[tls13only]", "TLSv1.2 refused")
    result.assert_passed("test_tls_legacy_protocols_refused[tls13only]", "test_tls_modern_protocols_accepted[tls10]")


def test_default_settings_probe_would_miss_tls10(nginx):
    """Why the probes run at @SECLEVEL=0: at Debian's default level a client cannot even offer
    TLS 1.0, so a default-settings "TLS 1.0 refused" check passes on a server that accepts it."""
    import socket
    import ssl
    import warnings

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", nginx.sites["tls10"].port), 5) as sock:
        ctx.wrap_socket(sock, server_hostname="localhost")


def test_pinning(result):
    result.assert_failed("test_tls_pinned[wrong-pin]", "pinned SHA-256", 'does not match "Let\'s Encrypt"')


def test_mtls(result):
    result.assert_passed(
        "test_tls_client_certificate_required[mtls]",
        "test_tls_client_certificate_accepted[mtls]",
        "test_tls_client_certificate_required[mtls-foreign-client]",
        "test_tls_certificates_expiry_critical[mtls]",
    )
    result.assert_failed("test_tls_client_certificate_accepted[mtls-foreign-client]", "answered 400", "foreign-client")
    result.assert_failed("test_tls_client_certificate_required[not-mtls]", "without a client certificate answered 200")
    result.assert_failed(
        "test_tls_certificates_expiry_critical[mtls-client-expiring]",
        'client certificate "CN=client-soon',
        "< critical 14 days",
    )


def test_postgres_ssl(result):
    result.assert_passed(*(f"{c}[postgres]" for c in GOOD_CHECKS))
    result.assert_failed("test_tls_handshake[postgres-no-ssl]", "declined SSL")


def test_dead_endpoint_fails_once_then_blocks(result):
    result.assert_failed("test_tls_handshake[dead]", "TLS handshake failed", "refused")
    result.assert_failed("test_tls_chain_verifies[dead]", "blocked: ")


def test_silent_endpoint_costs_one_timeout(result):
    """A listener that never answers: the first check waits its 1 s timeout, the rest fail at once."""
    result.assert_failed("test_tls_handshake[silent]", "no handshake within 1 s")
    silent = [c for c in result.checks.values() if c["id"].endswith("[silent]")]
    assert len(silent) >= 10
    assert all("blocked: " in c["message"] for c in silent if "test_tls_handshake" not in c["id"])
    assert sum(c["duration"] for c in silent) < 2.5, [c["duration"] for c in silent]


def test_http_security_headers(result):
    result.assert_passed(
        "test_hsts_header[secure]",
        "test_security_headers_present[secure]",
        "test_no_revealing_headers[secure]",
        "test_rate_limit_headers_present[secure]",
        "test_http_redirects_to_https[secure]",
    )
    result.assert_failed("test_hsts_header[leaky]", "max-age 300 < 31,536,000", "includeSubDomains missing")
    result.assert_failed(
        "test_security_headers_present[leaky]", "X-Content-Type-Options", "Content-Security-Policy", "frame policy"
    )
    result.assert_failed("test_no_revealing_headers[leaky]", "X-Powered-By", "reveals a version")
    result.assert_failed("test_rate_limit_headers_present[leaky]", "missing X-RateLimit-Remaining")
    result.assert_failed("test_http_redirects_to_https[leaky]", "answered 200", "expected a redirect to https://")


def test_api_keys(result):
    result.assert_passed(
        "test_api_key_accepted[secure]",
        "test_api_key_required[secure]",
        "test_revoked_api_key_refused[secure]",
        "test_api_key_format[secure]",
    )
    result.assert_failed("test_api_key_accepted[secure-revoked]", "with the API key: status 401, expected 2xx")
    result.assert_failed("test_api_key_required[leaky]", "without an API key: status 200, expected 401")
    result.assert_failed("test_revoked_api_key_refused[leaky]", "with the revoked API key: status 200")
    result.assert_failed("test_api_key_format[leaky]", "without an sk_<mode>_ prefix")


def test_api_keys_never_printed(result):
    text = result.output + "".join(
        p.read_text() for p in result.reports_dir.rglob("*") if p.is_file() and p.suffix in (".json", ".xml", ".html")
    )
    for key in ("GoodKey123", "RevokedKey456", "NotAKey789"):
        assert key not in text


CHECK_HTTP = "/usr/lib/nagios/plugins/check_http"


@pytest.mark.skipif(not os.path.exists(CHECK_HTTP), reason="monitoring-plugins-basic not installed")
@pytest.mark.parametrize("site", ["good", "soon20", "soon10", "expired"])
def test_expiry_verdict_agrees_with_check_http(site, result, nginx):
    """check_http -C 30,14 (OK/WARNING/CRITICAL) and our two expiry checks say the same."""
    proc = subprocess.run(
        [
            CHECK_HTTP,
            "-H",
            "localhost",
            "-I",
            "127.0.0.1",
            "-p",
            str(nginx.sites[site].port),
            "-S",
            "--sni",
            "-C",
            "30,14",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    warn = result.outcome(f"test_tls_certificates_expiry_warning[{site}]")
    crit = result.outcome(f"test_tls_certificates_expiry_critical[{site}]")
    ours = 2 if crit == "failed" else 1 if warn == "failed" else 0
    assert proc.returncode == ours, f"check_http {proc.returncode} ({proc.stdout.strip()}) vs ours {ours}"


def test_serves_the_certificate_file(result):
    """A renewed certificate file that the proxy never reloaded fails (tls + certificate_files)."""
    result.assert_passed("test_tls_serves_certificate_file[good]")
    result.assert_failed("test_tls_serves_certificate_file[soon20]", 'serves "CN=soon20', 'holds "CN=good')


def test_a_silent_mtls_server_is_no_proof_of_enforcement(pki, tmp_path):
    """It completes every handshake, then never answers: no refusal, so no pass for the p0
    check that client certificates are required (a timeout read as "refused" passed it)."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.chain_file(pki.good, pki.intermediate, name="silent.pem"), pki.good.key_path)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(pki.client_ca)

    def handshake_then_silence(conn, stop):
        conn.settimeout(10)
        with context.wrap_socket(conn, server_side=True):
            stop.wait(30)

    server = Misbehaving(handshake_then_silence)
    server.start()
    target = {
        "name": "silent",
        "host": "127.0.0.1",
        "port": server.port,
        "server_name": "localhost",
        "ca_file": str(pki.ca_file),
        "client_cert": str(pki.client.cert_path),
        "client_key": str(pki.client.key_path),
        "client_cert_required": True,
    }
    try:
        result = run_suite(
            {"environment": "selftest-silent-tls", "defaults": {"timeout": 1}, "tls": [target]}, tmp_path, "-m", "daily"
        )
    finally:
        server.stop()
    result.assert_failed("test_tls_client_certificate_required[silent]", "no HTTP answer within 1 s", "no verdict")
