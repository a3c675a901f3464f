"""Canaries in every place a secret can go; every output grepped for them in every encoding.

One run of the suite on targets that fail (closed ports, and an HTTP server that answers
500 with the request's headers, query and path echoed in its body, after padding that puts
them where a message is cut). Then stdout, report.html, junit.xml and summary.json are
searched for each canary raw, URL-encoded, base64 (alone and as user:secret), JSON- and
repr-escaped, and as any 8-character fragment.
"""

import base64
import datetime as dt
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus

import pytest
import yaml

from tests.conftest import run_suite
from tests.servers import closed_port

C = {i: hashlib.sha256(b"canary%d" % i).hexdigest()[:14] for i in range(1, 20)}  # distinct: no shared fragments
C[2], C[18] = C[2][:6] + "'x\\" + C[2][6:], C[18][:6] + "\\q'" + C[18][6:]  # repr and JSON escape these
USER = "opsuser"


class Echo(BaseHTTPRequestHandler):
    """Answers 500 with everything it was sent: a proxy's error page that echoes headers."""

    def do_GET(self):
        headers = sorted(self.headers.items(), key=lambda kv: kv[0] != "Authorization")  # the credential first
        body = ("x" * 120 + f" path={self.path} " + " ".join(f"{k}={v}" for k, v in headers)).encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def forms(secret: str) -> dict[str, str]:
    """Every encoding of a canary the outputs are searched for."""
    found = {
        "raw": secret,
        "url-encoded": quote(secret, safe=""),
        "url-encoded (+)": quote_plus(secret),
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64 user:secret": base64.b64encode(f"{USER}:{secret}".encode()).decode(),
        "json-escaped": json.dumps(secret)[1:-1],
        "repr-escaped": repr(secret)[1:-1],
    }
    found.update({f"fragment {i}": secret[i : i + 8] for i in range(len(secret) - 7)})
    basic = found["base64 user:secret"]  # a message cut in the middle of a Basic header
    skip = len(base64.b64encode(f"{USER}:".encode()).decode().rstrip("=")) - 7  # pieces of the user name alone
    found.update({f"base64 fragment {i}": basic[i : i + 8] for i in range(skip, len(basic) - 7)})
    return found


def test_no_canary_leaves_in_any_encoding(tmp_path, echo, monkeypatch):
    dead = f"127.0.0.1:{closed_port()}"
    quoted = C[2].replace("\\", "\\\\").replace("'", "\\'")  # libpq's quoting of a key=value password
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    (tmp_path / "inventory.waivers.yml").write_text(
        yaml.safe_dump(
            {"waivers": [{"check": "test_redis_ping", "owner": "ops", "reason": "move", "expires": tomorrow}]}
        )
    )
    inventory = {
        "environment": "selftest-canaries",
        "defaults": {"timeout": 2},
        "postgres": [
            {"name": "url", "dsn": f"postgresql://{USER}:{C[1]}@{dead}/app"},
            {"name": "kv", "dsn": f"host=127.0.0.1 port={dead.split(':')[1]} user={USER} password='{quoted}'"},
            {"name": "env", "dsn": "${CANARY_DSN}"},
        ],
        "pgbouncer": [{"name": "bouncer", "dsn": f"postgresql://stats:{C[15]}@{dead}/pgbouncer"}],
        "redis": [{"name": "queue", "url": f"redis://:{C[3]}@{dead}/0"}],
        "http": [
            {
                "name": "userinfo",
                "url": f"http://{USER}:{C[4]}@{echo}/health?token={C[5]}&page=2",
                "headers": {"X-Api-Key": C[6], "Authorization": f"Bearer {C[7]}", "X-Quoted": C[18]},
                "json": [{"path": "status", "op": "==", "value": "ok"}],
                "security": {
                    "https_redirect_from": f"http://{USER}:{C[8]}@{dead}/",
                    "api_key": {"key": f"sk_live_{C[10][:12]}", "url": f"http://{USER}:{C[9]}@{echo}/key"},
                },
            },
            {"name": "token-user", "url": f"http://{C[17]}@{echo}/", "json": [{"path": "a", "value": 1}]},
        ],
        "prometheus": [{"name": "prom", "url": f"http://{USER}:{C[11]}@{echo}"}],
        "alertmanager": [{"name": "am", "url": f"http://{echo}", "headers": {"Authorization": f"Bearer {C[12]}"}}],
        "grafana": [{"name": "graf", "url": f"http://{USER}:{C[13]}@{echo}"}],
    }
    text = yaml.safe_dump(inventory, sort_keys=False)
    result = run_suite(text, tmp_path, "-p", "no:randomly", env={"CANARY_DSN": f"postgresql://{USER}:{C[16]}@{dead}/x"})
    assert result.rc == 1, result.output
    assert result.summary["counts"].get("failed", 0) > 20, result.summary["counts"]
    # the echo server did see the credentials: the test would prove nothing otherwise
    assert "Basic" in result.message("test_http_json_conditions[userinfo]") or "***" in result.message(
        "test_http_json_conditions[userinfo]"
    )
    outputs = {"stdout": result.output}
    for name in ("report.html", "junit.xml", "summary.json"):
        (path,) = {p.resolve() for p in tmp_path.glob(f"reports/*/*/{name}")}
        outputs[name] = path.read_text(errors="replace")
    used = [C[i] for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 18)] + [
        C[10][:12]
    ]  # the key's sk_live_ prefix is shown on purpose
    leaks = [
        f"{form} of canary {secret[:4]}... in {where}"
        for secret in used
        for form, value in forms(secret).items()
        for where, output in outputs.items()
        if value in output
    ]
    assert not leaks, "\n".join(leaks[:40])


