"""Cloudflare family against a loopback server answering the documented API v4 shapes
(tests/servers_cloudflare.py): a healthy Worker, a broken one, KV, R2, analytics, a
rate-limited zone, a 429 retried, a refused token that blocks, a denied bucket."""

import pytest

from tests.conftest import run_suite
from tests.servers import closed_port
from tests.servers_cloudflare import CloudflareApi

TOKEN = "cf-Token-opscheck-90210"
ACCOUNT = "0123456789abcdef0123456789abcdef"
ZONE, CALM_ZONE = "fedcba9876543210fedcba9876543210", "1234567890abcdef1234567890abcdef"
NAMESPACE, EMPTY = "a" * 32, "b" * 32
SECRET_VALUE = "never-read-Secret-31337"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with CloudflareApi(TOKEN, ACCOUNT) as api:
        deployed = [
            {
                "id": "d1",
                "created_on": "2026-11-30T10:00:00Z",
                "strategy": "percentage",
                "versions": [{"version_id": "v7", "percentage": 100}],
            }
        ]
        api.scripts["ai-worker"] = {
            "deployments": deployed,
            "bindings": [
                {"name": "API_GATEWAY_URL", "type": "plain_text", "text": "https://api.example.com"},
                {"name": "API_TOKEN", "type": "secret_text"},
                {"name": "CACHE", "type": "kv_namespace", "namespace_id": NAMESPACE},
                {"name": "VIDEOS", "type": "r2_bucket", "bucket_name": "ai-platform-videos"},
            ],
        }
        api.scripts["half-deployed"] = {
            "deployments": [
                {
                    "id": "d2",
                    "created_on": "2026-11-30T11:00:00Z",
                    "strategy": "percentage",
                    "versions": [{"version_id": "v8", "percentage": 50}],
                }
            ],
            "bindings": [{"name": "API_GATEWAY_URL", "type": "plain_text", "text": "http://localhost:8000"}],
        }
        api.kv = {NAMESPACE: 12, EMPTY: 0}
        api.r2 = {"ai-platform-videos"}
        api.denied_r2 = {"private-exports"}
        api.analytics = {
            "ai-worker": {
                "sum": {"requests": 10_000, "errors": 12, "subrequests": 900},
                "quantiles": {"cpuTimeP50": 1800.0, "cpuTimeP99": 21_000.0},
            },
            "half-deployed": {
                "sum": {"requests": 2_000, "errors": 300, "subrequests": 0},
                "quantiles": {"cpuTimeP50": 9_000.0, "cpuTimeP99": 180_000.0},
            },
        }
        api.zones = {ZONE: (50_000, 2_500), CALM_ZONE: (50_000, 10)}
        api.rate_limited[f"/accounts/{ACCOUNT}/r2/buckets/ai-platform-videos"] = 2
        base = {"account_id": ACCOUNT, "api_token": "${CLOUDFLARE_API_TOKEN}", "api_url": api.url}
        inventory = {
            "environment": "selftest-cloudflare",
            "cloudflare": [
                {
                    **base,
                    "name": "prod",
                    "zone_id": CALM_ZONE,
                    "workers": [
                        {
                            "script": "ai-worker",
                            "bindings": ["API_TOKEN", "CACHE", "VIDEOS"],
                            "binding_types": {"CACHE": "kv_namespace"},
                            "vars": {"API_GATEWAY_URL": "https://api.example.com"},
                        }
                    ],
                    "kv_namespaces": [{"id": NAMESPACE, "min_keys": 1}],
                    "r2_buckets": ["ai-platform-videos"],
                },
                {
                    **base,
                    "name": "broken",
                    "zone_id": ZONE,
                    "workers": [
                        {
                            "script": "half-deployed",
                            "bindings": ["API_TOKEN"],
                            "vars": {"API_GATEWAY_URL": "https://api.example.com"},
                        },
                        {"script": "missing"},
                    ],
                    "kv_namespaces": [{"id": EMPTY, "min_keys": 1}],
                    "r2_buckets": ["no-such-bucket", "private-exports"],
                },
                {
                    **base,
                    "name": "bad-token",
                    "api_token": "${CLOUDFLARE_BAD_TOKEN}",
                    "workers": [{"script": "ai-worker"}],
                    "r2_buckets": ["ai-platform-videos"],
                },
                {
                    **base,
                    "name": "down",
                    "api_url": f"http://127.0.0.1:{closed_port()}/client/v4",
                    "timeout": 1,
                    "workers": [{"script": "ai-worker"}],
                    "kv_namespaces": [{"id": NAMESPACE}],
                },
            ],
        }
        env = {"CLOUDFLARE_API_TOKEN": TOKEN, "CLOUDFLARE_BAD_TOKEN": "cf-Revoked-Token-4040"}
        found = run_suite(inventory, tmp_path_factory.mktemp("cloudflare"), env=env)
        yield found, api


