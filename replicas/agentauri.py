"""AgentAuri Backend (runbook 002, inventories/agentauri.yml): a docker compose project with
event-processor, action-workers (3), api-gateway, postgres and redis; PostgreSQL
agentauri_backend over TLS with the NOTIFY trigger and sqlx migrations; Redis with the
action_jobs queue; the API behind a TLS front with a JWT-issuing /auth/me and API keys
checked against api_keys; a Base RPC node for the indexer lag and the head's age; Ponder's
HTTP server and its log file; the Telegram Bot API's getMe; the compose host is this machine
(local://: its dockerd is the replica's engine, its checkout a temp dir).

Real parts: PostgreSQL (TLS only, pg_hba hostssl) with the runbook's tables, trigger
function and _sqlx_migrations, and a LISTEN session that marks each notified event processed
(the event-processor's job, so a disabled trigger leaves events unprocessed); redis-server
with an ACL user as the README gives it; nginx in front of an HTTP app and a JWT API
(tests/servers_http_auth.JwtApi, its tokens real HS256 JWTs) and an auth_request service that
looks API keys up in the database (their SHA-256, as the gateway does); a JSON-RPC node
(tests/servers_comparisons); containers on a private Docker engine, named and labelled as
`docker compose` does, writing the runbook's log lines; PostgreSQL's certificate, key and
root.crt in the checkout's docker/postgres/certs, the very files the server serves.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import redis

from replicas.base import Drill, Replica
from replicas.parts import (
    MONITOR_PASSWORD,
    MONITOR_USER,
    Compose,
    Front,
    FrontSite,
    Notify,
    Service,
    pg_setup,
    pg_tls_conf,
)
from tests.servers import HttpServer, PostgresServer, RedisServer, Route, wait_for
from tests.servers import Service as Server
from tests.servers_comparisons import JsonRpcChains
from tests.servers_docker import DockerEngineServer
from tests.servers_http_auth import JwtApi
from tests.servers_tls import Pki

DATABASE = "agentauri_backend"
APP_USER, APP_PASSWORD = "agentauri", "agentauri-App-Pw-5521"
REDIS_PASSWORD = "opscheck-Redis-Pw-7781"
PROJECT = "agentauri-backend"
CHAIN_HEAD = 24_180_000
API_KEY = "sk_test_k3LmQ8vR2nX5pT7wZ1yB6cF"  # the synthetic account's key; its prefix is api_keys' row
TELEGRAM_TOKEN = "7012345678:AAH-rEpLiCa_BoT-k2Jd9sLqW4xZ"
SECURITY = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
PONDER_LOG = [
    "12:00:01 INFO  build     Using config file ponder.config.ts",
    "12:00:03 INFO  historical Started syncing 'base' with 0.0% cached",
    "12:04:40 INFO  historical Completed historical sync for 'base'",
    f"12:04:41 INFO  realtime  Synced block {CHAIN_HEAD - 12} on 'base'",
]
MIGRATIONS = ["20250101000000_initial_schema", "20250115000000_notify_trigger", "20250130000000_circuit_breakers"]
SCHEMA = f"""
CREATE EXTENSION pg_stat_statements;
CREATE TABLE events (id bigserial PRIMARY KEY, chain_id int NOT NULL DEFAULT 8453, block_number bigint,
    event_type text NOT NULL, payload jsonb, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE processed_events (event_id bigint PRIMARY KEY REFERENCES events(id),
    processed_at timestamptz NOT NULL DEFAULT now(), processing_duration_ms int NOT NULL);
CREATE TABLE circuit_breaker_state (trigger_id text PRIMARY KEY, state text NOT NULL DEFAULT 'closed',
    failure_count int NOT NULL DEFAULT 0, success_count int NOT NULL DEFAULT 0, last_failure_at timestamptz);
CREATE TABLE api_keys (id bigserial PRIMARY KEY, key_prefix text NOT NULL, key_hash bytea,
    is_active boolean NOT NULL, expires_at timestamptz, revoked_at timestamptz);
CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,
    installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, checksum bytea NOT NULL,
    execution_time bigint NOT NULL);
CREATE TABLE _ponder_status (chain_id int PRIMARY KEY, block_number bigint NOT NULL, updated_at timestamptz);
CREATE FUNCTION notify_new_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('new_event', NEW.id::text); RETURN NEW; END $$;
CREATE TRIGGER notify_new_event_trigger AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION notify_new_event();
INSERT INTO circuit_breaker_state (trigger_id, success_count) VALUES
    ('trg_webhook_orders', 120), ('trg_telegram_alerts', 48), ('trg_mcp_sync', 9);
INSERT INTO api_keys (key_prefix, key_hash, is_active, expires_at) VALUES
    ('sk_live_7Hq2', sha256('sk_live_7Hq2-not-the-monitor'), true, now() + interval '90 days'),
    ('{API_KEY[:12]}', sha256('{API_KEY}'), true, NULL);
