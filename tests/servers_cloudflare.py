"""A loopback server answering the documented shapes of the Cloudflare API v4 that the
cloudflare family reads (REST envelopes `{success, errors, messages, result}`, the GraphQL
Analytics API `{data, errors}`): Workers deployments and settings, KV keys, R2 buckets,
workersInvocationsAdaptive and httpRequestsAdaptiveGroups. Bearer-token auth; any other
token is answered 401 with error 1000 (Invalid API Token). Paths can be made to answer 429
a given number of times (Retry-After: 0); every authorized request is counted.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.servers import free_port, send_json


class CloudflareApi:
    def __init__(self, token: str, account: str):
        self.token, self.account = token, account
        self.port = free_port()
        self.scripts: dict[str, dict] = {}  # name -> {"deployments": [...], "bindings": [...]}
        self.kv: dict[str, int] = {}  # namespace id -> number of keys
        self.r2: set[str] = set()
        self.denied_r2: set[str] = set()  # buckets the token may not read (403, code 10000)
        self.analytics: dict[str, dict] = {}  # script -> {"sum": {...}, "quantiles": {...}}
        self.zones: dict[str, tuple[int, int]] = {}  # zone id -> (all requests, 429s)
        self.rate_limited: Counter = Counter()  # path -> 429 answers left
        self.calls: Counter = Counter()  # authorized requests, by method and path
        self.refused = 0  # requests with another token
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                api.handle(self, None)

            def do_POST(self):
                api.handle(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    def __enter__(self) -> CloudflareApi:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    send = staticmethod(send_json)

    @staticmethod
    def envelope(result=None, errors=None, **extra) -> dict:
        return {"success": not errors, "errors": errors or [], "messages": [], "result": result, **extra}

    def handle(self, request, body: bytes | None) -> None:
        path = urlsplit(request.path).path.removeprefix("/client/v4")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            with self.lock:
                self.refused += 1
            return self.send(request, 401, self.envelope(errors=[{"code": 1000, "message": "Invalid API Token"}]))
        with self.lock:
            self.calls[f"{request.command} {path}"] += 1
            limited = self.rate_limited[path] > 0
            if limited:
                self.rate_limited[path] -= 1
        if limited:
            error = [{"code": 971, "message": "Please wait and consider throttling your request speed"}]
            return self.send(request, 429, self.envelope(errors=error), {"Retry-After": "0"})
        if path == "/graphql" and body is not None:
            return self.send(request, 200, self.graphql(json.loads(body)))
        account = f"/accounts/{self.account}"
        script = re.fullmatch(rf"{account}/workers/scripts/([^/]+)/(deployments|settings)", path)
        if script:
            found = self.scripts.get(script.group(1))
            if found is None:
                error = [{"code": 10007, "message": "This Worker does not exist on your account."}]
                return self.send(request, 404, self.envelope(errors=error))
            if script.group(2) == "deployments":
                return self.send(request, 200, self.envelope({"deployments": found["deployments"]}))
            settings = {"bindings": found["bindings"], "compatibility_date": "2026-11-01", "usage_model": "standard"}
            return self.send(request, 200, self.envelope(settings))
        kv = re.fullmatch(rf"{account}/storage/kv/namespaces/([0-9a-f]+)/keys", path)
        if kv:
            if kv.group(1) not in self.kv:
                return self.send(
                    request, 404, self.envelope(errors=[{"code": 10013, "message": "namespace not found"}])
                )
            keys = [{"name": f"key-{i}"} for i in range(min(self.kv[kv.group(1)], 1000))]
            cursor = "next-page" if self.kv[kv.group(1)] > 1000 else ""
            return self.send(request, 200, self.envelope(keys, result_info={"count": len(keys), "cursor": cursor}))
        r2 = re.fullmatch(rf"{account}/r2/buckets/([^/]+)", path)
        if r2:
            name = r2.group(1)
            if name in self.denied_r2:
                return self.send(
                    request, 403, self.envelope(errors=[{"code": 10000, "message": "Authentication error"}])
                )
            if name not in self.r2:
                return self.send(
                    request,
                    404,
                    self.envelope(errors=[{"code": 10006, "message": "The specified bucket does not exist."}]),
                )
            return self.send(
                request,
                200,
                self.envelope({"name": name, "creation_date": "2026-01-05T10:00:00.000Z", "location": "ENAM"}),
            )
        return self.send(request, 404, self.envelope(errors=[{"code": 7003, "message": "No route for that URI"}]))

    def graphql(self, request: dict) -> dict:
        query, variables = request.get("query", ""), request.get("variables", {})
        if "zones(" in query:
            total, limited = self.zones.get(variables.get("zone"), (0, 0))
            zone = {"total": [{"count": total}], "limited": [{"count": limited}]}
            return {"data": {"viewer": {"zones": [zone]}}, "errors": None}
        if variables.get("account") != self.account:
            return {
                "data": None,
                "errors": [{"message": "not authorized for that account", "path": ["viewer", "accounts"]}],
            }
        found = {}
        for alias in re.findall(r"(w\d+): workersInvocationsAdaptive", query):
            script = variables.get(f"s{alias[1:]}")
            found[alias] = [self.analytics[script]] if script in self.analytics else []
        return {"data": {"viewer": {"accounts": [found]}}, "errors": None}
