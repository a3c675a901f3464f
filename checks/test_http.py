"""http checks: status, latency, JSON body and headers of each endpoint in the inventory,
and, for an endpoint with a `security:` block, its security headers, HTTPS redirect,
rate-limit headers and API keys.

Each endpoint is fetched once per run (fixtures/http.py); every check judges that one
answer. Severity and schedule come from the inventory entry, since a health endpoint
gating a deploy (p0, smoke) and a metrics page (p2, daily) differ. The redirect and
API-key checks make their own GET each. An API key is never shown: not in messages, not
in reports.
"""

import re

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
    status, headers = get_status(source, inventory.timeout(http_redirect), verify=http_redirect.verify)
    location = {k.lower(): v for k, v in headers.items()}.get("location", "")
    expect(
        status in (301, 302, 303, 307, 308) and location.lower().startswith("https://"),
        f'http "{http_redirect.name}" {mask_url(source)}: answered {status} with Location {location!r}, '
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
    status, _ = get_status(url, inventory.timeout(endpoint), verify=endpoint.verify, headers=headers)
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
