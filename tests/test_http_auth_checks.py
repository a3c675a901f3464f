"""http auth flows against a REAL HTTP API issuing REAL JWTs (PyJWT) on loopback, and REAL
nginx requiring a client certificate in front of it (AWE's mTLS proxy).

Healthy: a login (JSON and form) whose token the endpoint's request then carries, claims
that hold, a signature the key verifies, and the missing, tampered and expired tokens
refused. Broken: a wrong password (the login fails, the rest says "blocked:"), a token
path that is not there, an API that signs with alg none, short-lived, iat in the future,
the wrong issuer and audience and that accepts anything; a wrong key; an mTLS endpoint
called without its client certificate. No password, key or token reaches any report.
"""

import shutil

import pytest

from tests.conftest import run_suite
from tests.servers_http_auth import PASSWORD, SECRET, USER, JwtApi, MtlsProxy, ProxySite
from tests.servers_tls import selftest_pki

WRONG_KEY = "not-the-key-opscheck-0123456789abcdef"


@pytest.fixture(scope="module")
def apis():
    made = {
        "good": JwtApi(),
        "weak": JwtApi(alg="none", lifetime_s=120, iat_offset=300, issuer="someone-else", audience="x", verify=False),
    }
    for api in made.values():
        api.start()
    yield made
    for api in made.values():
        api.stop()


@pytest.fixture(scope="module")
def proxy(apis):
    pki = selftest_pki()
    site = ProxySite(
        pki.chain_file(pki.good, pki.intermediate, name="proxy.pem"),
        pki.good.key_path,
        client_ca=pki.client_ca,
        upstream=apis["good"].port,
    )
    with MtlsProxy({"mtls": site}) as nginx:
        nginx.pki, nginx.base = pki, f"https://localhost:{site.port}"
        yield nginx
    shutil.rmtree(pki.directory, ignore_errors=True)


def jwt_rules(**extra) -> dict:
    return {
        "algorithms": ["HS256"],
        "key": "${JWT_SECRET}",
        "issuer": "awe-test",
        "audience": "awe-api",
        "min_remaining_minutes": 10,
        "max_lifetime_hours": 24,
        "lifetime_minutes": 60,
        **extra,
    }


def login(url, **extra) -> dict:
    return {"url": url, "username": USER, "password": "${MONITOR_PASSWORD}", **extra}


@pytest.fixture(scope="module")
def result(apis, proxy, tmp_path_factory):
    good, weak = apis["good"], apis["weak"]
    ca = str(proxy.pki.ca_file)
    client = {"client_cert": str(proxy.pki.client.cert_path), "client_key": str(proxy.pki.client.key_path)}
    me = [{"path": "plan", "op": "exists"}]
    inventory = {
        "environment": "selftest-http-auth",
        "http": [
            {
                "name": "me",
                "url": good.url("/auth/me"),
                "json": me,
                "auth": {
                    "login": login(good.url("/auth/login")),
                    "jwt": jwt_rules(),
                    "expired_token": "${EXPIRED_JWT}",
                },
            },
            {
                "name": "form-login",
                "url": good.url("/auth/me"),
                "auth": {"login": login(good.url("/auth/token"), form=True), "refuse_missing": False},
            },
            {"name": "env-token", "url": good.url("/auth/me"), "json": me, "auth": {"token": "${GOOD_JWT}"}},
            {
                "name": "wrong-password",
                "url": good.url("/auth/me"),
                "auth": {"login": {**login(good.url("/auth/login")), "password": "not-the-Pw-opscheck"}, "jwt": {}},
            },
            {
                "name": "no-token-field",
                "url": good.url("/auth/me"),
                "auth": {"login": login(good.url("/auth/login"), token_path="token"), "refuse_tampered": False},
            },
            {
                "name": "wrong-key",
                "url": good.url("/auth/me"),
                "auth": {"login": login(good.url("/auth/login")), "jwt": jwt_rules(key=WRONG_KEY)},
            },
            {
                "name": "weak",
                "url": weak.url("/auth/me"),
                "auth": {
                    "login": login(weak.url("/auth/login")),
                    "jwt": jwt_rules(),
                    "expired_token": "${EXPIRED_JWT}",
                },
            },
            {
                "name": "mtls-me",
                "url": f"{proxy.base}/auth/me",
                "verify": ca,
                **client,
                "auth": {"login": login(f"{proxy.base}/auth/login"), "jwt": jwt_rules()},
            },
            {"name": "mtls-health", "url": f"{proxy.base}/health", "verify": ca, **client},
            {"name": "mtls-no-client-cert", "url": f"{proxy.base}/health", "verify": ca},
        ],
    }
    env = {
        "MONITOR_PASSWORD": PASSWORD,
        "JWT_SECRET": SECRET,
        "EXPIRED_JWT": good.token(exp_offset=-600),
        "GOOD_JWT": good.token(),
    }
    run = run_suite(inventory, tmp_path_factory.mktemp("httpauth"), env=env)
    run.env = env
    return run


