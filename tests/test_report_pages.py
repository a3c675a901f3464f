"""The morning report, as a person sees it: ten runs with changing verdicts, in a real browser.

One module-scoped scenario runs the real suite ten times into one reports directory
against a real HTTP server (whose answers change from run to run) and a real
redis-server that the API depends on (stopped after run 7):

  api          p0  ok in runs 1-7; 503 from run 8, when its Redis is down (depends_on)
  agentauri-redis  (its own checks) up in runs 1-7, refused from run 8: the likely cause
  status-page  p2  up in odd runs, 503 in even runs: flapping
  billing      p1  fails from run 4: "failing since" run 4, 7 runs in a row; depends on search
  search       p1  fails in runs 1-9 (answering 500: reachable, so not a cause), recovers in run 10
  webhooks     p0  fails in run 10 only: a new failure
  docs         p3  always 404, waived (owner and expiry on the page)

Then headless Chromium renders the last run page and the history page: screenshots, and
assertions on the rendered DOM (verdict line, severity order, the cause group, the
flapping check, the filters) with every request of the browser recorded by a proxy.
OPSCHECK_SCREENSHOTS=DIR copies the two screenshots there (the README's docs/*.png).
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from opscheck.report.history import run_dirs
from tests.conftest import IN_CI, run_suite
from tests.servers import HttpServer, RedisServer, Route
from tests.servers_browser import Chromium

# the module-scoped scenario (servers, suite runs) is timed as part of its first test
pytestmark = pytest.mark.timeout(300)

ENV = "agentauri"
RUNS = 10


def _routes(i: int) -> dict[str, Route]:
    def answer(ok: bool, bad: int = 500) -> Route:
        return Route(body={"status": "ok"}) if ok else Route(status=bad, body={"status": "degraded"})

    return {
        "/api/health": answer(i <= 7, 503),
        "/status": answer(i % 2 == 1, 503),
        "/billing/health": answer(i <= 3),
        "/search/health": answer(i == 10),
        "/webhooks/health": answer(i < 10),
        "/docs": Route(status=404, body="not found"),
    }


def _inventory(http: HttpServer, redis_port: int) -> dict:
    def endpoint(name: str, path: str, severity: str, **extra) -> dict:
        return {"name": name, "url": http.url(path), "severity": severity, "timeout": 3, **extra}

    return {
        "environment": ENV,
        "http": [
            endpoint(
                "api",
                "/api/health",
                "p0",
                json=[{"path": "status", "op": "==", "value": "ok"}],
                depends_on=["redis:agentauri-redis"],
            ),
            endpoint("status-page", "/status", "p2"),
            endpoint("billing", "/billing/health", "p1", depends_on=["http:search"]),
            endpoint("search", "/search/health", "p1"),
            endpoint("webhooks", "/webhooks/health", "p0"),
            endpoint("docs", "/docs", "p3"),
        ],
        "redis": [{"name": "agentauri-redis", "url": f"redis://127.0.0.1:{redis_port}/0", "timeout": 2}],
    }


WAIVERS = {
    "waivers": [
        {
            "check": "test_http_status",
            "target": "docs",
            "owner": "alice",
            "reason": "docs site moves to the new host, OPS-77",
            "expires": "2099-01-31",
        }
    ]
}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    reports = tmp / "reports"
    waivers = tmp / "waivers.yml"
    waivers.write_text(yaml.safe_dump(WAIVERS))
    outputs = []
    with HttpServer(_routes(1)) as http, RedisServer() as redis_server:
        inventory = _inventory(http, redis_server.port)
        for i in range(1, RUNS + 1):
            http.routes.update(_routes(i))
            if i == 8:
                redis_server.stop()
            result = run_suite(
                inventory,
                tmp / f"run{i}",
                "-m",
                "daily",
                "-k",
                "not latency",  # a loaded machine makes latency flap for real: not this scenario's subject
                f"--reports-dir={reports}",
                env={"OPSCHECK_WAIVERS": str(waivers)},
            )
            assert result.rc == 1, result.output
            outputs.append(result.output)
    env_dir = reports / ENV
    summaries = [json.loads((d / "summary.json").read_text()) for d in run_dirs(env_dir)]
    return {"reports": reports, "env_dir": env_dir, "outputs": outputs, "summaries": summaries, "tmp": tmp}


def checks(summary: dict) -> dict[str, dict]:
    return {c["id"].split("::", 1)[1]: c for c in summary["checks"]}


# --- summary.json and the terminal ----------------------------------------------------------


def test_ten_runs_are_kept_with_history_fields(scenario):
    summaries = scenario["summaries"]
    assert len(summaries) == RUNS
    last = summaries[-1]
    by_id = checks(last)
    billing = by_id["test_http_status[billing]"]
    assert billing["status"] == "failed" and billing["failing_runs"] == 7
    assert billing["failing_since"] == summaries[3]["started"]
    assert billing["failing_since_run"] == summaries[3]["run"]
    assert by_id["test_http_status[webhooks]"]["failing_runs"] == 1
    assert last["changes"]["new_failures"] == [
        "checks/test_http.py::test_http_status[status-page]",  # it flaps: red again
        "checks/test_http.py::test_http_status[webhooks]",
    ]
    assert last["changes"]["recovered"] == ["checks/test_http.py::test_http_status[search]"]
    assert by_id["test_http_status[status-page]"]["flapping"] == RUNS - 1
    assert "flapping" not in billing, "one change in ten runs is not flapping"
    docs = by_id["test_http_status[docs]"]
    assert docs["status"] == "waived" and docs["waived_by"] == "alice" and docs["waived_until"] == "2099-01-31"
    assert last["previous_run"] == summaries[-2]["run"]
    assert set(last["family_durations_s"]) == {"http", "redis"}
    assert last["failing"]["p0"] >= 3 and last["failing"]["p1"] >= 1


def test_dependents_failures_are_grouped_under_the_unreachable_dependency(scenario):
    last = scenario["summaries"][-1]
    [cause] = last["causes"]
    assert cause["target"] == "redis:agentauri-redis"
    assert cause["text"].startswith("likely caused by redis:agentauri-redis: ")
    assert "refused" in cause["text"].lower(), cause["text"]
    by_id = checks(last)
    for api_check in ("test_http_status[api]", "test_http_json_conditions[api]"):
        entry = by_id[api_check]
        assert entry["status"] == "failed", "a dependent's failure is still a failure"
        assert entry["caused_by"] == "redis:agentauri-redis"
        assert entry["id"] in cause["checks"]
    assert by_id["test_redis_ping[agentauri-redis]"]["id"] in cause["checks"]
    assert "caused_by" not in by_id["test_http_status[billing]"], "billing does not depend on Redis"
    run7 = scenario["summaries"][6]
    assert run7["causes"] == [], "while Redis answers, nothing is caused by it"
    run9 = checks(scenario["summaries"][8])
    assert run9["test_http_status[search]"]["status"] == run9["test_http_status[billing]"]["status"] == "failed"
    assert "caused_by" not in run9["test_http_status[billing]"], "a dependency that answers (500) is not a cause"


@pytest.mark.parametrize(
    ("depends_on", "fragment"),
    [
        (["redis:nope"], "http 'api': depends_on: 'nope' is not a target of the redis section"),
        (["mysql:db"], "http 'api': depends_on: 'mysql:db' names no section of the inventory"),
        (["http:api"], "http 'api': depends_on: 'http:api' is the target itself"),
        (["just-a-name"], "http[0].depends_on[0]"),
    ],
)
def test_a_dangling_dependency_stops_the_run(run_checks, depends_on, fragment):
    inventory = {
        "environment": "deps",
        "http": [{"name": "api", "url": "http://127.0.0.1:1/", "depends_on": depends_on}],
        "redis": [{"name": "queue", "url": "redis://127.0.0.1:1/0"}],
    }
    result = run_checks(inventory)
    assert result.rc == 4, result.output
    assert fragment in result.output and "Traceback" not in result.output


def test_the_terminal_says_the_verdict_and_the_urgent_failures(scenario):
    output, last = scenario["outputs"][-1], scenario["summaries"][-1]
    assert f"opscheck {ENV}: {last['verdict']}" in output
    assert re.search(r"^\d+ p0, \d+ p1, \d+ p2 failing on 5 targets$", last["verdict"]), last["verdict"]
    lines = output.splitlines()
    billing = next(x for x in lines if "test_http_status[billing]:" in x)
    assert billing.startswith("  p1 http:billing ") and "status 500" in billing and "(7 runs)" in billing
    webhooks = next(x for x in lines if "test_http_status[webhooks]:" in x)
    assert webhooks.startswith("  p0 http:webhooks ") and "new in this run" in webhooks
    api = next(x for x in lines if "test_http_status[api]:" in x)
    assert "likely caused by redis:agentauri-redis" in api
    assert "  likely caused by redis:agentauri-redis: " in output
    assert not any(x.startswith("  p2 ") or x.startswith("  p3 ") for x in lines), "p2/p3 are counted, not listed"
    assert re.search(r"and \d+ p2/p3 failures?: see the run page", output)


def test_history_and_environment_pages_are_written(scenario):
    env_dir, reports = scenario["env_dir"], scenario["reports"]
    page = (env_dir / "index.html").read_text()
    for run in scenario["summaries"]:
        assert f'href="{run["run"]}/report.html"' in page
    index = (reports / "index.html").read_text()
    assert f'href="{ENV}/index.html"' in index and scenario["summaries"][-1]["verdict"] in index


def test_pages_are_self_contained(scenario):
    """No script, style, font or image from elsewhere: every src/href is relative or a fragment."""
    for page in (scenario["env_dir"] / "latest" / "report.html", scenario["env_dir"] / "index.html"):
        text = page.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), page
        assert "@import" not in text and "url(" not in text, page


# --- in Chromium ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not shutil.which("chromium"):
        if IN_CI:
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with Chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def rendered(scenario, browser):
    env_dir = scenario["env_dir"]
    run_page = (env_dir / "latest" / "report.html").resolve()
    history_page = env_dir / "index.html"
    shots = scenario["tmp"] / "screenshots"
    shots.mkdir()
    pages = {
        "run": browser.dump_dom(run_page.as_uri()),
        "run_p0": browser.dump_dom(run_page.as_uri() + "#severity=p0"),
        "history": browser.dump_dom(history_page.as_uri()),
        "run.png": browser.screenshot(run_page.as_uri(), shots / "run-page.png", 1100, 1560),
        "history.png": browser.screenshot(history_page.as_uri(), shots / "history-page.png", 1100, 1240),
    }
    copy_to = os.environ.get("OPSCHECK_SCREENSHOTS")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        for name in ("run.png", "history.png"):
            shutil.copy(pages[name], Path(copy_to) / pages[name].name)
    pages["requests"] = list(browser.page_requests)
    return pages


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", fragment)).strip()


def test_run_page_in_chromium_shows_the_verdict_first(scenario, rendered):
    dom, last = rendered["run"], scenario["summaries"][-1]
    verdict = re.search(r'<p id="verdict"[^>]*>(.*?)</p>', dom, re.S)
    assert verdict and _text(verdict.group(1)) == last["verdict"]
    assert dom.index('id="verdict"') < dom.index('id="failures"') < dom.index('id="waived"') < dom.index('id="passes"')


def test_run_page_in_chromium_orders_failures_by_severity_and_groups_the_cause(rendered):
    dom = rendered["run"]
    failures = dom[dom.index('id="failures"') : dom.index('id="waived"')]
    cause_start = failures.index('class="cause"')
    first_severity = failures.index('class="severity"')
    assert cause_start < first_severity, "the likely cause comes first"
    cause = failures[cause_start:first_severity]
    assert "likely caused by redis:agentauri-redis:" in _text(cause)
    assert 'data-target="http:api"' in cause and 'data-target="redis:agentauri-redis"' in cause
    rest = failures[first_severity:]
    severities = re.findall(r'<li class="check failed[^"]*"[^>]*data-severity="(p\d)"', rest)
    assert severities == sorted(severities) and severities[0] == "p0" and "p2" in severities, severities
    billing = re.search(r'<li class="check failed" id="c-test-http-status-billing-".*?</li>', rest, re.S)
    assert billing, "billing is listed under its severity"
    assert "(7 runs in a row)" in _text(billing.group(0)) and "status 500" in billing.group(0)
    assert re.search(r'href="\.\./\d{8}T\d{6}Z[-\d]*/report\.html"', billing.group(0)), "links its first failing run"
    waived = dom[dom.index('id="waived"') : dom.index('id="passes"')]
    assert "waived by alice until 2099-01-31: docs site moves to the new host, OPS-77" in _text(waived)
    flapping = re.search(r'<li class="check failed" id="c-test-http-status-status-page-".*?</li>', rest, re.S)
    assert flapping and "flapping" in flapping.group(0)


def test_run_page_filters_work_in_chromium(rendered):
    """#severity=p0 (a link anyone can share) hides every other check, in the browser."""
    dom = rendered["run_p0"]
    items = re.findall(r'<li class="check [a-z ]+"[^>]*>', dom)
    assert items
    for item in items:
        hidden = " hidden" in item or 'hidden=""' in item
        assert hidden == ('data-severity="p0"' not in item), item
    shown = re.search(r'<span id="shown">(\d+) of (\d+) checks shown</span>', dom)
    assert shown and 0 < int(shown.group(1)) < int(shown.group(2))


