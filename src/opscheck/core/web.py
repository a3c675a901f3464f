"""HTTP helpers the families share: why a request failed, and JSON APIs read once per run.

The Prometheus, Alertmanager and Grafana families read JSON APIs; the http family reads
endpoints. Each answer is fetched once per run and shared by the checks that judge it;
a target that cannot be reached costs one timeout, once (later checks say "blocked:").
Only GET requests are sent.
"""

from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from opscheck.core import jsondoc
from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError, Unreachable
from opscheck.core.lazy import optional
from opscheck.core.model import Target
from opscheck.core.redact import clip, mask_url
from opscheck.core.values import HttpUrl, Verify

if TYPE_CHECKING:
    import requests
    from urllib3 import exceptions as urllib3_exceptions
else:
    requests = optional("requests", "all")
    urllib3_exceptions = optional("urllib3.exceptions", "all")

API_MAX_BYTES = 32 * 1024 * 1024  # a JSON API answer: a big cluster's /api/v1/targets is a few MB


def read_body(raw: Any, limit: int, seconds: float) -> bytes:
    """A urllib3 response's body, at most `limit` + 1 bytes (more means cut), within `seconds`
    as a whole: a server that drips a byte a second never trips a per-read timeout, and an
    endless body would fill the memory. TimeoutError when the time is up, ConnectionError
    when the connection breaks mid-body."""
    deadline = time.monotonic() + seconds
    chunks, size = [], 0
    try:
        while size <= limit:
            chunk = raw.read1(min(65536, limit + 1 - size), decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:  # after a read: what has already arrived is read
                raise TimeoutError(f"the body was not complete within {seconds:g} s")
    except urllib3_exceptions.ReadTimeoutError:
        raise TimeoutError(f"the body was not complete within {seconds:g} s") from None
    except urllib3_exceptions.HTTPError as exc:  # ProtocolError: reset or closed mid-body, a bad chunk
        raise ConnectionError(f"the connection broke mid-body: {exc}") from None
    return b"".join(chunks)


class ApiTarget(Target):
    """A server reached over its HTTP API (Prometheus, Alertmanager, Grafana)."""

    url: HttpUrl = Field(description="base URL, e.g. http://prometheus:9090")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="request headers (Authorization: Bearer ${TOKEN}); never reported"
    )
    verify: Verify = Field(default=True, description="TLS verification: true, false or a CA file")

    def secrets(self) -> list[str]:
        return [v.get_secret_value() for v in self.headers.values()] + [self.url]


_ENVIRONMENT: tuple[dict[str, str], str | None] | None = None  # (proxies, CA bundle)


