"""http checks: status, latency, JSON body and headers of each endpoint in the inventory,
and, for an endpoint with a `security:` block, its security headers, HTTPS redirect,
rate-limit headers and API keys; for one with an `auth:` block, its login, its JWT's
claims and the requests it must refuse.

Each endpoint is fetched once per run (fixtures/http.py); every check judges that one
answer. Severity and schedule come from the inventory entry, since a health endpoint
gating a deploy (p0, smoke) and a metrics page (p2, daily) differ. The redirect and
API-key checks make their own GET each. An API key is never shown: not in messages, not
in reports.
"""

import re
from datetime import UTC, datetime

import jmespath
import pytest

from opscheck.core.checking import expect, fmt, holds
from opscheck.core.redact import clip, mask_url
from opscheck.core.web import get_status

pytestmark = [pytest.mark.http]


@pytest.mark.runbook(
    "The endpoint does not answer with the expected status. 5xx: the service or a dependency "
    "is failing (look at its logs and the `.checks` of its health JSON); 502/504: the proxy "
    "cannot reach the app; 401/403: credentials or routing changed."
)
def test_http_status(http_endpoint, http):
    answer = http.answer()
    expect(
        answer.status in http_endpoint.expect_status,
        f'http "{http_endpoint.name}" {http_endpoint.method} {mask_url(answer.url)}: status {answer.status}, '
        f"expected {' or '.join(map(str, http_endpoint.expect_status))}; body: {clip(answer.text, 200)!r}",
    )


@pytest.mark.runbook(
    "The endpoint answers slower than its limit (runbook: 'API response time >5 seconds'). "
    "Likely causes: database slow queries or exhausted connections, Redis latency, CPU "
    "saturation. Look at the service's latency metrics and its database."
)
def test_http_latency_below_limit(http_endpoint, http):
    answer = http.answer()
    expect(
        answer.latency_ms < http_endpoint.max_latency_ms,
        f'http "{http_endpoint.name}" {mask_url(answer.url)}: answered in {fmt(answer.latency_ms)} ms '
        f">= limit {fmt(http_endpoint.max_latency_ms)} ms",
    )


@pytest.mark.runbook(
    "The body does not say what a healthy service says (e.g. `.checks.database` is not "
    '"ok"). The failing field names the dependency to look at first.'
)
def test_http_json_conditions(http_json_endpoint, http):
    endpoint, answer = http_json_endpoint, http.answer()
    body = answer.json()
    failed = []
    for cond in endpoint.json_body:
        actual = jmespath.search(cond.path, body)
        if not holds(actual, cond.op, cond.value):
            expected = "" if cond.op == "exists" else f" {cond.value!r}"
            failed.append(f"{cond.path} is {actual!r}, expected {cond.op}{expected}")
    expect(not failed, f'http "{endpoint.name}" {mask_url(answer.url)}: ' + "; ".join(failed))


@pytest.mark.runbook(
    "A response header the service must send is missing or wrong (a proxy or framework "
    "change dropped it). Look at the proxy's and the app's header configuration."
)
def test_http_response_headers(http_header_endpoint, http):
    endpoint, answer = http_header_endpoint, http.answer()
    headers = {k.lower(): v for k, v in answer.headers.items()}
    failed = []
    for name, pattern in endpoint.response_headers.items():
        value = headers.get(name.lower())
        if value is None:
            failed.append(f"{name} is missing")
        elif pattern is not None and not re.search(pattern, value):
            failed.append(f"{name}: {value!r} does not match {pattern!r}")
    expect(not failed, f'http "{endpoint.name}" {mask_url(answer.url)}: ' + "; ".join(failed))


# --- security: headers, HTTPS redirect, rate limits, API keys (a `security:` block) -------

HEADERS_HINT = (
    "Security headers are missing (runbook: 'Security headers missing (grade < A)', "
    "`curl -I https://api.agentauri.ai/api/v1/health | grep Strict-Transport-Security`). "
    "Enable them in the app (ENABLE_HSTS=true) or the proxy (nginx `add_header ... always;`)."
)


def _headers(http) -> dict[str, str]:
    return {k.lower(): v for k, v in http.answer().headers.items()}