def test_healthy_account_passes(result):
    result, _ = result
    result.assert_passed(
        "test_cloudflare_worker_deployed[prod:ai-worker]",
        "test_cloudflare_worker_bindings_as_expected[prod:ai-worker]",
        "test_cloudflare_kv_namespace_reachable[prod:" + NAMESPACE + "]",
        "test_cloudflare_r2_bucket_reachable[prod:ai-platform-videos]",
        "test_cloudflare_worker_errors_below_limit[prod:ai-worker]",
        "test_cloudflare_worker_cpu_below_limit[prod:ai-worker]",
        "test_cloudflare_rate_limited_below_limit[prod]",
    )


def test_broken_worker_fails(result):
    result, _ = result
    result.assert_failed("test_cloudflare_worker_deployed[broken:half-deployed]", "routes 50% of traffic")
    result.assert_failed("test_cloudflare_worker_deployed[broken:missing]", "no such script (HTTP 404)")
    message = result.assert_failed(
        "test_cloudflare_worker_bindings_as_expected[broken:half-deployed]",
        "API_TOKEN missing",
        "variable API_GATEWAY_URL = 'http://localhost:8000', expected 'https://api.example.com'",
    )
    assert SECRET_VALUE not in message
    result.assert_failed(
        "test_cloudflare_worker_errors_below_limit[broken:half-deployed]",
        "300 errors of 2,000 requests",
        "15.00% > limit 1%",
    )
    result.assert_failed(
        "test_cloudflare_worker_cpu_below_limit[broken:half-deployed]", "cpuTimeP99 180.0 ms", "> limit 50 ms"
    )
    result.assert_passed("test_cloudflare_worker_errors_below_limit[broken:missing]")  # no traffic: 0 of 0


def test_storage_and_zone_fail(result):
    result, api = result
    result.assert_failed("test_cloudflare_kv_namespace_reachable[broken:" + EMPTY + "]", "lists 0 keys < expected 1")
    result.assert_failed("test_cloudflare_r2_bucket_reachable[broken:no-such-bucket]", "does not exist (HTTP 404)")
    result.assert_failed(
        "test_cloudflare_r2_bucket_reachable[broken:private-exports]", "is denied (HTTP 403", "[10000]"
    )
    result.assert_failed(
        "test_cloudflare_rate_limited_below_limit[broken]", "2,500 of 50,000 requests answered 429", "5.00% > limit 1%"
    )
    # the 429s were retried after Retry-After: the bucket check passed, after three requests
    assert api.calls[f"GET /accounts/{ACCOUNT}/r2/buckets/ai-platform-videos"] >= 3


def test_refused_token_fails_first_then_blocks(result):
    result, _ = result
    first = result.assert_failed(
        "test_cloudflare_worker_deployed[bad-token:ai-worker]",
        "the API token was refused (HTTP 401",
        "Invalid API Token",
    )
    assert not first.startswith("blocked")
    result.assert_failed("test_cloudflare_r2_bucket_reachable[bad-token:ai-platform-videos]", "blocked: ", "refused")
    assert "cf-Revoked-Token-4040" not in result.output and TOKEN not in result.output


def test_unreachable_api_fails_once_then_blocks(result):
    result, _ = result
    first = result.assert_failed("test_cloudflare_worker_deployed[down:ai-worker]", "cannot reach the API")
    assert not first.startswith("blocked")
    result.assert_failed("test_cloudflare_kv_namespace_reachable[down:" + NAMESPACE + "]", "blocked: ")


def test_analytics_are_one_query_per_window(result):
    _, api = result
    # prod and broken: one for their scripts (both of broken's in one), one for the zone; bad-token's refused
    assert api.calls["POST /graphql"] == 4
    assert api.refused >= 1


def test_bad_cloudflare_section_is_refused_where_declared(run_checks):
    bad = (
        "environment: selftest-cloudflare-bad\n"
        "cloudflare:\n"
        "  - name: cf\n"
        "    account_id: not-an-account\n"
        "    api_token: cf-Literal-Token-77\n"
        "    workers: [{script: 'bad name'}]\n"
    )
    result = run_checks(bad)
    assert result.rc == 4, result.output
    assert "inventory.yml:4: cloudflare[0].account_id" in result.output
    assert "cloudflare[0].workers[0].script" in result.output
    assert "cf-Literal-Token-77" not in result.output and "Traceback" not in result.output


def test_aiplatform_inventory_covers_every_cloud_catalog_entry():
    """Every aiplat-cloud-* catalog entry is named where the AI Platform inventory checks it."""
    import yaml

    from tests.conftest import REPO

    catalog = REPO.parent / "shared" / "catalog" / "seed-checks.yaml"
    if not catalog.exists():
        pytest.skip("the shared catalog is not beside this checkout")
    ids = [e["id"] for e in yaml.safe_load(catalog.read_text())["checks"] if e["id"].startswith("aiplat-cloud-")]
    assert len(ids) == 6
    text = (REPO / "inventories" / "aiplatform.yml").read_text()
    assert [i for i in ids if i not in text] == []
