"""HTTP endpoints (requests): one request per endpoint per run, shared by its checks.

Status, latency, body and headers are judged from the same answer, so an endpoint
costs one round trip however many checks look at it. A target that answers, even
with a 503, is reachable: its checks fail on their own merits. An endpoint's optional
`security:` block adds the security-header, HTTPS-redirect and API-key checks.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from opscheck.core import jsondoc, redact
from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError, blocked, one_line
from opscheck.core.lazy import optional
from opscheck.core.model import Condition, InventoryCheck, Item, Model, Param, Severity, Target, check_marks
from opscheck.core.redact import clip, mask_url, secrets_in_body
from opscheck.core.values import HttpUrl, LocalFile, PlainHttpUrl, Regex, Verify
from opscheck.core.web import new_session, read_body, reason

if TYPE_CHECKING:
    import jmespath
    import jwt
    import requests
else:
    requests = optional("requests", "all")
    jmespath = optional("jmespath", "all")
    jwt = optional("jwt", "jwt")


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


# --- auth flows (an optional `auth:` block): a token from a login, or from the environment ---


class Login(Model):
    """A login request whose JSON answer carries a token; the endpoint's requests then use it."""

    url: str = Field(pattern=r"^https?://", description="e.g. https://localhost:8443/auth/login")
    method: Literal["POST", "GET"] = "POST"
    username: str | None = Field(default=None, description="a dedicated monitoring account")
    password: SecretStr | None = Field(default=None, description="${VAR}: never shown")
    username_field: str = "username"
    password_field: str = "password"
    form: bool = Field(default=False, description="send a form (OAuth2 password grant) instead of JSON")
    body: dict[str, str] = Field(default_factory=dict, description="more fields of the login body")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="login request headers; never shown")
    token_path: str = Field(default="access_token", description="JMESPath of the token in the JSON answer")
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    max_latency_ms: float = Field(default=2000, gt=0, description="runbook: login within 2 s")

    def secrets(self) -> list[str]:
        found = [self.password.get_secret_value()] if self.password else []
        return found + [v.get_secret_value() for v in self.headers.values()] + secrets_in_body(self.body)


class JwtClaims(Model):
    """What the token's claims must say; judged with PyJWT, the token itself never shown."""

    algorithms: list[str] | None = Field(default=None, description="accepted `alg` values (default: anything but none)")
    key: SecretStr | None = Field(
        default=None, description="${VAR}: HMAC secret or PEM public key; the signature is then verified"
    )
    min_remaining_minutes: float = Field(default=5, ge=0, description="exp at least this far in the future")
    max_lifetime_hours: float | None = Field(default=None, gt=0, description="exp - iat at most (AWE: 24 h)")
    lifetime_minutes: float | None = Field(default=None, gt=0, description="exp - iat equals this (+-1 min)")
    issuer: str | None = Field(default=None, description="iss must equal it")
    audience: str | None = Field(default=None, description="aud must be or contain it")
    leeway_s: float = Field(default=60, ge=0, description="clock skew allowed for iat")

    @model_validator(mode="after")
    def _no_none(self):
        if self.algorithms and any(a.lower() == "none" for a in self.algorithms):
            raise ValueError("algorithms: 'none' means an unsigned token; it is never accepted")
        return self


Refusal = Literal["missing", "tampered", "expired"]


class Auth(Model):
    """Where the endpoint's token comes from, how it is sent, and what must be refused."""

    login: Login | None = None
    token: SecretStr | None = Field(default=None, description="${VAR}: a token from the environment instead")
    header: str = "Authorization"
    scheme: str = Field(default="Bearer", description="value prefix ('' for the bare token)")
    jwt: JwtClaims | None = Field(default=None, description="judge the token's JWT claims")
    refuse_missing: bool = Field(default=True, description="the URL refuses a request without the token")
    refuse_tampered: bool = Field(default=True, description="the URL refuses the token with a broken signature")
    expired_token: SecretStr | None = Field(default=None, description="${VAR}: an expired token, must be refused")
    refused_status: list[int] = Field(default_factory=lambda: [401], min_length=1)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.login is None) == (self.token is None):
            raise ValueError("give either login (a login request) or token (${VAR})")
        return self

    def secrets(self) -> list[str]:
        found = self.login.secrets() if self.login else []
        tokens = [self.token, self.expired_token, self.jwt.key if self.jwt else None]
        return found + [t.get_secret_value() for t in tokens if t is not None]

    def refusals(self) -> list[Refusal]:
        kinds: list[Refusal] = []
        if self.refuse_missing:
            kinds.append("missing")
        if self.refuse_tampered:
            kinds.append("tampered")
        if self.expired_token is not None:
            kinds.append("expired")
        return kinds


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
    client_cert: LocalFile | None = Field(default=None, description="client certificate file (PEM), for mTLS")
    client_key: LocalFile | None = Field(default=None, description="its key file (PEM; omit if in client_cert)")
    security: HttpSecurity | None = Field(default=None, description="security headers, redirect, API key")
    auth: Auth | None = Field(default=None, description="a token (login or ${VAR}) for the endpoint's requests")

    model_config = ConfigDict(populate_by_name=True)

    def secrets(self) -> list[str]:
        security = self.security.secrets() if self.security else []
        auth = self.auth.secrets() if self.auth else []
        headers = [v.get_secret_value() for v in self.headers.values()]
        return headers + [self.url] + security + auth + secrets_in_body(self.body)

    @property
    def cert(self) -> str | tuple[str, str] | None:
        """requests' `cert`: the client certificate (and key) presented to an mTLS endpoint."""
        if self.client_cert and self.client_key:
            return (self.client_cert, self.client_key)
        return self.client_cert

    @model_validator(mode="after")
    def _key_needs_cert(self):
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        return self

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
                self._json = jsondoc.loads(self.text)
            except ValueError:
                if self.truncated:  # the cut, not the server, made it unreadable
                    raise OpscheckError(
                        f"{mask_url(self.url)}: the body is larger than {MAX_BODY_BYTES / 1e6:g} MB: "
                        f"read up to there, it is not complete JSON (it begins {clip(self.text, 80)!r})"
                    ) from None
                raise OpscheckError(f"{mask_url(self.url)}: the body is not JSON: {clip(self.text, 200)!r}") from None
        return self._json