def _shown(endpoint, http) -> str:
    return f'http "{endpoint.name}" {mask_url(http.url)}'


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(HEADERS_HINT)
@pytest.mark.security
def test_hsts_header(http_hsts, http):
    security = http_hsts.security
    value = _headers(http).get("strict-transport-security")
    expect(value is not None, f"{_shown(http_hsts, http)}: no Strict-Transport-Security header")
    match = re.search(r"max-age\s*=\s*\"?(\d+)", value, re.I)
    age = int(match.group(1)) if match else None
    problems = []
    if age is None or age < security.hsts_min_max_age:
        problems.append(f"max-age {age} < {security.hsts_min_max_age:,} s")
    if security.hsts_include_subdomains and "includesubdomains" not in value.lower():
        problems.append("includeSubDomains missing")
    expect(not problems, f"{_shown(http_hsts, http)}: Strict-Transport-Security {value!r}: " + "; ".join(problems))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(HEADERS_HINT)
@pytest.mark.security
def test_security_headers_present(http_security, http):
    security, headers = http_security.security, _headers(http)
    problems = []
    if security.nosniff and headers.get("x-content-type-options", "").strip().lower() != "nosniff":
        problems.append(f"X-Content-Type-Options is {headers.get('x-content-type-options')!r}, expected 'nosniff'")
    csp = headers.get("content-security-policy")
    if security.csp and not csp:
        problems.append("no Content-Security-Policy")
    if security.frame_policy and not headers.get("x-frame-options") and "frame-ancestors" not in (csp or ""):
        problems.append("no frame policy (X-Frame-Options or CSP frame-ancestors)")
    expect(not problems, f"{_shown(http_security, http)}: " + "; ".join(problems))


@pytest.mark.p3
@pytest.mark.daily
@pytest.mark.runbook(
    "The answer tells attackers what runs behind it (X-Powered-By, a Server header with a "
    "version). Turn it off: nginx `server_tokens off;`, Express `app.disable('x-powered-by')`."
)
@pytest.mark.security
def test_no_revealing_headers(http_security, http):
    security, headers = http_security.security, _headers(http)
    problems = [
        f"{name}: {headers[name.lower()]!r} (must be absent)"
        for name in security.absent_headers
        if name.lower() in headers
    ]
    server = headers.get("server", "")
    if security.server_version_hidden and re.search(r"\d+\.\d+", server):
        problems.append(f"Server: {server!r} reveals a version")
    expect(not problems, f"{_shown(http_security, http)}: " + "; ".join(problems))


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "Plain HTTP does not redirect to HTTPS (runbook: 'HTTPS redirects failing'). Look at the "
    "ingress/proxy redirect rule (nginx `return 301 https://$host$request_uri;`, ingress "
    "`ssl-redirect`)."
)
@pytest.mark.security
def test_http_redirects_to_https(http_redirect, inventory):
    source = http_redirect.security.https_redirect_from
    status, headers = get_status(
        source, inventory.timeout(http_redirect), verify=http_redirect.verify, cert=http_redirect.cert
    )
    location = {k.lower(): v for k, v in headers.items()}.get("location", "")
    expect(
        status in (301, 302, 303, 307, 308) and location.lower().startswith("https://"),
        f'http "{http_redirect.name}" {mask_url(source)}: answered {status} with Location {mask_url(location)!r}, '
        "expected a redirect to https://",
    )


@pytest.mark.p3
@pytest.mark.daily
@pytest.mark.runbook(
    "Rate-limit headers are missing (runbook: `X-RateLimit-Remaining`, `X-RateLimit-Reset`): "
    "the rate limiter is off or bypassed. Look at the gateway's rate-limit middleware."
)
@pytest.mark.security
def test_rate_limit_headers_present(http_rate_limit, http):
    headers = _headers(http)
    missing = [h for h in http_rate_limit.security.rate_limit_headers if h.lower() not in headers]
    expect(not missing, f"{_shown(http_rate_limit, http)}: missing {', '.join(missing)}")