INSERT INTO api_keys (key_prefix, is_active, revoked_at) VALUES ('sk_live_Old1', false, now() - interval '3 days');
INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
    SELECT split_part(m, '_', 1)::bigint, m, true, '\\x00', 12 FROM unnest(ARRAY{MIGRATIONS!r}::text[]) m;
INSERT INTO _ponder_status VALUES (8453, {CHAIN_HEAD - 12}, now());
CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_USER};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_USER};
"""
READS = ["events", "processed_events", "circuit_breaker_state", "api_keys", "_sqlx_migrations", "_ponder_status"]
ACL = "on ~* -@all +ping +info +type +exists +llen +xlen +zcard +scard +hlen +ttl +dbsize +latency|latest"
ACL += " +slowlog|get +client|setname"

EVENT_PROCESSOR = [
    '{"level":"INFO","target":"event_processor","message":"event-processor starting","version":"0.9.3"}',
    "Connected to PostgreSQL (sslmode=verify-full)",
    "Connected to Redis at redis:6379",
    "Listening for PostgreSQL NOTIFY events on channel 'new_event'",
    '{"level":"INFO","target":"event_processor::metrics","message":"tasks","fields":{"active_tasks":3}}',
]


class ApiAuth(Server):
    """api-gateway's authentication, as nginx's auth_request target (GET /auth): a Bearer API key
    (sk_live_/sk_test_) is valid when its SHA-256 is an active, unrevoked, unexpired row of
    api_keys (read over the gateway's own TLS connection); any other Bearer token goes to the JWT
    API's /auth/me. 200 lets the request through, 401 refuses it."""

    KEY_SQL = (
        "SELECT count(*) FROM api_keys WHERE key_hash = sha256(convert_to(%s, 'UTF8')) AND is_active "
        "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    )

    def __init__(self, dsn: str, jwt_me: str):
        self.dsn, self.jwt_me = dsn, jwt_me
        self.lock = threading.Lock()
        self.conn: psycopg.Connection | None = None
        auth = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                header = self.headers.get("Authorization", "")
                token = header.partition(" ")[2]
                status = auth.key_status(token) if token.startswith("sk_") else auth.jwt_status(header)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, autocommit=True, application_name="api-gateway", connect_timeout=5)
        return self.conn

    def key_status(self, key: str) -> int:
        with self.lock:
            try:
                row = self.connect().execute(self.KEY_SQL, (key,)).fetchone()
            except psycopg.Error:
                return 500
        return 200 if row and row[0] == 1 else 401

    def jwt_status(self, header: str) -> int:
        request = urllib.request.Request(self.jwt_me, headers={"Authorization": header} if header else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as refused:
            return refused.code

    def start(self) -> None:
        self.connect()  # the gateway's pool is open from its start (the connection counts see it)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.conn is not None:
            self.conn.close()


class AgentAuri(Replica):
    name = "agentauri"
    runbook = "002_99bc58f24f0587a1.txt"
    title = "AgentAuri Backend"
    adapted = {
        "hosts[agentauri-host].load_per_core_max": (
            "the compose host is the machine running the replica: its load is every engineer's, not the app's"
        ),
    }

    def build(self) -> None:
        d = self.dir
        self.pki = Pki(d / "pki")
        self.certs = d / "docker" / "postgres" / "certs"
        self.certs.mkdir(parents=True)
        self.pg_cert = self.pki.issue("postgres", hosts=("localhost", "127.0.0.1"))
        self.cert_files(self.pg_cert)
        (self.certs / "root.crt").write_bytes(self.pki.root.pem)
        self.pg = PostgresServer(
            extra_conf={
                **pg_tls_conf(self.certs / "server.crt", self.certs / "server.key"),
                "shared_preload_libraries": "'pg_stat_statements'",
                "max_connections": 30,
            },
            hba="hostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        self.redis = RedisServer("--maxmemory-policy", "noeviction")
        self.engine = DockerEngineServer()
        self.jwt = JwtApi(issuer="https://api.agentauri.ai", audience="agentauri-api", lifetime_s=7 * 86400)
        self.app = HttpServer(self.routes())
        self.chain = JsonRpcChains({"base": CHAIN_HEAD})
        self.ponder = HttpServer(self.ponder_routes())
        self.telegram = HttpServer(self.telegram_routes())
        self.services(self.pg, self.redis, self.engine, self.jwt, self.app, self.chain, self.ponder, self.telegram)

        pg_setup(self.pg, DATABASE, SCHEMA, READS)
        self.redis_setup()
        root = str(self.pki.ca_file)
        tls = f"sslmode=verify-full&sslrootcert={root}"
        app_dsn = f"postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{self.pg.port}/{DATABASE}?{tls}"
        self.listener = Notify(
            app_dsn,
            "new_event",
            "INSERT INTO processed_events (event_id, processing_duration_ms) VALUES (%(id)s, %(ms)s)",
            "event-processor",
        )
        self.gate = ApiAuth(app_dsn, self.jwt.url("/auth/me"))
        self.services(self.listener, self.gate)
        self.held: list = []
        self.psql(
            "INSERT INTO events (event_type, block_number, created_at) SELECT 'NewFeedback', "
            f"{CHAIN_HEAD - 400} + n, now() - n * interval '3 minutes' FROM generate_series(1, 20) n"
        )
        wait_for(lambda: self.listener.heard >= 20, 20, "the NOTIFY listener processing the seeded events")

        api_cert = self.pki.issue("api-gateway", hosts=("localhost", "127.0.0.1", "api.agentauri.ai"))
        bot_cert = self.pki.issue("telegram-bot-api", hosts=("localhost", "127.0.0.1", "api.telegram.org"))
        self.front = Front({"api": self.site(api_cert), "telegram": self.proxy(bot_cert, self.telegram.port)})
        self.compose = Compose(self.engine, PROJECT, self.containers())
        self.services(self.front)
        self.compose.up()

        self.files(root)
        self.trust(self.pki.ca_file)
        self.env.update(
            AGENTAURI_API_URL=f"https://127.0.0.1:{self.front.sites['api'].port}",
            AGENTAURI_BASE_RPC_URL=self.chain.url("base"),
            AGENTAURI_JWT=self.jwt.token(),
            AGENTAURI_API_KEY=API_KEY,
            AGENTAURI_DATABASE_URL=(
                f"postgresql://{MONITOR_USER}:{MONITOR_PASSWORD}@127.0.0.1:{self.pg.port}/{DATABASE}?{tls}"
            ),
            AGENTAURI_DB_HOST="127.0.0.1",
            AGENTAURI_DB_PORT=str(self.pg.port),
            AGENTAURI_PG_CA_FILE=root,
            AGENTAURI_PONDER_BLOCK_SQL="SELECT max(block_number) FROM _ponder_status",
            AGENTAURI_REDIS_URL=f"redis://{MONITOR_USER}:{REDIS_PASSWORD}@127.0.0.1:{self.redis.port}/0",
            AGENTAURI_MIGRATIONS_DIR=str(d / "rust-backend" / "database" / "migrations"),
            AGENTAURI_HOST_SPEC="local://",
            AGENTAURI_DOCKER_HOST=self.engine.url,
            AGENTAURI_COMPOSE_PROJECT=PROJECT,
            AGENTAURI_ENV_FILE=str(d / ".env"),
            AGENTAURI_PG_CERTS_DIR=str(self.certs),
            AGENTAURI_PONDER_LOG_FILE=str(self.ponder_log),
            AGENTAURI_SRC=str(d),
            AGENTAURI_PONDER_URL=self.ponder.url(""),
            AGENTAURI_TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
            AGENTAURI_TELEGRAM_API_URL=f"https://127.0.0.1:{self.front.sites['telegram'].port}",
        )
        self.adapt("hosts[agentauri-host].load_per_core_max", 1000)

    # --- parts ---

    def routes(self) -> dict[str, Route]:
        security = dict(SECURITY)
        reset = str(int(time.time()) + 3600)
        return {
            "/api/v1/health": Route(
                body={"status": "healthy", "database": "ok", "redis": "ok", "version": "0.9.3"}, headers=security
            ),
            "/api/v1/triggers": Route(
                body=[], headers={**security, "X-RateLimit-Remaining": "97", "X-RateLimit-Reset": reset}
            ),
        }

    @staticmethod
    def ponder_routes() -> dict[str, Route]:
        """Ponder's HTTP server: /health once up, /ready 200 once the historical sync is done."""
        return {"/health": Route(body=""), "/ready": Route(body="")}

    @staticmethod
    def telegram_routes() -> dict[str, Route]:
        me = {"id": 7012345678, "is_bot": True, "first_name": "AgentAuri Alerts", "username": "agentauri_alerts_bot"}
        return {f"/bot{TELEGRAM_TOKEN}/getMe": Route(body={"ok": True, "result": me})}

    def proxy(self, cert, port: int) -> FrontSite:
        """A TLS site passing every path to a loopback HTTP server."""
        locations = f"location / {{ proxy_pass http://127.0.0.1:{port}; }}"
        return FrontSite(self.pki.chain_file(cert, self.pki.intermediate), cert.key_path, locations=locations)

    def cert_files(self, cert) -> None:
        """PostgreSQL's server.crt (leaf and intermediate) and server.key in the checkout's certs folder."""
        crt, key = self.certs / "server.crt", self.certs / "server.key"
        crt.write_bytes(cert.pem + self.pki.intermediate.pem)
        key.write_bytes(cert.key_path.read_bytes())
        key.chmod(0o600)

    def site(self, cert) -> FrontSite:
        app, jwt = self.app.port, self.jwt.port
        locations = (
            f"location = /api/v1/health {{ proxy_pass http://127.0.0.1:{app}; }}\n"
            f"  location = /api/v1/auth/me {{ proxy_pass http://127.0.0.1:{jwt}/auth/me; }}\n"
            f"  location = /_auth {{ internal; proxy_pass http://127.0.0.1:{self.gate.port}/auth;"
            ' proxy_pass_request_body off; proxy_set_header Content-Length ""; }\n'
            f"  location = /api/v1/triggers {{ auth_request /_auth; proxy_pass http://127.0.0.1:{app}; }}\n"
            '  location / { return 404 "not found\\n"; }'
        )
        return FrontSite(self.pki.chain_file(cert, self.pki.intermediate), cert.key_path, locations=locations)

    def containers(self) -> list[Service]:
        return [
            Service("postgres", ["LOG:  database system is ready to accept connections"]),
            Service("redis", ["* Ready to accept connections tcp"], keep="nc -ll -p 6379 -e cat"),
            Service("event-processor", EVENT_PROCESSOR),
            Service("action-workers", ["action worker started: polling queue action_jobs"], replicas=3),
            Service(
                "api-gateway",
                ["api-gateway listening on 0.0.0.0:8080", "SecurityHeaders::for_api() applied (HSTS on)"],
                env={"ENABLE_HSTS": "true", "RUST_LOG": "info"},
            ),
        ]

    def files_env(self) -> None:
        d = self.dir
        (d / ".env").write_text(
            f"DATABASE_URL=postgresql://{APP_USER}:{APP_PASSWORD}@localhost:5432/{DATABASE}"
            "?sslmode=require&sslrootcert=./docker/postgres/certs/root.crt\n"
            "DB_MAX_CONNECTIONS=10\nREDIS_URL=redis://redis:6379\nENABLE_HSTS=true\n"
        )
        (d / ".env").chmod(0o600)

    def files(self, root: str) -> None:
        """The compose host's .env, the migrations folder, api-gateway's main.rs, Ponder's log."""
        d = self.dir
        self.files_env()
        self.ponder_log = d / "ponder-indexers" / "ponder.log"
        self.ponder_log.parent.mkdir()
        self.ponder_log.write_text("".join(f"{line}\n" for line in PONDER_LOG))
        migrations = d / "rust-backend" / "database" / "migrations"
        migrations.mkdir(parents=True)
        for name in MIGRATIONS:
            (migrations / f"{name}.sql").write_text("-- sqlx migration\n")
        main = d / "rust-backend" / "crates" / "api-gateway" / "src" / "main.rs"
        main.parent.mkdir(parents=True)
        main.write_text("App::new()\n    .wrap(SecurityHeaders::for_api())\n    .service(api_v1())\n")

    def redis_setup(self) -> None:
        client = self.redis.client()
        client.execute_command("ACL", "SETUSER", MONITOR_USER, *ACL.split(), f">{REDIS_PASSWORD}")
        client.delete("action_jobs")
        client.rpush(
            "action_jobs", *[f'{{"job":"webhook","trigger_id":"trg_webhook_orders","n":{i}}}' for i in range(12)]
        )

    def psql(self, sql: str) -> str:
        return self.pg.psql(sql, dbname=DATABASE)

    def queue(self, depth: int) -> None:
        client: redis.Redis = self.redis.client()
        client.delete("action_jobs")
        pipe = client.pipeline(transaction=False)
        for start in range(0, depth, 5000):
            pipe.rpush("action_jobs", *[f'{{"job":"webhook","n":{i}}}' for i in range(start, min(depth, start + 5000))])
        pipe.execute()


# --- drills: the runbook's "Problem" sections ------------------------------------------------

RECORD = "INSERT INTO processed_events (event_id, processing_duration_ms) VALUES (%(id)s, %(ms)s)"
LATE_EVENT = (
    "INSERT INTO events (event_type, block_number, created_at) "
    f"VALUES ('NewFeedback', {CHAIN_HEAD}, now() - interval '6 minutes')"
)
DROP_UNPROCESSED = "DELETE FROM events e WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = e.id)"


def _fresh(*services: str):
    """A reset that recreates services (their logs start afresh, as after `docker compose up -d`)."""

    def reset(r: AgentAuri) -> None:
        for service in services:
            r.compose.recreate(service)

    return reset


def _log(service: str, *lines: str):
    return lambda r: r.compose.log(service, *lines)


def _trigger_off(r: AgentAuri) -> None:
    r.psql("ALTER TABLE events DISABLE TRIGGER notify_new_event_trigger")
    r.psql(LATE_EVENT)  # an event arrived 6 minutes ago: nothing notified the processor


def _trigger_on(r: AgentAuri) -> None:
    r.psql("ALTER TABLE events ENABLE TRIGGER notify_new_event_trigger")
    r.psql(DROP_UNPROCESSED)


def _listener_lost(r: AgentAuri) -> None:
    r.listener.__exit__(None, None, None)
    lines = [*EVENT_PROCESSOR[:3], "ERROR LISTENER: connection to PostgreSQL lost: server closed the connection"]
    r.compose.recreate("event-processor", lines=lines)
    r.psql(LATE_EVENT)


def _listener_back(r: AgentAuri) -> None:
    r.psql(DROP_UNPROCESSED)
    r.listener = Notify(r.listener.dsn, "new_event", RECORD, "event-processor")
    r.services(r.listener)
    r.compose.recreate("event-processor")


def _redis_down(r: AgentAuri) -> None:
    r.redis.stop()
    r.compose.stop("redis")
    r.compose.log("event-processor", "ERROR: Failed to connect to Redis: Connection refused (os error 111)")
    r.app.routes["/api/v1/health"] = Route(
        status=503,
        body={"status": "degraded", "database": "ok", "redis": "down"},
        headers=dict(r.app.routes["/api/v1/health"].headers),  # the gateway's headers, as they are
    )


def _redis_up(r: AgentAuri) -> None:
    r.redis.start()
    r.redis_setup()
    r.app.routes.update(r.routes())
    r.compose.recreate("redis")
    r.compose.recreate("event-processor")


def _pool_exhausted(r: AgentAuri) -> None:
    dsn = r.listener.dsn
    r.held = [psycopg.connect(dsn, application_name="api-gateway", connect_timeout=5) for _ in range(22)]
    r.compose.log("event-processor", "ERROR: Failed to acquire connection from pool", "Connection timeout after 30s")


def _pool_released(r: AgentAuri) -> None:
    for conn in r.held:
        conn.close()
    r.held = []
    r.compose.recreate("event-processor")


def _breakers_open(r: AgentAuri) -> None:
    r.psql("UPDATE circuit_breaker_state SET state = 'open', failure_count = 5, last_failure_at = now()")
    lines = []
    for trigger in ("trg_webhook_orders", "trg_telegram_alerts", "trg_mcp_sync"):
        lines += [f"WARN Circuit breaker OPEN trigger={trigger}"] + [
            f"WARN skipping trigger (fail-fast) trigger={trigger} event={n}" for n in range(4)
        ]
    r.compose.log("event-processor", *lines)


def _breakers_closed(r: AgentAuri) -> None:
    r.psql("UPDATE circuit_breaker_state SET state = 'closed', failure_count = 0, last_failure_at = NULL")
    r.compose.recreate("event-processor")


def _wrong_sslmode(r: AgentAuri) -> None:
    env = r.dir / ".env"
    env.write_text(
        env.read_text().replace("sslmode=require&sslrootcert=./docker/postgres/certs/root.crt", "sslmode=disable")
    )
    r.compose.log("api-gateway", "ERROR: connection requires a valid SSL connection")


def _right_sslmode(r: AgentAuri) -> None:
    r.files_env()
    r.compose.recreate("api-gateway")


def _rate_limited(r: AgentAuri) -> None:
    route = r.app.routes["/api/v1/triggers"]
    headers = {**route.headers, "X-RateLimit-Remaining": "0"}
    r.app.routes["/api/v1/triggers"] = Route(status=429, body={"error": "Too Many Requests"}, headers=headers)


def _chain_ahead(r: AgentAuri) -> None:
    r.chain.heads["base"] = CHAIN_HEAD + 87_654  # "Latest indexed block: 12345 / Current chain block: 99999"
    r.ponder.routes["/ready"] = Route(status=503, body="Historical indexing is not complete")


def _chain_back(r: AgentAuri) -> None:
    r.chain.heads["base"] = CHAIN_HEAD
    r.ponder.routes.update(r.ponder_routes())


def _cert_renewed(r: AgentAuri) -> None:
    """server.crt and server.key renewed on disk; PostgreSQL not reloaded, so it serves the old pair."""
    r.cert_files(r.pki.issue("postgres-renewed", hosts=("localhost", "127.0.0.1")))


def _ponder_rate_limited(r: AgentAuri) -> None:
    with r.ponder_log.open("a") as log:
        log.write("12:31:07 WARN  realtime  RPC request failed: 429 (rate limit exceeded), retrying in 2s\n")


def _ponder_log_fresh(r: AgentAuri) -> None:
    r.ponder_log.write_text("".join(f"{line}\n" for line in PONDER_LOG))


def _bot_token_revoked(r: AgentAuri) -> None:
    route = Route(status=401, body={"ok": False, "error_code": 401, "description": "Unauthorized"})
    r.telegram.routes[f"/bot{TELEGRAM_TOKEN}/getMe"] = route


def _key_revoked(r: AgentAuri) -> None:
    r.psql(f"UPDATE api_keys SET is_active = false, revoked_at = now() WHERE key_prefix = '{API_KEY[:12]}'")


def _key_restored(r: AgentAuri) -> None:
    r.psql(f"UPDATE api_keys SET is_active = true, revoked_at = NULL WHERE key_prefix = '{API_KEY[:12]}'")


def _slow_statements(r: AgentAuri) -> None:
    """A statement averaging 150 ms over 10 calls (the runbook logs queries over 100 ms)."""
    with psycopg.connect(r.listener.dsn, autocommit=True, application_name="api-gateway") as conn:
        for _ in range(10):
            conn.execute("SELECT pg_sleep(0.15), count(*) FROM events")


def _breaker_stuck(r: AgentAuri) -> None:
    r.psql(
        "UPDATE circuit_breaker_state SET state = 'open', failure_count = 5, "
        "last_failure_at = now() - interval '10 minutes' WHERE trigger_id = 'trg_mcp_sync'"
    )


def _slow_events(r: AgentAuri) -> None:
    r.psql("UPDATE processed_events SET processing_duration_ms = 2400 WHERE processed_at > now() - interval '1 hour'")


def _fast_events(r: AgentAuri) -> None:
    r.psql("UPDATE processed_events SET processing_duration_ms = 12")


def _rpc_stale(r: AgentAuri) -> None:
    r.chain.block_age_s["base"] = 600  # the provider's latest block is 10 minutes old


def _hsts_off(r: AgentAuri) -> None:
    r.compose.services["api-gateway"].env["ENABLE_HSTS"] = "false"
    r.compose.recreate("api-gateway")
    for route in r.app.routes.values():
        route.headers.pop("Strict-Transport-Security", None)


def _hsts_on(r: AgentAuri) -> None:
    r.compose.services["api-gateway"].env["ENABLE_HSTS"] = "true"
    r.compose.recreate("api-gateway")
    r.app.routes.update(r.routes())


def _queue(depth: int):
    def inject(r: AgentAuri) -> None:
        r.queue(depth)
        r.compose.log("event-processor", f"WARN QUEUE_HIGH_DEPTH action_jobs depth={depth}")

    return inject


def _queue_back(r: AgentAuri) -> None:
    r.redis_setup()
    r.compose.recreate("event-processor")


EP = "event-processor"
AgentAuri.drills = [
    Drill(
        "notify-trigger-disabled",
        "Events not being processed > Cause 2: Database trigger not firing",
        "notify_new_event_trigger disabled; an event 6 minutes old was never notified",
        (
            "test_postgres_required_trigger_enabled[agentauri-db:notify_new_event_trigger]",
            "test_postgres_no_disabled_triggers[agentauri-db]",
            "test_postgres_sql_assertion[agentauri-db:events-processed-within-5-min]",
        ),
        _trigger_off,
        _trigger_on,
        group=0,
    ),
    Drill(
        "queue-warning",
        "High queue depth (Redis): Queue depth > 10,000",
        "action_jobs holds 12,000 jobs; QUEUE_HIGH_DEPTH logged",
        (
            "test_redis_queue_depth_below_warning[agentauri-redis:action_jobs]",
            "test_log_forbidden_pattern_absent[event-processor:queue_high_depth]",
        ),
        _queue(12_000),
        _queue_back,
        group=0,
    ),
    Drill(
        "wrong-sslmode",
        "TLS connection fails > Solution 2: Wrong sslmode",
        "DATABASE_URL in .env says sslmode=disable; api-gateway logs 'connection requires a valid SSL connection'",
        (
            "test_config_setting_as_expected[agentauri-env:database-url-sslmode]",
            "test_config_setting_as_expected[agentauri-env:database-url-sslrootcert]",
            "test_log_forbidden_pattern_absent[api-gateway:db_tls]",
        ),
        _wrong_sslmode,
        _right_sslmode,
        group=0,
    ),
    Drill(
        "task-panic",
        "Silent task failures (events lost)",
        "TASK_PANIC, EVENT_PROCESSING_TIMEOUT and 150 active tasks in event-processor's log",
        (
            "test_log_forbidden_pattern_absent[event-processor:task_panic]",
            "test_log_forbidden_pattern_absent[event-processor:event_processing_timeout]",
            "test_log_forbidden_pattern_absent[event-processor:active_tasks_over_100]",
        ),
        _log(
            EP,
            "ERROR TASK_PANIC task=process_event event=9912 panic='called `Option::unwrap()` on a `None`'",
            "ERROR EVENT_PROCESSING_TIMEOUT event=9913 after 30s",
            '{"level":"INFO","target":"event_processor::metrics","message":"tasks","fields":{"active_tasks":150}}',
        ),
        _fresh(EP),
        group=0,
    ),
    Drill(
        "worker-errors",
        "High queue depth > Solution 2: Check worker health",
        "action-workers log CRITICAL and 12 ERROR lines in the hour",
        (
            "test_log_forbidden_pattern_absent[action-workers:critical]",
            "test_log_error_rate_below_limit[action-workers:errors]",
        ),
        _log(
            "action-workers",
            "CRITICAL: webhook action failed permanently: trigger=trg_webhook_orders",
            *[f"ERROR: webhook POST https://hooks.example.com/orders returned 502 (attempt {n})" for n in range(12)],
        ),
        _fresh("action-workers"),
        group=0,
    ),
    Drill(
        "rate-limit-exceeded",
        "Rate limit exceeded",
        "GET /api/v1/triggers answers 429 with X-RateLimit-Remaining: 0",
        (
            "test_http_status[triggers-rate-limit]",
            "test_http_response_headers[triggers-rate-limit]",
            "test_api_key_accepted[api-health]",  # the synthetic account's key is refused with 429 too
        ),
        _rate_limited,
        lambda r: r.app.routes.update(r.routes()),
        group=0,
    ),
    Drill(
        "indexer-not-syncing",
        "Ponder Indexer Issues: Indexer not syncing",
        "the chain head is 87,654 blocks past _ponder_status; Ponder's /ready answers 503",
        ("test_comparison_holds[ponder-indexer-lag]", "test_http_status[ponder-ready]"),
        _chain_ahead,
        _chain_back,
        group=0,
    ),
    Drill(
        "slow-processing",
        "Slow event processing (>1s per event)",
        "processed_events of the last hour took 2,400 ms each",
        ("test_postgres_sql_assertion[agentauri-db:processing-under-1s]",),
        _slow_events,
        _fast_events,
        group=0,
    ),
    Drill(
        "listener-disconnected",
        "Events not being processed > Cause 1: PostgreSQL NOTIFY listener disconnected",
        "event-processor restarted without its LISTEN session; an event 6 minutes old is unprocessed",
        (
            "test_log_required_pattern_present[event-processor:notify_listener]",
            "test_postgres_sql_assertion[agentauri-db:events-processed-within-5-min]",
        ),
        _listener_lost,
        _listener_back,
        group=1,
    ),
    Drill(
        "queue-critical",
        "High queue depth > Solution 3: CRITICAL_QUEUE_DEPTH (50,000)",
        "action_jobs holds 60,000 jobs; QUEUE_HIGH_DEPTH logged",
        (
            "test_redis_queue_depth_below_warning[agentauri-redis:action_jobs]",
            "test_redis_queue_depth_below_critical[agentauri-redis:action_jobs]",
            "test_log_forbidden_pattern_absent[event-processor:queue_high_depth]",
        ),
        _queue(60_000),
        _queue_back,
        group=1,
    ),
    Drill(
        "circuit-breakers-open",
        "All triggers disabled (circuit breaker OPEN)",
        "every circuit_breaker_state row open; 'Circuit breaker OPEN' and 'skipping trigger (fail-fast)' logged",
        (
            "test_postgres_sql_assertion[agentauri-db:no-open-circuit-breakers]",
            "test_log_forbidden_pattern_absent[event-processor:circuit_breaker_open]",
        ),
        _breakers_open,
        _breakers_closed,
        group=1,
    ),
    Drill(
        "breaker-not-persisting",
        "Circuit breaker state not persisting",
        "6 CIRCUIT_BREAKER_PERSIST_FAILED lines (more than 5)",
        (
            "test_log_forbidden_pattern_absent[event-processor:cb_persist_failed]",
            "test_log_forbidden_pattern_absent[event-processor:cb_persist_failed_frequent]",
        ),
        _log(EP, *[f"ERROR: CIRCUIT_BREAKER_PERSIST_FAILED trigger=trg_mcp_sync attempt={n}" for n in range(6)]),
        _fresh(EP),
        group=1,
    ),
    Drill(
        "polling-fallback-aborted",
        "Events not being processed > Cause 3: Polling fallback batch aborted",
        "POLLING_FALLBACK_BATCH_ABORTED after 10 consecutive failures",
        ("test_log_forbidden_pattern_absent[event-processor:polling_fallback_aborted]",),
        _log(EP, "ERROR POLLING_FALLBACK_BATCH_ABORTED after 10 consecutive failures"),
        _fresh(EP),
        group=1,
    ),
    Drill(
        "trigger-count-exceeded",
        "Slow event processing > Solution 1: Too many triggers per event",
        "TRIGGER_COUNT_EXCEEDED: an event matched more than 100 triggers",
        ("test_log_forbidden_pattern_absent[event-processor:trigger_count_exceeded]",),
        _log(EP, "WARN TRIGGER_COUNT_EXCEEDED event=9920 triggers=137 limit=100 (truncated)"),
        _fresh(EP),
        group=1,
    ),
    Drill(
        "apikey-dummy-hash",
        "API Key authentication fails > Solution 2: Timing attack mitigation issue",
        "api-gateway logs 'CRITICAL: Failed to verify API key due to missing dummy hash'",
        ("test_log_forbidden_pattern_absent[api-gateway:apikey_dummy_hash]",),
        _log("api-gateway", "CRITICAL: Failed to verify API key due to missing dummy hash"),
        _fresh("api-gateway"),
        group=1,
    ),
    Drill(
        "hsts-disabled",
        "Security headers missing > Solution 1: HSTS disabled",
        "api-gateway runs with ENABLE_HSTS=false and sends no Strict-Transport-Security",
        ("test_container_env_as_expected[agentauri-compose:api-gateway:ENABLE_HSTS]", "test_hsts_header[api-health]"),
        _hsts_off,
        _hsts_on,
        group=2,
    ),
    Drill(
        "pool-exhausted",
        "Connection pool exhausted",
        "22 more api-gateway sessions: 25 of the 27 connections in use, 23 from one client (its pool is 10);"
        " 'Failed to acquire connection from pool' logged",
        (
            "test_postgres_connections_below_warning[agentauri-db]",
            "test_comparison_holds[db-pool-per-client]",
            "test_postgres_connections_below_critical[agentauri-db]",
            "test_log_forbidden_pattern_absent[event-processor:pool_exhausted]",
        ),
        _pool_exhausted,
        _pool_released,
        group=2,
    ),
    Drill(
        "redis-down",
        "Redis connection refused",
        "redis-server stopped and the redis container with it; /api/v1/health answers 503",
        (
            "test_redis_ping[agentauri-redis]",
            "test_redis_latency_below_limit[agentauri-redis]",
            "test_redis_memory_below_limit[agentauri-redis]",
            "test_redis_clients_below_limit[agentauri-redis]",
            "test_redis_queue_depth_below_warning[agentauri-redis:action_jobs]",
            "test_redis_queue_depth_below_critical[agentauri-redis:action_jobs]",
            "test_redis_no_new_evictions[agentauri-redis]",
            "test_redis_no_new_rejected_connections[agentauri-redis]",
            "test_redis_persistence_ok[agentauri-redis]",
            "test_container_running[agentauri-compose:redis]",
            "test_container_cpu_below_limit[agentauri-compose:redis]",
            "test_container_memory_below_limit[agentauri-compose:redis]",
            "test_container_reaches[agentauri-compose:event-processor->redis:6379]",
            "test_log_forbidden_pattern_absent[event-processor:redis_refused]",
            "test_http_status[api-health]",
        ),
        _redis_down,
        _redis_up,
        group=2,
    ),
    Drill(
        "pg-cert-not-reloaded",
        "TLS connection fails > Solution 3: Certificate expired (renewed, not reloaded)",
        "server.crt and server.key renewed in docker/postgres/certs; PostgreSQL still serves the old certificate",
        ("test_tls_serves_certificate_file[agentauri-db]",),
        _cert_renewed,
        lambda r: r.cert_files(r.pg_cert),
        group=0,
    ),
    Drill(
        "ponder-rpc-rate-limit",
        "Ponder Indexer Issues > Solution 1: RPC rate limit exceeded",
        "ponder.log says 'rate limit exceeded' (429 from the RPC provider)",
        ("test_log_forbidden_pattern_absent[ponder:rpc_rate_limit]",),
        _ponder_rate_limited,
        _ponder_log_fresh,
        group=1,
    ),
    Drill(
        "telegram-token-invalid",
        "Circuit Breaker Issues > Solution 3: Fix root cause (Telegram bot token invalid)",
        "the Bot API answers getMe with 401 Unauthorized",
        ("test_http_status[telegram-bot]", "test_http_json_conditions[telegram-bot]"),
        _bot_token_revoked,
        lambda r: r.telegram.routes.update(r.telegram_routes()),
        group=1,
    ),
    Drill(
        "apikey-revoked",
        "API Key authentication fails > Solution 1: Key revoked or expired",
        "the synthetic account's API key is revoked in api_keys; the gateway refuses it with 401",
        ("test_api_key_accepted[api-health]",),
        _key_revoked,
        _key_restored,
        group=1,
    ),
    Drill(
        "slow-queries",
        "Slow event processing > Solution 2: Slow database queries",
        "a statement averages 150 ms over 10 calls in pg_stat_statements (over the 100 ms the runbook logs)",
        ("test_postgres_no_slow_statements[agentauri-db]",),
        _slow_statements,
        lambda r: r.psql("SELECT pg_stat_statements_reset()"),
        group=2,
    ),
    Drill(
        "rpc-head-stale",
        "Ponder Indexer Issues > Indexer not syncing > Check RPC provider status",
        "the Base RPC provider's latest block is 10 minutes old",
        ("test_comparison_holds[chain-head-fresh]",),
        _rpc_stale,
        lambda r: r.chain.block_age_s.clear(),
        group=2,
    ),
    Drill(
        "breaker-stuck-open",
        "Circuit Breaker Issues > Solution 1: Wait for half-open transition (it never came)",
        "trg_mcp_sync's circuit breaker has been open for 10 minutes (MCP server unreachable)",
        (
            "test_postgres_sql_assertion[agentauri-db:no-open-circuit-breakers]",
            "test_postgres_sql_assertion[agentauri-db:no-breaker-stuck-open]",
        ),
        _breaker_stuck,
        _breakers_closed,
        group=2,
    ),
]
