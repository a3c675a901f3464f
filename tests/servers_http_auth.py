"""An HTTP API that issues REAL JWTs (PyJWT), and nginx in front of it requiring a client
certificate, for the http family's auth-flow self-tests.

`JwtApi` serves POST /auth/login (JSON) and POST /auth/token (form, OAuth2 password grant)
for its monitoring user, GET /auth/me for a valid Bearer token (signature, exp, iss, aud
verified with PyJWT), GET /health without auth. A lax one (`verify=False`) answers /auth/me
to anyone, as a broken service would. `MtlsProxy` is nginx with `ssl_verify_client on`
proxying to it (AWE's caddy in front of its API).
"""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt

from tests.servers import Service, send_json
from tests.servers_tls import Nginx, Site

SECRET = "opscheck-jwt-secret-8841-0123456789abcdef"
USER, PASSWORD = "monitor", "opscheck-Pw-3107"


class JwtApi(Service):
    def __init__(
        self,
        issuer: str = "awe-test",
        audience: str = "awe-api",
        lifetime_s: int = 3600,
        alg: str = "HS256",
        iat_offset: int = 0,
        verify: bool = True,
    ):
        self.issuer, self.audience, self.lifetime_s = issuer, audience, lifetime_s
        self.alg, self.iat_offset, self.verify = alg, iat_offset, verify
        self.issued: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict) -> None:
                send_json(self, status, body)

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.path == "/auth/login":
                    fields = json.loads(raw or "{}")
                elif self.path == "/auth/token":
                    fields = {k: v[0] for k, v in parse_qs(raw).items()}
                else:
                    return self._reply(404, {"detail": "not found"})
                if fields.get("username") != USER or fields.get("password") != PASSWORD:
                    return self._reply(401, {"detail": "invalid credentials"})
                token = api.token()
                api.issued.append(token)
                self._reply(200, {"access_token": token, "token_type": "bearer"})

            def do_GET(self):  # noqa: N802
                if self.path == "/health":
                    return self._reply(200, {"status": "ok"})
                if self.path != "/auth/me":
                    return self._reply(404, {"detail": "not found"})
                if not api.verify:
                    return self._reply(200, {"plan": "free"})
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                try:
                    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=api.audience, issuer=api.issuer)
                except jwt.PyJWTError:
                    return self._reply(401, {"detail": "invalid or expired token"})
                self._reply(200, {"plan": "free", "user": claims["sub"]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def token(self, exp_offset: int | None = None) -> str:
        """A token as this API issues it (or with another expiry, e.g. an expired one)."""
        now = int(time.time()) + self.iat_offset
        claims = {
            "sub": USER,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + (self.lifetime_s if exp_offset is None else exp_offset),
        }
        return jwt.encode(claims, None if self.alg == "none" else SECRET, algorithm=self.alg)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class ProxySite(Site):
    """An nginx site that proxies to a loopback port (after its TLS and client-certificate checks)."""

    upstream: int = 0


class MtlsProxy(Nginx):
    """nginx sites from tests/servers_tls, proxying to an upstream port instead of answering."""

    def _server_block(self, site: Site) -> str:
        block = super()._server_block(site)
        if isinstance(site, ProxySite):
            proxy = f"location / {{ proxy_pass http://127.0.0.1:{site.upstream}; proxy_set_header Host $host; }}"
            block = block.replace('location / { return 200 "ok\\n"; }', proxy)
        return block