def test_login_flow_passes(result):
    result.assert_passed(
        "test_http_login_succeeds[me]",
        "test_http_status[me]",
        "test_http_json_conditions[me]",
        "test_jwt_not_expiring[me]",
        "test_jwt_algorithm_safe[me]",
        "test_jwt_claims_as_expected[me]",
        "test_http_auth_refused[me:missing]",
        "test_http_auth_refused[me:tampered]",
        "test_http_auth_refused[me:expired]",
        "test_http_login_succeeds[form-login]",
        "test_http_status[form-login]",
        "test_http_status[env-token]",
        "test_http_json_conditions[env-token]",
    )


def test_markers(result):
    login_check = result.checks["test_http_login_succeeds[me]"]
    assert (login_check["severity"], login_check["schedule"]) == ("p1", "daily,smoke")
    assert result.checks["test_http_auth_refused[me:missing]"]["severity"] == "p0"


def test_wrong_password_fails_the_login_and_blocks_the_rest(result):
    result.assert_failed("test_http_login_succeeds[wrong-password]", "status 401, expected 200", "invalid credentials")
    result.assert_failed("test_http_status[wrong-password]", "blocked: no token:", "status 401")
    result.assert_failed("test_jwt_not_expiring[wrong-password]", "blocked: no token:")
    result.assert_passed("test_http_auth_refused[wrong-password:missing]")  # needs no token
    result.assert_failed("test_http_auth_refused[wrong-password:tampered]", "blocked: no token:")


def test_missing_token_path_fails_naming_the_keys(result):
    result.assert_failed(
        "test_http_login_succeeds[no-token-field]",
        "without a token at 'token'",
        "JSON keys: access_token, token_type",
    )


def test_wrong_key_fails_the_signature(result):
    result.assert_failed("test_jwt_algorithm_safe[wrong-key]", "the signature does not verify with the configured key")
    result.assert_passed("test_jwt_claims_as_expected[wrong-key]")


def test_weak_tokens_fail_for_each_reason(result):
    result.assert_failed("test_jwt_algorithm_safe[weak]", "the token is unsigned (alg 'none')")
    result.assert_failed("test_jwt_not_expiring[weak]", "expires in", "expected at least 10 min")
    result.assert_failed(
        "test_jwt_claims_as_expected[weak]",
        "min in the future",
        "iss is 'someone-else', expected 'awe-test'",
        "aud is 'x', expected 'awe-api'",
        "lifetime 2 min, expected 60 min",
    )


def test_a_service_that_accepts_anything_fails_the_refusals(result):
    result.assert_failed("test_http_auth_refused[weak:missing]", "without a token: status 200, expected 401")
    result.assert_failed("test_http_auth_refused[weak:tampered]", "with the token's signature broken: status 200")
    result.assert_failed("test_http_auth_refused[weak:expired]", "with an expired token: status 200")


def test_mtls_endpoint_with_and_without_its_client_certificate(result):
    result.assert_passed(
        "test_http_status[mtls-health]",
        "test_http_status[mtls-me]",
        "test_http_login_succeeds[mtls-me]",
        "test_jwt_claims_as_expected[mtls-me]",
    )
    result.assert_failed("test_http_status[mtls-no-client-cert]", "status 400", "No required SSL certificate")


def test_no_secret_or_token_in_any_report(result, apis):
    secrets = [PASSWORD, SECRET, "not-the-Pw-opscheck", WRONG_KEY, *result.env.values()]
    secrets += apis["good"].issued + apis["weak"].issued
    assert apis["good"].issued, "the good API issued tokens"
    texts = [result.output] + [p.read_text(errors="replace") for p in result.reports_dir.rglob("*") if p.is_file()]
    for secret in secrets:
        assert all(secret not in text for text in texts), "a secret or token reached a report"
