"""Cloudflare, read-only: Workers deployed with their bindings (names only), KV namespaces
and R2 buckets reachable, Workers analytics (errors, CPU) and zone rate limiting in a window.

Each check judges what its account's client read once per run (REST GETs and GraphQL
analytics reads); the token permissions these need are in the README.
"""

import pytest

from opscheck.core.checking import expect, fmt, listed, pct
from opscheck.families.cloudflare import NotFound

pytestmark = [pytest.mark.cloud]

WORKER_WHERE = (
    "Look next: the Cloudflare dashboard, Workers & Pages > SCRIPT (Deployments, Settings > "
    "Variables and Secrets, Metrics), or `wrangler deployments list --name SCRIPT` and "
    "`wrangler tail SCRIPT` (runbook)."
)


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The Worker is not deployed: the script is missing, or has no active deployment that routes "
    "all traffic to a version (runbook: 'Worker Not Responding', 522 / failing requests). "
    "Redeploy with `wrangler deploy --env production` once the cause is known. " + WORKER_WHERE
)
def test_cloudflare_worker_deployed(cloudflare_worker, cf):
    worker = cloudflare_worker.value
    where = f"{cf.shown}: Worker {worker.script}"
    try:
        deployments = cf.deployments(worker.script)
    except NotFound:
        expect(False, f"{where}: no such script (HTTP 404): it is not deployed in this account")
    expect(bool(deployments), f"{where}: the script has no deployment")
    newest = max(deployments, key=lambda d: d.get("created_on", ""))
    share = sum(float(v.get("percentage", 0)) for v in newest.get("versions", []))
    expect(
        share >= 100,
        f"{where}: the newest deployment {newest.get('id', '?')} ({newest.get('created_on', '?')}) routes "
        f"{share:g}% of traffic to versions, not 100%",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The Worker's bindings are not what the inventory expects (runbook: 'Check environment "
    "variables: Verify API_GATEWAY_URL and tokens', 'Validate KV/R2 access'): a secret, KV "
    "namespace or R2 bucket binding is missing, or a variable points elsewhere. Secrets are "
    "compared by name only. `wrangler secret list --env production`; " + WORKER_WHERE
)
def test_cloudflare_worker_bindings_as_expected(cloudflare_worker_bindings, cf):
    worker = cloudflare_worker_bindings.value
    bindings = {b.get("name"): b for b in cf.settings(worker.script).get("bindings") or []}
    problems = [f"{name} missing" for name in worker.bindings if name not in bindings]
    problems += [
        f"{name} is {bindings[name].get('type')}, expected {kind}" if name in bindings else f"{name} missing"
        for name, kind in worker.binding_types.items()
        if bindings.get(name, {}).get("type") != kind
    ]
    for name, value in worker.vars.items():
        found = bindings.get(name)
        if found is None:
            problems.append(f"variable {name} missing")
        elif found.get("type") != "plain_text":
            problems.append(f"{name} is a {found.get('type')} binding, expected a plain_text variable")
        elif found.get("text") != value:
            problems.append(f"variable {name} = {found.get('text')!r}, expected {value!r}")
    expect(
        not problems,
        f"{cf.shown}: Worker {worker.script}: {listed(sorted(set(problems)))} "
        f"(bound: {', '.join(sorted(str(n) for n in bindings)) or 'nothing'})",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The KV namespace cannot be listed (deleted, wrong id, or the token lacks Workers KV "
    "Storage Read), or holds fewer keys than expected. `wrangler kv key list --namespace-id ID "
    "--remote` (the runbook's `kv:key` syntax is gone in wrangler v4, and without --remote it "
    "reads a local simulator); dashboard: Storage & Databases > KV."
)
def test_cloudflare_kv_namespace_reachable(cloudflare_kv, cf):
    namespace = cloudflare_kv.value
    keys, more = cf.kv_keys(namespace.id)
    shown = f"{fmt(keys)}{'+' if more else ''}"
    expect(
        keys >= namespace.min_keys or more,
        f"{cf.shown}: KV namespace {namespace.id} lists {shown} keys < expected {fmt(namespace.min_keys)}",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The R2 bucket is missing or the token may not read it (runbook: `wrangler r2 object list "
    "BUCKET`, which does not exist in wrangler: use `wrangler r2 bucket info BUCKET`); dashboard: "
    "R2 Object Storage > BUCKET."
)
def test_cloudflare_r2_bucket_reachable(cloudflare_r2, cf):
    bucket = cloudflare_r2.value
    try:
        found = cf.r2_bucket(bucket)
    except NotFound:
        expect(False, f"{cf.shown}: R2 bucket {bucket} does not exist (HTTP 404)")
    expect(found.get("name") == bucket, f"{cf.shown}: R2 bucket {bucket}: the API answered for {found.get('name')}")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.logs
@pytest.mark.runbook(
    "The Worker throws or fails on too many requests (runbook: 'Worker requests failing'; "
    "`wrangler tail` shows them live, but opens a tail session, so this check reads the Workers "
    "analytics instead). Look at the exceptions in `wrangler tail SCRIPT --format=json` and "
    "recent deploys. " + WORKER_WHERE
)
def test_cloudflare_worker_errors_below_limit(cloudflare_worker_analytics, cf):
    worker = cloudflare_worker_analytics.value
    sums = cf.worker_analytics(worker).get("sum") or {}
    requests, errors = int(sums.get("requests") or 0), int(sums.get("errors") or 0)
    ratio = pct(errors, requests)
    expect(
        ratio <= worker.errors_max_pct,
        f"{cf.shown}: Worker {worker.script}: {fmt(errors)} errors of {fmt(requests)} requests in the last "
        f"{worker.window} = {ratio:.2f}% > limit {worker.errors_max_pct:g}%",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.monitoring
@pytest.mark.runbook(
    "The Worker spends too much CPU per request (runbook: 'Slow Worker Performance', response "
    "times > 2 s, high CPU time): large bundles, heavy parsing, unbatched KV calls. Workers "
    "analytics: dashboard Workers & Pages > SCRIPT > Metrics (CPU time). The runbook's "
    "`wrangler tail | jq .cpuTime` has no such field."
)
def test_cloudflare_worker_cpu_below_limit(cloudflare_worker_analytics, cf):
    worker = cloudflare_worker_analytics.value
    analytics = cf.worker_analytics(worker)
    requests = int((analytics.get("sum") or {}).get("requests") or 0)
    if not requests:
        return  # no traffic in the window: no CPU time to judge (the errors check says 0 requests)
    micros = float((analytics.get("quantiles") or {}).get(worker.cpu_quantile) or 0)
    expect(
        micros / 1000 <= worker.cpu_max_ms,
        f"{cf.shown}: Worker {worker.script}: {worker.cpu_quantile} {micros / 1000:.1f} ms over {fmt(requests)} "
        f"requests in the last {worker.window} > limit {worker.cpu_max_ms:g} ms",
    )


@pytest.mark.p3
@pytest.mark.weekly
@pytest.mark.http
@pytest.mark.runbook(
    "Too many requests to the zone are answered 429 by rate limiting (runbook: 'Check rate "
    "limits: Monitor Cloudflare dashboard'): a rule too tight for real traffic, or abuse. "
    "Dashboard: the zone's Security > Events (rate limiting rules) and Analytics > Traffic."
)
def test_cloudflare_rate_limited_below_limit(cloudflare_zone, cf):
    total, limited = cf.zone_requests()
    ratio = pct(limited, total)
    expect(
        ratio <= cloudflare_zone.rate_limited_max_pct,
        f"{cf.shown}: zone {cloudflare_zone.zone_id}: {fmt(limited)} of {fmt(total)} requests answered 429 in the "
        f"last {cloudflare_zone.rate_window} = {ratio:.2f}% > limit {cloudflare_zone.rate_limited_max_pct:g}%",
    )
