"""AgentAuri Backend (runbook 002, inventories/agentauri.yml): a docker compose project with
event-processor, action-workers (3), api-gateway, postgres and redis; PostgreSQL
agentauri_backend over TLS with the NOTIFY trigger and sqlx migrations; Redis with the
action_jobs queue; the API behind a TLS front with a JWT-issuing /auth/me; a Base RPC node
for the indexer lag.

Real parts: PostgreSQL (TLS only, pg_hba hostssl) with the runbook's tables, trigger
function and _sqlx_migrations, and a LISTEN session that marks each notified event processed
(the event-processor's job, so a disabled trigger leaves events unprocessed); redis-server
with an ACL user as the README gives it; nginx in front of an HTTP app and a JWT API
(tests/servers_http_auth.JwtApi, its tokens real HS256 JWTs); a JSON-RPC node
(tests/servers_comparisons); containers on a private Docker engine, named and labelled as
`docker compose` does, writing the runbook's log lines.
"""

from __future__ import annotations

import time

import redis

from replicas.base import Drill, Replica
from replicas.parts import MONITOR_PASSWORD, MONITOR_USER, Compose, Front, FrontSite, Notify, Service, pg_setup, pg_tls_conf
from tests.servers import HttpServer, PostgresServer, RedisServer, Route, wait_for
from tests.servers_comparisons import JsonRpcChains
from tests.servers_docker import DockerEngineServer
from tests.servers_http_auth import JwtApi
from tests.servers_tls import Pki

