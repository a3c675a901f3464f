"""Cloudflare, read-only: Workers scripts (deployment, bindings by name), KV namespaces, R2
buckets and the Workers / zone analytics (GraphQL), with an API token from the environment.

Every REST call is a GET; the analytics are GraphQL queries (a POST that reads). Each
answer is read once per run and shared; the analytics of every Worker with the same
window go out in ONE GraphQL query (one alias per script). A 429 is retried after its
Retry-After (or a jittered backoff) while the target's timeout lasts; a refused token or an
unreachable API fails the first check with the reason and blocks the rest ("blocked:").
Secret bindings are listed by name and type only: their values are never returned by the
API, and never asked for.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import quote

from pydantic import Field, SecretStr

from opscheck.core.cache import SelectedReads
from opscheck.core.errors import OpscheckError, TargetUnreachable, blocked
from opscheck.core.model import Item, Model, Param, Target
from opscheck.core.redact import clip
from opscheck.core.times import Duration, parse_duration
from opscheck.core.web import new_session, reason

if TYPE_CHECKING:
    import requests
else:
    from opscheck.core.lazy import optional

    requests = optional("requests", "cloudflare")

API_URL = "https://api.cloudflare.com/client/v4"
BACKOFF_BASE, BACKOFF_CAP = 0.2, 2.0
# error codes of a token the API does not accept at all (invalid, malformed, expired)
TOKEN_REFUSED = frozenset([1000, 1001, 6003, 6111, 9103, 9109])


class Worker(Model):
    """A Workers script: deployed, its bindings as expected, errors and CPU below limits."""

    script: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    bindings: list[str] = Field(default_factory=list, description="binding names that must exist (any type)")
    binding_types: dict[str, str] = Field(
        default_factory=dict, description="expected type per binding name, e.g. {CACHE: kv_namespace}"
    )
    vars: dict[str, str] = Field(
        default_factory=dict, description="plain_text variables and their expected values, e.g. API_GATEWAY_URL"
    )
    window: Duration = Field(default="1h", description="analytics window")
    errors_max_pct: float = Field(default=1.0, ge=0, le=100, description="errors / requests in the window")
    cpu_max_ms: float = Field(default=50, gt=0, description="CPU time quantile limit in milliseconds")
    cpu_quantile: Literal["cpuTimeP50", "cpuTimeP99"] = Field(default="cpuTimeP99", description="the quantile judged")


class KvNamespace(Model):
    """A Workers KV namespace that must be listable (and hold keys, if said)."""

    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    min_keys: int = Field(default=0, ge=0, description="at least this many keys (0: any, even empty)")


class Cloudflare(Target):
    """A Cloudflare account (and optionally a zone), read with a read-only API token."""

    account_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    api_token: SecretStr = Field(description="a read-only API token: use ${CLOUDFLARE_API_TOKEN}")
    api_url: str = Field(default=API_URL, pattern=r"^https?://", description="the API base URL")
    workers: list[Worker] = Field(default_factory=list)
    kv_namespaces: list[KvNamespace] = Field(default_factory=list)
    r2_buckets: list[str] = Field(default_factory=list)
    zone_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$", description="for the rate-limit check")
    rate_limited_max_pct: float = Field(default=1.0, ge=0, le=100, description="HTTP 429 share of zone requests")
    rate_window: Duration = "24h"

    def secrets(self) -> list[str]:
        return [self.api_token.get_secret_value()]


WORKER_QUERY_PART = (
    "w{i}: workersInvocationsAdaptive(limit: 1, filter: {{scriptName: $s{i}, datetime_geq: $start, "
    "datetime_leq: $end}}) {{ sum {{ requests errors subrequests }} quantiles {{ cpuTimeP50 cpuTimeP99 }} }}"
)
ZONE_QUERY = (
    "query ($zone: string!, $start: Time!, $end: Time!) { viewer { zones(filter: {zoneTag: $zone}) { "
    "total: httpRequestsAdaptiveGroups(limit: 1, filter: {datetime_geq: $start, datetime_leq: $end}) { count } "
    "limited: httpRequestsAdaptiveGroups(limit: 1, filter: {datetime_geq: $start, datetime_leq: $end, "
    "edgeResponseStatus: 429}) { count } } } }"
)


class CloudflareClient(SelectedReads):
    """One requests session per target; GETs (and GraphQL reads) with the token's bearer header."""

    gather_workers = 6
    thread_name = "opscheck-cloudflare"

    def __init__(self, target: Cloudflare, timeout: float):
        super().__init__()
        self.target = target
        self.timeout = timeout
        self.now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.calls: dict[str, int] = {}
        self._session: Any = None
        self._unreported: dict[Hashable, OpscheckError] = {}

    @property
    def shown(self) -> str:
        return f'cloudflare "{self.target.name}" (account {self.target.account_id[:8]}...)'

    def _http(self) -> Any:
        with self.lock:
            if self._session is None:
                self._session = new_session()
                self._session.headers.update(
                    {
                        "Authorization": f"Bearer {self.target.api_token.get_secret_value()}",
                        "Accept": "application/json",
                        "User-Agent": "opscheck",
                    }
                )
            return self._session

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API request (GET, or the GraphQL POST), 429 retried within the timeout; the JSON."""
        if method != "GET" and path != "/graphql":
            raise OpscheckError(f"{self.shown}: {method} {path} is not a read")  # never sent
        with self.lock:
            self.unreachable.check()
        url = self.target.api_url.rstrip("/") + path
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            with self.lock:
                name = f"{method} {path.split('?')[0]}"
                self.calls[name] = self.calls.get(name, 0) + 1
            try:
                answer = self._http().request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                self._unreachable(f"{self.shown}: cannot reach the API ({self.target.api_url}): {reason(exc)}")
            if answer.status_code == 429:
                delay = _retry_after(answer) or min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1)
                if time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    continue
                raise OpscheckError(
                    f"{self.shown}: {method} {path} still rate limited (429) after {attempt} attempts within the "
                    f"{self.timeout:g} s timeout"
                )
            body = _json(answer)
            errors = "; ".join(f"[{e.get('code', '')}] {e.get('message', '')}" for e in body.get("errors") or [])
            codes = {e.get("code") for e in body.get("errors") or []}
            if answer.status_code == 401 or (answer.status_code in (400, 403) and codes & TOKEN_REFUSED):
                self._unreachable(
                    f"{self.shown}: the API token was refused (HTTP {answer.status_code}"
                    + (f": {errors}" if errors else "")
                    + "): check CLOUDFLARE_API_TOKEN (README: token permissions)"
                )
            if answer.status_code == 403:
                raise Denied(
                    f"{self.shown}: {method} {path} is denied (HTTP 403: {errors}): the token lacks a read "
                    "permission (README: token permissions)"
                )
            if answer.status_code == 404:
                raise NotFound(f"{self.shown}: {path}: not found (HTTP 404{': ' + errors if errors else ''})")
            if answer.status_code >= 400 or body.get("success") is False:
                raise OpscheckError(f"{self.shown}: {method} {path}: HTTP {answer.status_code} {errors}".rstrip())
            return body

    def _unreachable(self, message: str) -> NoReturn:
        """The target's first connection or token error (concurrent reads: the first wins)."""
        with self.lock:
            if self.unreachable.error is not None:
                raise TargetUnreachable(blocked(self.unreachable.error))
            self.unreachable.fail(message)

    def _memo(self, key: Hashable, read: Callable[[], Any]) -> Any:
        """once(); a Denied met while gathering is shown plainly to the first check that needs it."""
        with self.lock:
            first = self._unreported.pop(key, None)
        if first is not None:
            raise first
        try:
            return self.once(key, read)
        except Denied as exc:
            if getattr(self._gathering, "active", False):
                with self.lock:
                    self._unreported[key] = Denied(str(exc).removeprefix("blocked: "))
            raise

    def account(self, path: str) -> str:
        return f"/accounts/{self.target.account_id}{path}"

    # --- reads ---

    def deployments(self, script: str) -> list[dict]:
        return self._memo(
            ("deployments", script),
            lambda: self.request("GET", self.account(f"/workers/scripts/{quote(script)}/deployments"))["result"].get(
                "deployments", []
            ),
        )

    def settings(self, script: str) -> dict:
        return self._memo(
            ("settings", script),
            lambda: self.request("GET", self.account(f"/workers/scripts/{quote(script)}/settings"))["result"],
        )

    def kv_keys(self, namespace: str) -> tuple[int, bool]:
        """(keys on the first page, whether there are more) of a namespace: one GET."""

        def read() -> tuple[int, bool]:
            body = self.request("GET", self.account(f"/storage/kv/namespaces/{namespace}/keys"), params={"limit": 1000})
            cursor = (body.get("result_info") or {}).get("cursor")
            return len(body.get("result") or []), bool(cursor)

        return self._memo(("kv", namespace), read)

    def r2_bucket(self, bucket: str) -> dict:
        return self._memo(
            ("r2", bucket), lambda: self.request("GET", self.account(f"/r2/buckets/{quote(bucket)}"))["result"]
        )

    def worker_analytics(self, worker: Worker) -> dict:
        """The script's sums and quantiles in its window (one GraphQL query for every such script)."""
        window = parse_duration(worker.window)
        batch = self._memo(("analytics", window), lambda: self._analytics(window))
        return batch.get(worker.script) or {}

    def _analytics(self, window: timedelta) -> dict[str, dict]:
        scripts = sorted({w.script for w in self.target.workers if parse_duration(w.window) == window})
        parts = " ".join(WORKER_QUERY_PART.format(i=i) for i in range(len(scripts)))
        names = " ".join(f"$s{i}: string!" for i in range(len(scripts)))
        query = (
            f"query ($account: string!, $start: Time!, $end: Time!, {names}) {{ viewer {{ "
            f"accounts(filter: {{accountTag: $account}}) {{ {parts} }} }} }}"
        )
        variables = {"account": self.target.account_id, **self._window(window)}
        variables.update({f"s{i}": s for i, s in enumerate(scripts)})
        accounts = self._graphql(query, variables)["viewer"]["accounts"]
        found = accounts[0] if accounts else {}
        return {s: (found.get(f"w{i}") or [{}])[0] for i, s in enumerate(scripts)}

    def zone_requests(self) -> tuple[int, int]:
        """(all requests, HTTP 429 answers) of the zone in the rate window."""

        def read() -> tuple[int, int]:
            window = parse_duration(self.target.rate_window)
            data = self._graphql(ZONE_QUERY, {"zone": self.target.zone_id, **self._window(window)})
            zones = data["viewer"]["zones"]
            zone = zones[0] if zones else {}

            def count(key: str) -> int:
                return int(sum(g.get("count", 0) for g in zone.get(key) or []))

            return count("total"), count("limited")

        return self._memo("zone-requests", read)

    def _window(self, window: timedelta) -> dict[str, str]:
        start = self.now - window
        return {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": self.now.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def _graphql(self, query: str, variables: dict) -> dict:
        body = self.request("POST", "/graphql", json={"query": query, "variables": variables})
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"])
            raise OpscheckError(f"{self.shown}: GraphQL analytics query failed: {clip(messages, 400)}")
        return body.get("data") or {}

    # --- gathering ---

    def reads(self, argname: str, value: Any) -> list[Callable[[], Any]]:
        item = value.value if isinstance(value, Item) else value
        table: dict[str, Callable[[], list[Callable[[], Any]]]] = {
            "cloudflare_worker": lambda: [lambda: self.deployments(item.script)],
            "cloudflare_worker_bindings": lambda: [lambda: self.settings(item.script)],
            "cloudflare_worker_analytics": lambda: [lambda: self.worker_analytics(item)],
            "cloudflare_kv": lambda: [lambda: self.kv_keys(item.id)],
            "cloudflare_r2": lambda: [lambda: self.r2_bucket(item)],
            "cloudflare_zone": lambda: [self.zone_requests],
        }
        return table[argname]() if argname in table else []

    def all_needs(self) -> list[tuple[str, Any]]:
        return [(argname, p.value) for argname, rows in rows_of(self.target).items() for p in rows]

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


class Denied(TargetUnreachable):
    """The token may not read this resource: checks that need it are blocked, the others run."""


class NotFound(OpscheckError):
    """The API answered 404: the script, namespace or bucket does not exist."""


def _retry_after(answer: Any) -> float | None:
    try:
        return max(0.0, float(answer.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _json(answer: Any) -> dict:
    try:
        body = answer.json()
    except (ValueError, RecursionError):
        return {"errors": [{"message": f"not JSON: {clip(answer.text, 200)!r}"}]}
    return body if isinstance(body, dict) else {}


ARGNAMES = (
    "cloudflare_worker",
    "cloudflare_worker_bindings",
    "cloudflare_worker_analytics",
    "cloudflare_kv",
    "cloudflare_r2",
    "cloudflare_zone",
)


def rows_of(target: Cloudflare) -> dict[str, list[Param]]:
    def items(values: Iterable, ident: Callable[[Any], str]) -> list[Param]:
        return [Param(Item(target, v), f"{target.name}:{ident(v)}", target) for v in values]

    return {
        "cloudflare_worker": items(target.workers, lambda w: w.script),
        "cloudflare_worker_bindings": items(
            [w for w in target.workers if w.bindings or w.vars or w.binding_types], lambda w: w.script
        ),
        "cloudflare_worker_analytics": items(target.workers, lambda w: w.script),
        "cloudflare_kv": items(target.kv_namespaces, lambda n: n.id),
        "cloudflare_r2": items(target.r2_buckets, str),
        "cloudflare_zone": [Param(target, target.name, target)] if target.zone_id else [],
    }


SECTION = list[Cloudflare]  # the inventory's `cloudflare:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the cloudflare family."""
    found: dict[str, list[Param]] = {argname: [] for argname in ARGNAMES}
    for target in inventory.cloudflare:
        for argname, rows in rows_of(target).items():
            found[argname].extend(rows)
    return found