def read_environment() -> tuple[dict[str, str], str | None]:
    """The proxies (`*_proxy`, `no_proxy`) and CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)
    of the environment, read once, in the main thread at the run's start.

    requests reads them from os.environ on every request, by walking os.environ. pytest sets
    and deletes PYTEST_CURRENT_TEST for every check, and a key deleted during that walk raises
    KeyError. This was met in CI, in the gather's threads, as a healthy check's failure."""
    global _ENVIRONMENT
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    _ENVIRONMENT = (proxies, os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"))
    return _ENVIRONMENT


def proxies_for(url: str) -> dict[str, str]:
    """The environment's proxies for a URL ({scheme: proxy}, no_proxy honoured), from
    `read_environment()`: for a client that would walk os.environ itself (botocore)."""
    import urllib.request

    env_proxies, _ = _ENVIRONMENT or read_environment()
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # public, not in typeshed
    if not env_proxies or bypass(urlsplit(url).hostname or "", env_proxies):
        return {}
    chosen = {scheme: env_proxies.get(scheme) or env_proxies.get("all") for scheme in ("http", "https")}
    return {scheme: proxy for scheme, proxy in chosen.items() if proxy}


def new_session() -> requests.Session:
    """A requests session that takes the environment's proxies and CA bundle from
    `read_environment()`, never from os.environ while checks run."""
    return environment_once(requests.Session)()


@functools.cache
def environment_once(session_class: type, ca_bundle: bool = True) -> type:
    """`session_class` (requests.Session or a subclass, as the Docker SDK's client) reading the
    environment from `read_environment()`; without `ca_bundle` the environment's CA bundle is
    ignored (a client whose own CA file must win)."""

    class EnvironmentOnce(session_class):
        @property
        def trust_env(self) -> bool:  # requests' own reads of os.environ (and ~/.netrc), even in
            return False  # __init__: the Docker SDK asks the engine's version there

        @trust_env.setter
        def trust_env(self, value: bool) -> None:
            pass

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            _, env_ca = _ENVIRONMENT or read_environment()
            scheme = urlsplit(url).scheme
            chosen = proxies_for(url).get(scheme)
            if chosen:
                proxies = {scheme: chosen, **(proxies or {})}  # a request's own proxies win
            if ca_bundle and env_ca and (verify is True or verify is None):
                verify = env_ca
            return super().merge_environment_settings(url, proxies, stream, verify, cert)

    return EnvironmentOnce


def reason(exc: requests.RequestException) -> str:
    """Why a request failed, in words an on-call engineer reads."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer within the timeout (read timed out)"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {exc.__context__ or exc}"
    if isinstance(exc, requests.ConnectionError):
        inner = exc.args[0] if exc.args else exc
        if isinstance(inner, urllib3_exceptions.ProtocolError):  # it connected: the answer broke off or was not HTTP
            return f"connected, but no valid HTTP answer: {inner}"
        return f"cannot connect: {getattr(inner, 'reason', inner)}"
    return f"request failed: {type(exc).__name__}: {exc}"


class JsonApi(TargetReader):
    """GETs JSON once per path per run and keeps the answer, or the error that blocks."""

    def __init__(self, target: Any, timeout: float, kind: str):
        super().__init__()
        self.target = target
        self.timeout = timeout
        self.kind = kind
        self.base = target.url.rstrip("/")
        self._session: requests.Session | None = None

    @property
    def shown(self) -> str:
        return f'{self.kind} "{self.target.name}" ({mask_url(self.base)})'

    def session(self) -> requests.Session:
        with self.lock:
            if self._session is None:
                self._session = new_session()
                self._session.headers.update({k: v.get_secret_value() for k, v in self.target.headers.items()})
            return self._session

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        """(status, parsed JSON or text) of GET path; unreachable → TargetUnreachable, kept."""
        return self.once((path, tuple(sorted(params.items()))), lambda: self._fetch(path, params))

    def _fetch(self, path: str, params: dict) -> tuple[int, Any]:
        try:
            response = self.session().get(
                f"{self.base}{path}",
                params=params or None,
                timeout=(self.timeout, self.timeout),
                verify=self.target.verify,
                allow_redirects=False,
                stream=True,
            )
            with response:
                data = read_body(response.raw, API_MAX_BYTES, 2 * self.timeout)
        except (requests.RequestException, TimeoutError, ConnectionError) as exc:
            why = reason(exc) if isinstance(exc, requests.RequestException) else str(exc)
            with self.lock:
                self.unreachable.fail(f"{self.shown}: GET {path}: {why}")
        if len(data) > API_MAX_BYTES:
            raise OpscheckError(f"{self.shown}: GET {path}: the answer is larger than {API_MAX_BYTES // 1048576} MB")
        try:
            body = jsondoc.loads(data)  # bytes: json detects UTF-8 (with a BOM too), -16, -32
        except ValueError:  # UnicodeDecodeError included
            body = clip(data.decode("utf-8", errors="replace"), 500)
        return response.status_code, body

    def json(self, path: str, **params: Any) -> Any:
        """The JSON of a 200 answer; Prometheus's {"status","data"} envelope is unwrapped."""
        status, body = self.get(path, **params)
        if status != 200:
            detail = body.get("error", body) if isinstance(body, dict) else body
            raise OpscheckError(f"{self.shown}: GET {path} answered {status}: {clip(str(detail), 300)}")
        if isinstance(body, dict) and "status" in body and "data" in body:
            if body["status"] != "success":
                raise OpscheckError(f"{self.shown}: GET {path}: {body.get('error', body['status'])}")
            return body["data"]
        if isinstance(body, str):
            raise OpscheckError(f"{self.shown}: GET {path}: the body is not JSON: {clip(body, 200)!r}")
        return body

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


_ORIGINS: dict[str, Unreachable] = {}  # origin -> its first connection error of this session


def get_status(
    url: str, timeout: float, verify: bool | str, headers: dict | None = None, cert: Any = None
) -> tuple[int, dict]:
    """One GET, no redirects followed, for redirect and API-key checks; errors read cleanly.

    An origin that could not be reached is not tried again: the next check on it fails at
    once ("blocked:"), so a dead endpoint costs one timeout, not one per API-key check.
    """
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    unreachable = _ORIGINS.setdefault(origin, Unreachable())
    unreachable.check()
    try:
        with (
            new_session() as session,
            session.get(
                url,
                headers=headers or {},
                timeout=(timeout, timeout),
                verify=verify,
                cert=cert,  # a client certificate (mTLS endpoints)
                allow_redirects=False,
                stream=True,
            ) as response,
        ):
            return response.status_code, dict(response.headers)
    except (requests.ConnectionError, requests.Timeout) as exc:
        unreachable.fail(f"{mask_url(url)}: {reason(exc)}")
    except requests.RequestException as exc:
        raise OpscheckError(f"{mask_url(url)}: {reason(exc)}") from None
    raise AssertionError("unreachable")
