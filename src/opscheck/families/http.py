"""HTTP endpoints (requests): one request per endpoint per run, shared by its checks.

Status, latency, body and headers are judged from the same answer, so an endpoint
costs one round trip however many checks look at it. A target that answers, even
with a 503, is reachable: its checks fail on their own merits. An endpoint's optional
`security:` block adds the security-header, HTTPS-redirect and API-key checks.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError
from opscheck.core.lazy import optional
from opscheck.core.model import Condition, InventoryCheck, Model, Param, Severity, Target, check_marks
from opscheck.core.redact import clip, mask_url
from opscheck.core.values import HttpUrl, PlainHttpUrl, Regex, Verify
from opscheck.core.web import reason

if TYPE_CHECKING:
    import requests
else:
    requests = optional("requests", "all")


# --- HTTP security settings (an optional `security:` block of an http endpoint) ------------


class ApiKey(Model):
    """An API key the endpoint must accept, and refuse without (runbook: sk_live_* / sk_test_*)."""

    key: SecretStr = Field(description="${VAR}: the key; never shown")
    revoked_key: SecretStr | None = Field(default=None, description="${VAR}: a revoked key that must be refused")
    header: str = "Authorization"
    scheme: str = Field(default="Bearer", description="value prefix ('' for the bare key, e.g. X-API-Key)")
    format: Regex = Field(default=r"^sk_(live|test)_[A-Za-z0-9_]+$", description="regex the key must match")
    url: HttpUrl | None = Field(default=None, description="default: the endpoint's url")
    refused_status: list[int] = Field(default_factory=lambda: [401], min_length=1)

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.key, self.revoked_key) if s is not None]


class HttpSecurity(Model):
    """Security headers, HTTPS redirect, rate-limit headers and API keys of an HTTP endpoint."""

    hsts_min_max_age: int | None = Field(
        default=31_536_000, ge=0, description="Strict-Transport-Security max-age floor (null: not checked)"
    )
    hsts_include_subdomains: bool = False
    nosniff: bool = Field(default=True, description="X-Content-Type-Options: nosniff")
    csp: bool = Field(default=False, description="a Content-Security-Policy is required")
    frame_policy: bool = Field(default=False, description="X-Frame-Options or CSP frame-ancestors required")
    absent_headers: list[str] = Field(default_factory=lambda: ["X-Powered-By"])
    server_version_hidden: bool = Field(default=True, description="Server: nginx, not nginx/1.22.1")
    https_redirect_from: PlainHttpUrl | None = Field(
        default=None, description="a plain-HTTP URL that must redirect to https://"
    )
    rate_limit_headers: list[str] = Field(default_factory=list, description="e.g. X-RateLimit-Remaining")
    api_key: ApiKey | None = None

    def secrets(self) -> list[str]:
        return self.api_key.secrets() if self.api_key else []


class JsonCondition(Condition):
    path: str = Field(description="JMESPath into the JSON body, e.g. checks.database")


class HttpEndpoint(Target, InventoryCheck):
    """An HTTP endpoint: one request per run, its status, latency, body and headers judged."""

    severity: Severity = "p1"
    url: HttpUrl = Field(description="may hold {param} placeholders (adhoc)")
    method: Literal["GET", "HEAD", "POST", "OPTIONS"] = "GET"
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="request headers; values never appear in reports"
    )
    body: str | dict | None = Field(default=None, description="request body (POST); dict → JSON")
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    max_latency_ms: float = Field(default=2000, gt=0)
    json_body: list[JsonCondition] = Field(default_factory=list, alias="json")
    response_headers: dict[str, Regex | None] = Field(
        default_factory=dict,
        description="headers the answer must carry: name → regex, or null for presence only",
    )
    verify: Verify = Field(default=True, description="TLS verification: true, false or a CA file")
    security: HttpSecurity | None = Field(default=None, description="security headers, redirect, API key")

    model_config = ConfigDict(populate_by_name=True)

    def secrets(self) -> list[str]:
        security = self.security.secrets() if self.security else []
        return [v.get_secret_value() for v in self.headers.values()] + [self.url] + security

    @model_validator(mode="after")
    def _placeholders_are_adhoc(self):
        if self.placeholders and "adhoc" not in self.schedule:
            raise ValueError(
                f"a URL with {{{self.placeholders[0]}}} needs schedule [adhoc] "
                "(its value comes from --param at incident time)"
            )
        return self

    @property
    def placeholders(self) -> list[str]:
        return re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.url)


MAX_BODY_BYTES = 1_000_000


@dataclass
class Answer:
    status: int
    latency_ms: float
    headers: dict
    text: str
    url: str
    truncated: bool = False
    _json: object = field(default=None, repr=False)

    def json(self):
        if self._json is None:
            try:
                self._json = json.loads(self.text)
            except ValueError:
                raise OpscheckError(f"{mask_url(self.url)}: the body is not JSON: {clip(self.text, 200)!r}") from None
        return self._json


class HttpClient(TargetReader):
    """Fetches an endpoint once and remembers the answer, or the error."""

    def __init__(self, target: HttpEndpoint, timeout: float, params: dict[str, str]):
        super().__init__()
        self.target = target
        self.timeout = timeout
        self.url = target.url.format(**params) if target.placeholders else target.url

    def answer(self) -> Answer:
        return self.once("answer", self._fetch)

    def _fetch(self) -> Answer:
        try:
            return self._request()
        except requests.RequestException as exc:
            with self.lock:
                self.unreachable.fail(f'http "{self.target.name}" {mask_url(self.url)}: {reason(exc)}')

    def _request(self) -> Answer:
        target = self.target
        headers = {k: v.get_secret_value() for k, v in target.headers.items()}
        body = target.body
        kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
        start = time.perf_counter()
        with requests.request(
            target.method,
            self.url,
            headers=headers,
            timeout=(self.timeout, self.timeout),
            verify=target.verify,
            allow_redirects=False,
            stream=True,
            **kwargs,
        ) as response:
            raw = response.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
            latency_ms = (time.perf_counter() - start) * 1000
            text = raw[:MAX_BODY_BYTES].decode(response.encoding or "utf-8", errors="replace")
            return Answer(
                status=response.status_code,
                latency_ms=latency_ms,
                headers=dict(response.headers),
                text=text,
                url=self.url,
                truncated=len(raw) > MAX_BODY_BYTES,
            )


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the http family; the markers come from each endpoint's entry."""

    def rows(endpoints) -> list[Param]:
        return [Param(e, e.name, e, check_marks(e)) for e in endpoints]

    def each(items, condition=lambda _: True) -> list[Param]:
        return [Param(e, e.name, e) for e in items if condition(e)]

    # adhoc endpoints ({param} URLs) are left out of the security checks: judged where they are fixed
    secured = [e for e in inventory.http if e.security and not e.placeholders]
    return {
        "http_endpoint": rows(inventory.http),
        "http_json_endpoint": rows(e for e in inventory.http if e.json_body),
        "http_header_endpoint": rows(e for e in inventory.http if e.response_headers),
        "http_security": each(secured),
        "http_hsts": each(secured, lambda e: e.security.hsts_min_max_age is not None),
        "http_redirect": each(secured, lambda e: e.security.https_redirect_from),
        "http_rate_limit": each(secured, lambda e: e.security.rate_limit_headers),
        "http_api_key": each(secured, lambda e: e.security.api_key),
        "http_revoked_key": each(secured, lambda e: e.security.api_key and e.security.api_key.revoked_key),
    }