def _key_request(endpoint, inventory, key: str | None):
    api = endpoint.security.api_key
    headers = {k: v.get_secret_value() for k, v in endpoint.headers.items() if k.lower() != api.header.lower()}
    if key is not None:
        headers[api.header] = f"{api.scheme} {key}" if api.scheme else key
    url = api.url or endpoint.url
    status, _ = get_status(
        url, inventory.timeout(endpoint), verify=endpoint.verify, headers=headers, cert=endpoint.cert
    )
    return url, status


API_KEY_HINT = (
    "API key authentication does not behave (runbook: 'API Key authentication fails', "
    '"Invalid or expired API key"). Look at the key in api_keys (`SELECT key_prefix, is_active, '
    "expires_at, revoked_at FROM api_keys WHERE key_prefix = ...`) and the gateway's auth logs."
)


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(API_KEY_HINT)
@pytest.mark.security
def test_api_key_accepted(http_api_key, inventory):
    url, status = _key_request(http_api_key, inventory, http_api_key.security.api_key.key.get_secret_value())
    expect(
        200 <= status < 300,
        f'http "{http_api_key.name}" {mask_url(url)}: with the API key: status {status}, expected 2xx',
    )


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "The API answers WITHOUT an API key: authentication is off or bypassed on this route. "
    "Treat it as a security incident; look at the gateway's auth middleware and routes."
)
@pytest.mark.security
def test_api_key_required(http_api_key, inventory):
    api = http_api_key.security.api_key
    url, status = _key_request(http_api_key, inventory, None)
    expect(
        status in api.refused_status,
        f'http "{http_api_key.name}" {mask_url(url)}: without an API key: status {status}, '
        f"expected {' or '.join(map(str, api.refused_status))}",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A revoked API key is still accepted: revocation does not reach the gateway (cache, "
    "replica lag) or the key check ignores revoked_at. " + API_KEY_HINT
)
@pytest.mark.security
def test_revoked_api_key_refused(http_revoked_key, inventory):
    api = http_revoked_key.security.api_key
    url, status = _key_request(http_revoked_key, inventory, api.revoked_key.get_secret_value())
    expect(
        status in api.refused_status,
        f'http "{http_revoked_key.name}" {mask_url(url)}: with the revoked API key: status {status}, '
        f"expected {' or '.join(map(str, api.refused_status))}",
    )


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.runbook("The API key has the wrong format (runbook: 'Must be: sk_live_* or sk_test_*'). " + API_KEY_HINT)
@pytest.mark.security
def test_api_key_format(http_api_key):
    api = http_api_key.security.api_key
    key = api.key.get_secret_value()
    prefix = re.match(r"^[a-z]{1,4}_[a-z]{1,6}_", key)  # sk_live_: the only part ever shown
    start = f"starting {prefix.group(0)!r}" if prefix else "without an sk_<mode>_ prefix"
    expect(
        re.search(api.format, key) is not None,
        f'http "{http_api_key.name}": the API key ({len(key)} characters, {start}) does not match {api.format!r}',
    )


# --- auth flows: login, JWT claims, refusals (an `auth:` block) ------------------------------

AUTH_HINT = (
    "Authentication does not behave (runbooks: '401 Unauthorized | JWT token expired | Check "
    "token generation'; AWE 'Login Failures'). Look at the auth service's logs "
    "(`docker-compose logs api | grep auth`), the monitoring account, the JWT secret and the "
    "clock of the issuing host. The token is never shown; decode one by hand with a JWT tool."
)


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "The login for the monitoring account fails or is slow (runbook: `curl -X POST .../auth/login`, "
    "verified against the CA, never -k). Wrong or expired credentials, a locked account, or the "
    "auth service's database. " + AUTH_HINT
)
@pytest.mark.security
def test_http_login_succeeds(http_login, http):
    answer = http.login()
    expect(answer.token is not None, f"{http.shown}: {answer.problem}")
    limit = http_login.auth.login.max_latency_ms
    expect(
        answer.latency_ms < limit,
        f"{http.shown}: login {answer.url} answered in {fmt(answer.latency_ms)} ms >= limit {fmt(limit)} ms",
    )


