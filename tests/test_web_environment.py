"""The environment's proxy and CA settings, read once at the run's start (core/web.py).

requests reads them from os.environ on every request, walking it; pytest sets and deletes
PYTEST_CURRENT_TEST for every check, and a key deleted during the walk raises KeyError in
whichever gather thread was walking (a healthy check failed in CI that way). opscheck's
sessions take them from one snapshot instead, and still honour *_proxy and no_proxy.
"""

import os
import sys
import threading
import time
import urllib.request

import pytest

from opscheck.core import web
from opscheck.core.cache import Memo
from opscheck.core.errors import OpscheckError
from tests.servers import HttpServer, Route

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture
def clean_proxies():
    saved = {name: os.environ.pop(name) for name in PROXY_VARS if name in os.environ}
    try:
        yield
    finally:
        for name in PROXY_VARS:
            os.environ.pop(name, None)
        os.environ.update(saved)
        web.read_environment()


class Churn:
    """Sets and deletes a variable in a loop, as pytest does with PYTEST_CURRENT_TEST."""

    def __enter__(self):
        self.stop = threading.Event()
        self.switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads often: the race shows within seconds
        self.padding = [f"OPSCHECK_SELFTEST_PAD_{i}" for i in range(100)]  # a long walk, as on a CI runner
        os.environ.update(dict.fromkeys(self.padding, "x"))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            os.environ["OPSCHECK_SELFTEST_CHURN"] = "x"
            os.environ.pop("OPSCHECK_SELFTEST_CHURN")
            time.sleep(0.0001)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        sys.setswitchinterval(self.switch)
        for name in self.padding:
            os.environ.pop(name, None)


def test_sessions_never_walk_the_environment_while_checks_run(clean_proxies):
    web.read_environment()
    with Churn():
        # the race is real: walking os.environ meets a deleted key
        deadline, raced = time.monotonic() + 20, False
        while not raced and time.monotonic() < deadline:
            try:
                urllib.request.getproxies_environment()
            except KeyError:
                raced = True
        assert raced, "walking os.environ never met the deleted key: this test cannot see the race"
        with HttpServer({"/ok": Route(body="ok")}) as server:
            session, answered = web.new_session(), 0
            started = time.monotonic()
            while time.monotonic() - started < 3:
                assert session.get(server.url("/ok"), timeout=5).text == "ok"  # a KeyError fails here
                answered += 1
    assert answered > 100, answered


def test_proxies_and_no_proxy_from_the_environment_are_honoured(clean_proxies):
    with HttpServer({"/ok": Route(body="direct")}) as origin:
        direct_url = origin.url("/ok")
        with HttpServer({direct_url: Route(body="via proxy")}) as proxy:  # a proxy gets the absolute URL
            os.environ["http_proxy"] = proxy.url("").rstrip("/")
            web.read_environment()
            assert web.new_session().get(direct_url, timeout=5).text == "via proxy"
            assert web.new_session().get(direct_url, timeout=5, proxies={"http": ""}).text == "direct"
            os.environ["no_proxy"] = "127.0.0.1"
            web.read_environment()
            assert web.new_session().get(direct_url, timeout=5).text == "direct"
            os.environ["no_proxy"] = ""
            assert web.new_session().get(direct_url, timeout=5).text == "direct", "read once, not per request"


def _refuse(*args, **kwargs):
    raise AssertionError("botocore walked os.environ for the proxies")


@pytest.mark.parametrize("no_proxy", ["", "127.0.0.1"])
def test_aws_clients_take_the_runs_proxies_not_the_environment(clean_proxies, monkeypatch, no_proxy):
    """botocore reads the proxies by walking os.environ when it makes a client, which the AWS
    family and the S3 backups do in the gather's threads: they are handed the snapshot."""
    import boto3
    import botocore.utils

    from opscheck.families.aws import Aws, AwsClient

    os.environ.update(http_proxy="http://127.0.0.1:3128", no_proxy=no_proxy)
    web.read_environment()
    monkeypatch.setattr(botocore.utils, "getproxies", _refuse)
    monkeypatch.setattr(botocore.utils, "proxy_bypass", _refuse)
    target = Aws(name="account", region="us-east-1", endpoint_url="http://127.0.0.1:9/")
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    client = AwsClient(target, timeout=1)._new_client(session, "sts")
    assert client.meta.config.proxies == ({} if no_proxy else {"http": "http://127.0.0.1:3128"})


def test_a_surprise_while_reading_fails_every_check_that_reads_it():
    """A read that raises what no family expects (the environment race's KeyError, met in a
    gather thread) fails the checks that read it with its name: none gets None as its value."""
    memo, calls = Memo(), []

    def read():
        calls.append(1)
        raise KeyError("PYTEST_CURRENT_TEST")

    with pytest.raises(KeyError):
        memo.get("facts", read)
    for _ in range(2):
        with pytest.raises(OpscheckError, match="reading failed: KeyError: 'PYTEST_CURRENT_TEST'"):
            memo.get("facts", read)
    assert calls == [1], "read once"