# Secrets outside the fields declared secret, and secrets that take an unusual path out.
H = {i: hashlib.sha256(b"beyond%d" % i).hexdigest()[:14] for i in range(1, 12)}
WORDS = "correcthorsebatterystaplemonitor"  # no digit or capital: its pieces look like words
LEAKED_BY_SERVER = "0a1b2c3d4e5f6a7b8c"  # a credential only the server knows, in its Location


class EchoAll(BaseHTTPRequestHandler):
    """Answers 500 with the request's body and secret-bearing headers first, after padding
    that puts them where a message is cut; /redirect answers 302 to a URL with userinfo."""

    def _echo(self, body: bytes) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://admin:{LEAKED_BY_SERVER}@127.0.0.1/cb")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first = ("Authorization", "Cookie")
        headers = sorted(self.headers.items(), key=lambda kv: kv[0] not in first)
        pad = 156 if self.path == "/login" else 100  # the login's password is cut at 200 characters
        text = "x" * pad + body.decode(errors="replace") + " " + " ".join(f"{k}={v}" for k, v in headers)
        text += f" path={self.path}"
        data = text.encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._echo(b"")

    def do_POST(self):
        self._echo(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def log_message(self, *args):
        pass


def test_no_secret_leaves_from_fields_not_declared_secret(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoAll)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    echo, dead = f"127.0.0.1:{server.server_address[1]}", f"127.0.0.1:{closed_port()}"
    json_check = [{"path": "status", "op": "==", "value": "ok"}]
    inventory = {
        "environment": "selftest-canaries-beyond",
        "defaults": {"timeout": 2},
        "postgres": [  # libpq reads a # in the userinfo or the query as part of the password
            {"name": "hash", "dsn": f"postgresql://{USER}:ab#{H[1]}@{dead}/app"},
            {"name": "query-hash", "dsn": f"postgresql://{USER}@{dead}/app?password=cd#{H[2]}"},
        ],
        "http": [
            {"name": "cookie", "url": f"http://{echo}/c", "headers": {"Cookie": f"user=ops; session={H[3]}"}},
            {
                "name": "body",
                "url": f"http://{echo}/b",
                "method": "POST",
                "body": {"client_secret": H[4], "client_id": "ops"},
                "json": json_check,
            },
            {
                "name": "form",
                "url": f"http://{echo}/f",
                "method": "POST",
                "body": f"grant_type=x&client_secret={H[5]}",
                "json": json_check,
            },
            {
                "name": "login",
                "url": f"http://{echo}/me",
                "auth": {"login": {"url": f"http://{echo}/login", "username": "mon", "password": WORDS}},
            },
            {
                "name": "token-login",
                "url": f"http://{echo}/me2",
                "auth": {"login": {"url": f"http://{H[6]}:@{dead}/login"}},
            },
            {"name": "latin-1", "url": f"http://{USER}:pässwörd{H[7]}@{echo}/l", "json": json_check},
            {"name": "path-token", "url": f"http://{echo}/bot${{BOT_TOKEN}}/getMe", "json": json_check},
            {
                "name": "redirect",
                "url": f"http://{echo}/r",
                "security": {"https_redirect_from": f"http://{echo}/redirect"},
            },
        ],
        "commands": [
            {
                "name": "cli",
                "spec": "local://",
                "run": [{"name": "argv", "argv": ["sh", "-c", "exit 3", "sh", "${CLI_PW}"]}],
            }
        ],
    }
    log_file = tmp_path / "debug.log"
    env = {"CLI_PW": H[8], "BOT_TOKEN": H[9]}
    args = ("-p", "no:randomly", f"--log-file={log_file}", "--log-file-level=DEBUG")
    try:
        result = run_suite(yaml.safe_dump(inventory, sort_keys=False), tmp_path, *args, env=env)
    finally:
        server.shutdown()
    assert result.rc == 1, result.output
    # the secrets did reach the outputs, masked: the test would prove nothing otherwise
    assert "Cookie=***" in result.message("test_http_status[cookie]"), result.message("test_http_status[cookie]")
    assert "***" in result.message("test_http_login_succeeds[login]")
    outputs = {"stdout": result.output, "debug.log": log_file.read_text(errors="replace")}
    for name in ("report.html", "details.html", "junit.xml", "summary.json"):
        (path,) = {p.resolve() for p in tmp_path.glob(f"reports/*/*/{name}")}
        outputs[name] = path.read_text(errors="replace")
    secrets = [f"ab#{H[1]}", f"cd#{H[2]}", *(H[i] for i in range(3, 10)), WORDS, LEAKED_BY_SERVER]
    latin_1 = base64.b64encode(f"{USER}:pässwörd{H[7]}".encode("latin-1")).decode()
    found = [(s, form, value) for s in secrets for form, value in forms(s).items()]
    found += [(latin_1, f"latin-1 Basic fragment {i}", latin_1[i : i + 8]) for i in range(8, len(latin_1) - 7)]
    leaks = [
        f"{form} of {secret[:4]}... in {where}"
        for secret, form, value in found
        for where, text in outputs.items()
        if value in text
    ]
    assert not leaks, "\n".join(leaks[:40])