@dataclass
class LoginAnswer:
    """What the login request answered: its status and time, and the token or why there is none."""

    url: str
    status: int
    latency_ms: float
    token: str | None
    problem: str = ""


class HttpClient(TargetReader):
    """Fetches an endpoint once and remembers the answer, or the error.

    With an `auth:` block the token (from the login, or the environment) is registered as a
    secret before anything can print it, and sent with every request of the endpoint.
    """

    def __init__(self, target: HttpEndpoint, timeout: float, params: dict[str, str]):
        super().__init__()
        self.target = target
        self.timeout = timeout
        self.url = target.url.format(**params) if target.placeholders else target.url

    @property
    def shown(self) -> str:
        return f'http "{self.target.name}" {mask_url(self.url)}'

    def answer(self) -> Answer:
        return self.once("answer", self._fetch)

    def _fetch(self) -> Answer:
        target = self.target
        headers = self._headers()
        body = target.body
        kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
        try:
            status, latency_ms, answer_headers, text, truncated = self._send(target.method, self.url, headers, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.unreachable.fail(f'http "{target.name}" {mask_url(self.url)}: {reason(exc)}')
        return Answer(status, latency_ms, answer_headers, text, self.url, truncated)

    def _headers(self, with_token: bool = True) -> dict[str, str]:
        """The endpoint's headers, with the token when it has an `auth:` block."""
        headers = {k: v.get_secret_value() for k, v in self.target.headers.items()}
        auth = self.target.auth
        if auth is not None:
            headers = {k: v for k, v in headers.items() if k.lower() != auth.header.lower()}
            if with_token:
                headers[auth.header] = self._authorization(self._token_or_blocked())
        return headers

    def _authorization(self, token: str) -> str:
        auth = self.target.auth
        assert auth is not None
        return f"{auth.scheme} {token}" if auth.scheme else token

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs) -> tuple[int, float, dict, str, bool]:
        """One request with the endpoint's TLS settings: (status, ms, headers, body text, cut)."""
        start = time.perf_counter()
        try:
            with new_session() as session:  # closed as requests.request closes its own
                response = session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=(self.timeout, self.timeout),
                    verify=self.target.verify,
                    cert=self.target.cert,
                    allow_redirects=False,
                    stream=True,
                    **kwargs,
                )
        except OSError as exc:  # requests.RequestException is an OSError; a missing cert file is not
            if isinstance(exc, requests.RequestException):
                raise
            raise OpscheckError(f"{self.shown}: cannot read the client certificate: {one_line(exc)}") from None
        with response:
            raw = self._body(response, start)
            latency_ms = (time.perf_counter() - start) * 1000
            try:
                text = raw[:MAX_BODY_BYTES].decode(response.encoding or "utf-8", errors="replace")
            except LookupError:  # charset=no-such-codec: the bytes are still worth reading
                text = raw[:MAX_BODY_BYTES].decode("utf-8", errors="replace")
            return response.status_code, latency_ms, dict(response.headers), text, len(raw) > MAX_BODY_BYTES

    def _body(self, response: requests.Response, start: float) -> bytes:
        """The body within the timeout as a whole (core.web.read_body), as requests' errors."""
        try:
            return read_body(response.raw, MAX_BODY_BYTES, 2 * self.timeout - (time.perf_counter() - start))
        except TimeoutError as exc:
            raise requests.ReadTimeout(str(exc)) from None
        except ConnectionError as exc:
            raise requests.exceptions.ChunkedEncodingError(str(exc)) from None

    # --- auth flows ------------------------------------------------------------------------

    def login(self) -> LoginAnswer:
        return self.once("login", self._login)

    def _login(self) -> LoginAnswer:
        auth = self.target.auth
        assert auth is not None and auth.login is not None
        login = auth.login
        payload: dict[str, str] = dict(login.body)
        if login.username is not None:
            payload[login.username_field] = login.username
        if login.password is not None:
            payload[login.password_field] = login.password.get_secret_value()
        headers = {k: v.get_secret_value() for k, v in login.headers.items()}
        kwargs = {"data": payload} if login.form else {"json": payload}
        try:
            status, latency_ms, _, text, _ = self._send(login.method, login.url, headers, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.unreachable.fail(f'http "{self.target.name}" login {mask_url(login.url)}: {reason(exc)}')
        try:
            data = jsondoc.loads(text)
        except ValueError:
            data = None
        found = jmespath.search(login.token_path, data) if data is not None else None
        token = found if isinstance(found, str) and found else None
        if token is not None:
            redact.register(token)  # before any message could carry it
        url = mask_url(login.url)
        if status not in login.expect_status:
            expected = " or ".join(map(str, login.expect_status))
            problem = f"login {url}: status {status}, expected {expected}; body: {redact.clip(text, 200)!r}"
            return LoginAnswer(url, status, latency_ms, None, problem)
        if token is None:
            keys = f" (JSON keys: {', '.join(sorted(data))})" if isinstance(data, dict) else " (the body is not JSON)"
            problem = f"login {url} answered {status} without a token at {login.token_path!r}{keys}"
            return LoginAnswer(url, status, latency_ms, None, problem)
        return LoginAnswer(url, status, latency_ms, token)

    def token(self) -> str:
        """The endpoint's token: from the login (once per run), or from the environment."""
        auth = self.target.auth
        assert auth is not None
        if auth.token is not None:
            return auth.token.get_secret_value()
        answer = self.login()
        if answer.token is None:
            raise OpscheckError(f"{self.shown}: {answer.problem}")
        return answer.token

    def _token_or_blocked(self) -> str:
        try:
            return self.token()
        except OpscheckError as exc:
            if self.unreachable.error is not None:
                raise
            raise OpscheckError(blocked(f"no token: {exc}")) from None

    def jwt_parts(self) -> tuple[dict, dict]:
        """(header, claims) of the token, decoded without verifying (the token is never shown)."""
        return self.once("jwt", lambda: decode_jwt(self._token_or_blocked(), self.shown))

    def signature_problem(self) -> str | None:
        """Why the token's signature does not verify with the inventory's key (None if it does)."""
        auth = self.target.auth
        assert auth is not None and auth.jwt is not None and auth.jwt.key is not None
        header, _ = self.jwt_parts()
        try:
            jwt.decode(
                self._token_or_blocked(),
                auth.jwt.key.get_secret_value(),
                algorithms=auth.jwt.algorithms or [str(header.get("alg"))],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            return "the signature does not verify with the configured key"
        except jwt.PyJWTError as exc:
            return f"the signature cannot be verified: {type(exc).__name__}: {redact.redact(str(exc))[:200]}"
        return None

    def refused(self, kind: Refusal) -> int:
        """The status of a request that must be refused: no token, a tampered or an expired one."""
        return self.once(("refused", kind), lambda: self._refused(kind))

    def _refused(self, kind: Refusal) -> int:
        auth = self.target.auth
        assert auth is not None
        headers = self._headers(with_token=False)
        if kind != "missing":
            if kind == "expired":
                assert auth.expired_token is not None
                token = auth.expired_token.get_secret_value()
            else:
                token = tampered(self._token_or_blocked())
            redact.register(token)
            headers[auth.header] = self._authorization(token)
        body = self.target.body
        kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
        try:
            status, *_ = self._send(self.target.method, self.url, headers, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.unreachable.fail(f'http "{self.target.name}" {mask_url(self.url)}: {reason(exc)}')
        return status


def tampered(token: str) -> str:
    """The token with its signature broken: the first character of the last segment changed
    (the last one may only carry padding bits, so changing it may change nothing)."""
    head, dot, signature = token.rpartition(".")
    if dot and signature:
        return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    middle = len(token) // 2
    return token[:middle] + ("B" if token[middle] == "A" else "A") + token[middle + 1 :]


def decode_jwt(token: str, shown: str) -> tuple[dict, dict]:
    """A JWT's header and claims, unverified (PyJWT); an opaque token fails without being shown."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise OpscheckError(f"{shown}: the token is not a JWT ({type(exc).__name__})") from None
    return header, claims


SECTION = list[HttpEndpoint]  # the inventory's `http:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the http family; the markers come from each endpoint's entry."""

    def rows(endpoints) -> list[Param]:
        return [Param(e, e.name, e, check_marks(e)) for e in endpoints]

    def each(items, condition=lambda _: True) -> list[Param]:
        return [Param(e, e.name, e) for e in items if condition(e)]

    # adhoc endpoints ({param} URLs) are left out of the security checks: judged where they are fixed
    secured = [e for e in inventory.http if e.security and not e.placeholders]
    authed = [e for e in inventory.http if e.auth and not e.placeholders]
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
        "http_login": each(authed, lambda e: e.auth.login),
        "http_jwt": each(authed, lambda e: e.auth.jwt),
        "http_auth_refusal": [
            Param(Item(e, kind), f"{e.name}:{kind}", e) for e in authed for kind in e.auth.refusals()
        ],
    }
