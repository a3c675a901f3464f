"""HTTP family: status, latency, JSON body and headers of each endpoint in the inventory.

Each endpoint is fetched once per run (fixtures/http.py); every check judges that one
answer. Severity and schedule come from the inventory entry, since a health endpoint
gating a deploy (p0, smoke) and a metrics page (p2, daily) differ.
"""

import re

import jmespath
import pytest

from fixtures.checking import expect, fmt, holds

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
        f'http "{http_endpoint.name}" {http_endpoint.method} {answer.url}: status {answer.status}, '
        f"expected {' or '.join(map(str, http_endpoint.expect_status))}; body: {answer.text[:200]!r}",
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
        f'http "{http_endpoint.name}" {answer.url}: answered in {fmt(answer.latency_ms)} ms '
        f">= limit {fmt(http_endpoint.max_latency_ms)} ms",
    )


@pytest.mark.runbook(
    "The body does not say what a healthy service says (e.g. `.checks.database` is not "
    "\"ok\"). The failing field names the dependency to look at first."
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
    expect(not failed, f'http "{endpoint.name}" {answer.url}: ' + "; ".join(failed))


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
    expect(not failed, f'http "{endpoint.name}" {answer.url}: ' + "; ".join(failed))