def _now() -> float:
    return datetime.now(UTC).timestamp()


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The token expires too soon or has expired (runbook: '401 Unauthorized | JWT token expired'): "
    "sessions end before their time, clients get 401. Look at the issuer's token lifetime "
    "setting and the clock of the issuing host (`timedatectl`). " + AUTH_HINT
)
@pytest.mark.security
def test_jwt_not_expiring(http_jwt, http):
    _, claims = http.jwt_parts()
    limit = http_jwt.auth.jwt.min_remaining_minutes
    exp = claims.get("exp")
    expect(isinstance(exp, int | float), f"{http.shown}: the token has no numeric exp claim: it never expires")
    left = (exp - _now()) / 60
    expect(
        left >= limit,
        f"{http.shown}: the token "
        + (f"expired {fmt(-left)} min ago" if left < 0 else f"expires in {fmt(left)} min")
        + f" (exp {_when(exp)}), expected at least {fmt(limit)} min",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The token's signature is unsafe: alg 'none' (unsigned: anyone can forge a token), an "
    "algorithm the service should not issue, or a signature that the configured key does not "
    "verify (a rotated or leaked secret). Treat 'none' as a security incident. " + AUTH_HINT
)
@pytest.mark.security
def test_jwt_algorithm_safe(http_jwt, http):
    header, _ = http.jwt_parts()
    expected, alg = http_jwt.auth.jwt, header.get("alg")
    expect(str(alg).lower() != "none", f"{http.shown}: the token is unsigned (alg {alg!r}): anyone can forge one")
    expect(
        not expected.algorithms or alg in expected.algorithms,
        f"{http.shown}: the token is signed with alg {alg!r}, expected {' or '.join(expected.algorithms or [])}",
    )
    if expected.key is not None:
        problem = http.signature_problem()
        expect(problem is None, f"{http.shown}: {problem} (alg {alg!r})")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The token's claims are not what the service should issue: iat in the future (the issuer's "
    "clock is ahead), the wrong issuer or audience (a token from another environment), or a "
    "lifetime other than the configured one. " + AUTH_HINT
)
@pytest.mark.security
def test_jwt_claims_as_expected(http_jwt, http):
    _, claims = http.jwt_parts()
    expected, now = http_jwt.auth.jwt, _now()
    problems = []
    iat, exp = claims.get("iat"), claims.get("exp")
    if isinstance(iat, int | float) and iat > now + expected.leeway_s:
        problems.append(f"iat {_when(iat)} is {fmt((iat - now) / 60)} min in the future")
    if expected.issuer is not None and claims.get("iss") != expected.issuer:
        problems.append(f"iss is {claims.get('iss')!r}, expected {expected.issuer!r}")
    if expected.audience is not None:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if expected.audience not in audiences:
            problems.append(f"aud is {aud!r}, expected {expected.audience!r}")
    numeric = isinstance(iat, int | float) and isinstance(exp, int | float)
    if (expected.max_lifetime_hours or expected.lifetime_minutes) and not numeric:
        problems.append("no numeric iat and exp: the lifetime cannot be judged")
    elif numeric:
        lifetime_min = (exp - iat) / 60
        if expected.max_lifetime_hours and lifetime_min > expected.max_lifetime_hours * 60:
            problems.append(f"lifetime {fmt(lifetime_min / 60)} h > {fmt(expected.max_lifetime_hours)} h")
        if expected.lifetime_minutes and abs(lifetime_min - expected.lifetime_minutes) > 1:
            problems.append(f"lifetime {fmt(lifetime_min)} min, expected {fmt(expected.lifetime_minutes)} min")
    expect(not problems, f"{http.shown}: token claims: " + "; ".join(problems))


REFUSAL_SHOWN = {
    "missing": "without a token",
    "tampered": "with the token's signature broken",
    "expired": "with an expired token",
}


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "The endpoint answers a request it must refuse: no token, a token with a broken signature "
    "(the service does not verify signatures), or an expired token (it does not check exp). "
    "Anyone can call it: treat it as a security incident; look at the auth middleware of this "
    "route and the JWT library's verification settings."
)
@pytest.mark.security
def test_http_auth_refused(http_auth_refusal, http):
    endpoint, kind = http_auth_refusal.target, http_auth_refusal.value
    status = http.refused(kind)
    refused = endpoint.auth.refused_status
    expect(
        status in refused,
        f"{http.shown}: {REFUSAL_SHOWN[kind]}: status {status}, expected {' or '.join(map(str, refused))}",
    )
