"""certificate_files family: certificates, keys and CA files on this host (local://), good
and broken as a deploy leaves them: expired, expiring, wrong key, world-readable key,
foreign CA, missing intermediate, missing file, not PEM, a client certificate deployed as
a server one. A private key never reaches a report.
"""

import shutil

import pytest

from tests.conftest import run_suite
from tests.servers_tls import certificate_file_targets, certificate_files_on_disk, selftest_pki


@pytest.fixture(scope="module")
def pki():
    pki = selftest_pki()
    yield pki
    shutil.rmtree(pki.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def files(pki):
    return certificate_files_on_disk(pki)


@pytest.fixture(scope="module")
def result(pki, files, tmp_path_factory):
    inventory = {"environment": "selftest-certificate-files", "certificate_files": certificate_file_targets(pki, files)}
    return run_suite(inventory, tmp_path_factory.mktemp("certificate-files"), "-m", "tls")


def test_certificate_files(result):
    result.assert_passed(
        *(
            f"{c}[good-files]"
            for c in (
                "test_certificate_file_valid",
                "test_certificate_file_expiry_warning",
                "test_certificate_file_expiry_critical",
                "test_certificate_file_key_matches",
                "test_certificate_file_key_private",
                "test_certificate_file_verifies",
            )
        ),
        "test_certificate_file_verifies[bundle]",
    )
    result.assert_failed("test_certificate_file_expiry_critical[expired-file]", "CN=expired", "EXPIRED")
    result.assert_failed("test_certificate_file_verifies[expired-file]", "outside its validity period")
    result.assert_failed("test_certificate_file_expiry_critical[soon-file]", "CN=soon10", "< critical 14 days")
    result.assert_failed("test_certificate_file_expiry_warning[soon-file]", "CN=soon10", "< warning 30 days")
    result.assert_failed("test_certificate_file_key_matches[wrong-key]", "does not match certificate", "CN=good")
    result.assert_failed("test_certificate_file_key_private[open-key]", "mode 0644")
    result.assert_failed("test_certificate_file_verifies[foreign-ca]", "no issuer of", "CN=good")
    result.assert_failed("test_certificate_file_verifies[no-intermediate-file]", "unable to get local issuer")
    result.assert_failed("test_certificate_file_valid[missing]", "nope.crt does not exist")
    result.assert_failed("test_certificate_file_valid[not-pem]", "no PEM certificate")
    result.assert_passed("test_certificate_file_server_auth[good-files]")
    result.assert_failed("test_certificate_file_server_auth[client-cert-as-server]", "clientAuth, not serverAuth")


def test_private_keys_never_reach_the_report(result, pki, files):
    text = result.output + "".join(
        p.read_text() for p in result.reports_dir.rglob("*") if p.is_file() and p.suffix in (".json", ".xml", ".html")
    )
    assert "PRIVATE KEY" not in text
    assert pki.good.key_pem.decode().splitlines()[1] not in text


def test_key_read_raw_where_the_host_has_no_openssl(pki):
    """Without openssl on the host the key is read, its public half kept, the key dropped."""
    from opscheck.core.x509 import public_pem
    from opscheck.families.certificate_files import parse_files

    text = "\n".join(
        ["@@cert /c.crt", pki.good.pem.decode(), "@@keymode", "600 postgres", "@@keyraw", pki.good.key_pem.decode()]
    )
    facts = parse_files(text)
    assert facts.key_mode == (0o600, "postgres")
    assert facts.key_public.strip() == public_pem(pki.good.cert).strip()
    assert "PRIVATE" not in repr(facts)
