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
        self.held: list = []
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

    def files_env(self) -> None:
        d = self.dir
        (d / ".env").write_text(
            f"DATABASE_URL=postgresql://{APP_USER}:{APP_PASSWORD}@localhost:5432/{DATABASE}"
            "?sslmode=require&sslrootcert=./docker/postgres/certs/root.crt\n"
            "DB_MAX_CONNECTIONS=10\nREDIS_URL=redis://redis:6379\nENABLE_HSTS=true\n"
        )
        (d / ".env").chmod(0o600)

    def files(self, root: str) -> None:
        """The compose host's .env, the migrations folder and api-gateway's main.rs."""
        d = self.dir
        self.files_env()
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
    r.app.routes["/api/v1/health"] = Route(status=503, body={"status": "degraded", "database": "ok", "redis": "down"})


def _redis_up(r: AgentAuri) -> None:
    r.redis.start()
    r.redis_setup()
    r.app.routes.update(r.routes())
    r.compose.recreate("redis")
    r.compose.recreate("event-processor")


def _pool_exhausted(r: AgentAuri) -> None:
    dsn = r.listener.dsn
    r.held = [psycopg.connect(dsn, application_name="api-gateway", connect_timeout=5) for _ in range(23)]
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


def _chain_back(r: AgentAuri) -> None:
    r.chain.heads["base"] = CHAIN_HEAD


def _slow_events(r: AgentAuri) -> None:
    r.psql("UPDATE processed_events SET processing_duration_ms = 2400 WHERE processed_at > now() - interval '1 hour'")


def _fast_events(r: AgentAuri) -> None:
    r.psql("UPDATE processed_events SET processing_duration_ms = 12")


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
        ("test_http_status[triggers-rate-limit]", "test_http_response_headers[triggers-rate-limit]"),
        _rate_limited,
        lambda r: r.app.routes.update(r.routes()),
        group=0,
    ),
    Drill(
        "indexer-not-syncing",
        "Ponder Indexer Issues: Indexer not syncing",
        "the chain head is 87,654 blocks past _ponder_status",
        ("test_comparison_holds[ponder-indexer-lag]",),
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
        ("test_log_forbidden_pattern_absent[event-processor:cb_persist_failed]",),
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
        ("test_container_env_as_expected[agentauri-compose:api-gateway:ENABLE_HSTS]",),
        _hsts_off,
        _hsts_on,
        group=2,
    ),
    Drill(
        "pool-exhausted",
        "Connection pool exhausted",
        "23 more sessions hold 25 of the 27 connections; 'Failed to acquire connection from pool' logged",
        (
            "test_postgres_connections_below_warning[agentauri-db]",
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
]