DATABASE = "agentauri_backend"
APP_USER, APP_PASSWORD = "agentauri", "agentauri-App-Pw-5521"
REDIS_PASSWORD = "opscheck-Redis-Pw-7781"
PROJECT = "agentauri-backend"
CHAIN_HEAD = 24_180_000
MIGRATIONS = ["20250101000000_initial_schema", "20250115000000_notify_trigger", "20250130000000_circuit_breakers"]
SCHEMA = f"""
CREATE EXTENSION pg_stat_statements;
CREATE TABLE events (id bigserial PRIMARY KEY, chain_id int NOT NULL DEFAULT 8453, block_number bigint,
    event_type text NOT NULL, payload jsonb, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE processed_events (event_id bigint PRIMARY KEY REFERENCES events(id),
    processed_at timestamptz NOT NULL DEFAULT now(), processing_duration_ms int NOT NULL);
CREATE TABLE circuit_breaker_state (trigger_id text PRIMARY KEY, state text NOT NULL DEFAULT 'closed',
    failure_count int NOT NULL DEFAULT 0, success_count int NOT NULL DEFAULT 0, last_failure_at timestamptz);
CREATE TABLE api_keys (id bigserial PRIMARY KEY, key_prefix text NOT NULL, is_active boolean NOT NULL,
    expires_at timestamptz, revoked_at timestamptz);
CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,
    installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, checksum bytea NOT NULL,
    execution_time bigint NOT NULL);
CREATE TABLE _ponder_status (chain_id int PRIMARY KEY, block_number bigint NOT NULL, updated_at timestamptz);
CREATE FUNCTION notify_new_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('new_event', NEW.id::text); RETURN NEW; END $$;
CREATE TRIGGER notify_new_event_trigger AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION notify_new_event();
INSERT INTO circuit_breaker_state (trigger_id, success_count) VALUES
    ('trg_webhook_orders', 120), ('trg_telegram_alerts', 48), ('trg_mcp_sync', 9);
INSERT INTO api_keys (key_prefix, is_active, expires_at) VALUES
    ('sk_live_7Hq2', true, now() + interval '90 days'), ('sk_test_k3Lm', true, NULL);
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


class AgentAuri(Replica):
    name = "agentauri"
    runbook = "002_99bc58f24f0587a1.txt"
    title = "AgentAuri Backend"

    def build(self) -> None:
        d = self.dir
        self.pki = Pki(d / "pki")
        pg_cert = self.pki.issue("postgres", hosts=("localhost", "127.0.0.1"))
        chain = self.pki.chain_file(pg_cert, self.pki.intermediate)
        self.pg = PostgresServer(
            extra_conf={
                **pg_tls_conf(chain, pg_cert.key_path),
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
        self.services(self.pg, self.redis, self.engine, self.jwt, self.app, self.chain)

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
        self.services(self.listener)
        self.psql(
            "INSERT INTO events (event_type, block_number, created_at) SELECT 'NewFeedback', "
            f"{CHAIN_HEAD - 400} + n, now() - n * interval '3 minutes' FROM generate_series(1, 20) n"
        )
        wait_for(lambda: self.listener.heard >= 20, 20, "the NOTIFY listener processing the seeded events")

        api_cert = self.pki.issue("api-gateway", hosts=("localhost", "127.0.0.1", "api.agentauri.ai"))
        self.front = Front({"api": self.site(api_cert)})
        self.compose = Compose(self.engine, PROJECT, self.containers())
        self.services(self.front)
        self.compose.up()

        self.files(root)
        self.trust(self.pki.ca_file)
        self.env.update(
            AGENTAURI_API_URL=f"https://127.0.0.1:{self.front.sites['api'].port}",
            AGENTAURI_BASE_RPC_URL=self.chain.url("base"),
            AGENTAURI_JWT=self.jwt.token(),
            AGENTAURI_DATABASE_URL=(
                f"postgresql://{MONITOR_USER}:{MONITOR_PASSWORD}@127.0.0.1:{self.pg.port}/{DATABASE}?{tls}"
            ),
            AGENTAURI_REDIS_URL=f"redis://{MONITOR_USER}:{REDIS_PASSWORD}@127.0.0.1:{self.redis.port}/0",
            AGENTAURI_MIGRATIONS_DIR=str(d / "rust-backend" / "database" / "migrations"),
            AGENTAURI_DOCKER_HOST=self.engine.url,
            AGENTAURI_ENV_FILE=str(d / ".env"),
            AGENTAURI_SRC=str(d),
        )

    # --- parts ---

    def routes(self) -> dict[str, Route]:
        security = {
            "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'",
        }
        reset = str(int(time.time()) + 3600)
        return {
            "/api/v1/health": Route(
                body={"status": "healthy", "database": "ok", "redis": "ok", "version": "0.9.3"}, headers=security
            ),
            "/api/v1/triggers": Route(
                body=[], headers={**security, "X-RateLimit-Remaining": "97", "X-RateLimit-Reset": reset}
            ),
        }

    def site(self, cert) -> FrontSite:
        app, jwt = self.app.port, self.jwt.port
        locations = (
            f"location = /api/v1/health {{ proxy_pass http://127.0.0.1:{app}; }}\n"
            f"  location = /api/v1/auth/me {{ proxy_pass http://127.0.0.1:{jwt}/auth/me; }}\n"
            f"  location = /_auth {{ internal; proxy_pass http://127.0.0.1:{jwt}/auth/me;"
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

    def files(self, root: str) -> None:
        """The compose host's .env, the migrations folder and api-gateway's main.rs."""
        d = self.dir
        (d / ".env").write_text(
            f"DATABASE_URL=postgresql://{APP_USER}:{APP_PASSWORD}@localhost:5432/{DATABASE}"
            "?sslmode=require&sslrootcert=./docker/postgres/certs/root.crt\n"
            "DB_MAX_CONNECTIONS=10\nREDIS_URL=redis://redis:6379\nENABLE_HSTS=true\n"
        )
        (d / ".env").chmod(0o600)
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
        client.rpush("action_jobs", *[f'{{"job":"webhook","trigger_id":"trg_webhook_orders","n":{i}}}' for i in range(12)])

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


def _noop(replica) -> None:
    pass


AgentAuri.drills = []