def test_history_page_in_chromium_marks_flapping_and_changes(scenario, rendered):
    dom = rendered["history"]
    flapping = re.findall(r'<tr class="flapping" data-check="([^"]+)"', dom)
    assert flapping == ["checks/test_http.py::test_http_status[status-page]"]
    row = re.search(r'<tr class="flapping".*?</tr>', dom, re.S).group(0)
    assert row.count('class="tl failed"') == 5 and row.count('class="tl passed"') == 5
    new = dom[dom.index('id="new-failures"') :]
    assert "test_http_status[webhooks]" in new.split("</table>")[0]
    recovered = dom[dom.index('id="recovered"') :]
    assert "test_http_status[search]" in recovered.split("</table>")[0]
    assert len(re.findall(r'<tr class="run">', dom)) == RUNS
    assert len(re.findall(r'<rect class="run"', dom)) == RUNS, "one bar per kept run in the trend"
    assert "redis" in dom[dom.index('id="family-time"') :]


def test_the_pages_made_no_request(rendered):
    """Measured in Chromium's NetLog: rendering both pages requested nothing."""
    assert rendered["requests"] == []


def test_a_page_that_loads_from_elsewhere_is_caught(browser, tmp_path):
    """The control: the same measurement sees an image and a stylesheet from elsewhere, and the
    recording proxy refused them (nothing left the machine)."""
    page = tmp_path / "leaky.html"
    page.write_text(
        '<html><head><link rel="stylesheet" href="https://fonts.example.com/x.css"></head>'
        '<body><img src="http://cdn.example.com/logo.png"></body></html>'
    )
    before = len(browser.page_requests)
    browser.dump_dom(page.as_uri())
    asked = [r for _, r in browser.page_requests[before:]]
    assert sorted(asked) == ["http://cdn.example.com/logo.png", "https://fonts.example.com/x.css"]
    assert "GET http://cdn.example.com/logo.png" in browser.proxy.requests
    assert "CONNECT fonts.example.com:443" in browser.proxy.requests


def test_screenshots_are_taken(rendered):
    for name in ("run.png", "history.png"):
        data = rendered[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
