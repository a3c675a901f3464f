"""AI Workflow Engine (runbook 003, inventories/awe.yml): the API behind an mTLS proxy (caddy in
production), PostgreSQL ai_workflow_engine behind PgBouncer, Alembic migrations, a nightly
pg_dump in the database container, a compose project api / database / pgbouncer / caddy.

Real parts: nginx requiring a client certificate from the project's CA (tests/servers_http_auth
.MtlsProxy) in front of an API issuing real JWTs (JwtApi: /auth/login, /auth/me, /health);
certificate files on disk as setup_mtls_infrastructure.sh leaves them (certs/ca, server,
client); PostgreSQL with alembic_version and PgBouncer (pool_size 2) in front of it; the
database container runs the host's own PostgreSQL client tools (/usr mounted read-only)
against the real server's socket, so `pg_isready` and `pg_restore --list` in it are real, and
/backup/latest.sql is a real `pg_dump -Fc` archive. (Its userland is the host's Debian one,
as in the Debian-based postgres image: the backups family's `find -printf` needs GNU find,
which busybox lacks.) The api container has the same userland and the app's /app: a real
alembic.ini, env.py and versions/, so `alembic current` (Debian's alembic, psycopg2) reads
alembic_version over the server's socket as the app's role; /var/log/security_audit.log is
the app's audit log. pg_stat_statements is loaded, so the slow-statement check runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time

import psycopg

from replicas.base import Drill, Replica
from replicas.parts import MONITOR_PASSWORD, MONITOR_USER, Compose, Service, pg_setup, reload
from tests.servers import PgBouncerServer, PostgresServer, closed_port
from tests.servers_docker import DockerEngineServer
from tests.servers_http_auth import PASSWORD, USER, JwtApi, MtlsProxy, ProxySite
from tests.servers_tls import Pki

DATABASE = "ai_workflow_engine"
APP_USER, APP_PASSWORD = "awe", "awe-App-Pw-2291"
STATS_PASSWORD = "awe-Stats-Pw-6630"
PROJECT = "ai-workflow-engine"
REVISIONS = [
    ("3b1f0c2a9d10", None, "initial"),
    ("8c4e7d21aa05", "3b1f0c2a9d10", "agents"),
    ("e2a9f6b3c7d4", "8c4e7d21aa05", "tool_runs"),
]
HEAD = REVISIONS[-1][0]
SCHEMA = f"""
CREATE EXTENSION pg_stat_statements;
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('{HEAD}');
CREATE TABLE workflows (id bigserial PRIMARY KEY, name text NOT NULL, definition text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO workflows (name, definition)
    SELECT 'workflow-' || n, repeat(md5(n::text), 8) FROM generate_series(1, 600) n;
CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_USER};
"""
ALEMBIC_ENV = """\
import os

from alembic import context
from sqlalchemy import create_engine

if context.is_offline_mode():
    context.configure(url=os.environ["DATABASE_URL"])
    context.run_migrations()
else:
    with create_engine(os.environ["DATABASE_URL"]).connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
"""
AUDIT = [
    "2025-12-01 08:00:01,113 - security_audit - INFO - login_success user=opscheck-monitor source=127.0.0.1",
    "2025-12-01 08:05:12,480 - security_audit - INFO - token_issued user=opscheck-monitor lifetime=8h",
    "2025-12-01 08:05:13,002 - security_audit - WARNING - login_failure user=admin source=127.0.0.1",
]
CADDY = [
    '{"level":"info","ts":1764580000.1,"logger":"tls","msg":"certificate loaded","subjects":["localhost"]}',
    '{"level":"info","ts":1764580001.2,"logger":"http.log.access","msg":"handled request","status":200,'
    '"request":{"method":"GET","uri":"/health","proto":"HTTP/2.0"},"duration":0.002}',
    '{"level":"info","ts":1764580002.4,"logger":"http.log.access","msg":"handled request","status":200,'
    '"request":{"method":"POST","uri":"/auth/login","proto":"HTTP/2.0"},"duration":0.011}',
]


class Awe(Replica):
    name = "awe"
    runbook = "003_487096954b44f3ad.txt"
    title = "AI Workflow Engine"
    adapted = {
        "hosts[awe-host].ports": "the host's listening port is the proxy's random port (the seed's 8443 is a literal)",
        "hosts[awe-host].load_per_core_max": "the host is the machine running the replica: its load is not the app's",
    }

    def build(self) -> None:
        if not shutil.which("alembic"):  # the api container runs the host's
            raise RuntimeError("the awe replica needs alembic and psycopg2: apt-get install alembic python3-psycopg2")
        self.certs = self.pki_files()
        self.pg = PostgresServer(  # the api container's alembic logs in over the socket as the app's role
            extra_conf={"max_connections": 30, "shared_preload_libraries": "'pg_stat_statements'"},
            hba=f"local {DATABASE} {APP_USER} scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        self.engine = DockerEngineServer()
        self.api = JwtApi(issuer="ai-workflow-engine", audience="awe-api", lifetime_s=8 * 3600)
        self.services(self.pg, self.engine, self.api)
        pg_setup(self.pg, DATABASE, SCHEMA, ["alembic_version"])
        self.bouncer = PgBouncerServer(
            self.pg,
            {MONITOR_USER: MONITOR_PASSWORD, "stats": STATS_PASSWORD, APP_USER: APP_PASSWORD},
            pool_size=2,
            dbname=DATABASE,
            alias=DATABASE,
        )
        site = ProxySite(
            self.certs / "server" / "server.crt",
            self.certs / "server" / "server.key",
            client_ca=self.certs / "ca" / "ca.crt",
            upstream=self.api.port,
        )
        self.proxy = MtlsProxy({"caddy": site})
        self.services(self.bouncer, self.proxy)
        self.backup()
        self.app()
        self.compose = Compose(self.engine, PROJECT, self.containers())
        self.compose.up()
        self.holding: list[psycopg.Connection] = []
        self.closed = closed_port()  # where a dead upstream would be

        port = self.proxy.sites["caddy"].port
        self.env.update(  # every variable of inventories/awe.env.example
            AWE_HOST_SPEC="local://",
            AWE_DOCKER_HOST=self.engine.url,
            AWE_COMPOSE_PROJECT=PROJECT,
            AWE_DATABASE_CONTAINER=f"{PROJECT}-database-1",
            AWE_PORT_8443_PROCESS="nginx",  # the stand-in of caddy holds the port on the host
            AWE_CERTS_DIR=str(self.certs),
            AWE_URL=f"https://localhost:{port}",
            AWE_TLS_HOST="localhost",
            AWE_TLS_PORT=str(port),
            AWE_CA_FILE=str(self.certs / "ca" / "ca.crt"),
            AWE_CLIENT_CERT=str(self.certs / "client" / "client.crt"),
            AWE_CLIENT_KEY=str(self.certs / "client" / "client.key"),
            AWE_AUTH_CHECK_URL=f"https://localhost:{port}/auth/me",
            AWE_MONITOR_USER=USER,
            AWE_MONITOR_PASSWORD=PASSWORD,
            AWE_DATABASE_URL=self.bouncer.dsn(MONITOR_USER),
            AWE_PGBOUNCER_STATS_URL=self.bouncer.dsn("stats", "pgbouncer"),
            AWE_ALEMBIC_HEAD=HEAD,
            DOCKER_HOST=self.engine.url,  # the docker CLI testinfra runs for docker:// specs
        )
        self.adapt("hosts[awe-host].ports", [{"port": port, "process": "${AWE_PORT_8443_PROCESS}"}])
        self.adapt("hosts[awe-host].load_per_core_max", 1000)

    # --- parts ---

    def pki_files(self):
        """certs/{ca,server,client} as setup_mtls_infrastructure.sh leaves them: the CA signs both."""
        pki = Pki(self.dir / "pki")
        server = pki.issue("server", issuer=pki.root, hosts=("localhost", "127.0.0.1"))
        client = pki.issue("client", issuer=pki.root, client=True, hosts=("opscheck-monitor",))
        certs = self.dir / "certs"
        for kind, issued in (("server", server), ("client", client)):
            (certs / kind).mkdir(parents=True)
            shutil.copy(issued.cert_path, certs / kind / f"{kind}.crt")
            shutil.copy(issued.key_path, certs / kind / f"{kind}.key")
        (certs / "ca").mkdir()
        shutil.copy(pki.ca_file, certs / "ca" / "ca.crt")
        self.pki = pki
        return certs

    def backup(self) -> None:
        """A real pg_dump -Fc archive, where the runbook's pg_restore reads it."""
        backups = self.dir / "backup"
        backups.mkdir()
        shutil.chown(backups, "postgres", "postgres")
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                f"{self.pg.bindir}/pg_dump",
                "-h",
                self.pg.dir,
                "-p",
                str(self.pg.port),
                "-Fc",
                "-f",
                f"{backups}/latest.sql",
                DATABASE,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def app(self) -> None:
        """The api image's /app (alembic.ini, env.py, versions/) and its audit log under /var/log."""
        app = self.dir / "app"
        versions = app / "alembic" / "versions"
        versions.mkdir(parents=True)
        (app / "alembic.ini").write_text("[alembic]\nscript_location = alembic\n")
        (app / "alembic" / "env.py").write_text(ALEMBIC_ENV)
        for revision, down, slug in REVISIONS:
            self.revision(revision, down, slug)
        log = self.dir / "log"
        log.mkdir()
        (log / "security_audit.log").write_text("".join(f"{line}\n" for line in AUDIT))

    def revision(self, revision: str, down: str | None, slug: str) -> None:
        (self.dir / "app" / "alembic" / "versions" / f"{revision}_{slug}.py").write_text(
            f'"""{slug}"""\nrevision = "{revision}"\ndown_revision = {down!r}\n'
            "branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    pass\n"
        )

    def containers(self) -> list[Service]:
        tools = {  # the host's Debian userland, as the Debian-based postgres image has it
            "/usr": {"bind": "/usr", "mode": "ro"},
            "/usr/bin": {"bind": "/bin", "mode": "ro"},
            "/usr/lib": {"bind": "/lib", "mode": "ro"},
            "/usr/lib64": {"bind": "/lib64", "mode": "ro"},
            self.pg.dir: {"bind": "/var/run/postgresql", "mode": "rw"},
        }
        pg_path = f"{self.pg.bindir}:/usr/bin:/bin"
        pg_env = {"PGPORT": str(self.pg.port), "PGHOST": "/var/run/postgresql"}
        return [
            Service(
                "database",
                [
                    "PostgreSQL init process complete; ready for start up.",
                    "LOG:  database system is ready to accept connections",
                ],
                env={"PATH": pg_path, **pg_env},
                options={"volumes": {**tools, str(self.dir / "backup"): {"bind": "/backup", "mode": "ro"}}},
            ),
            Service("pgbouncer", ["LOG process up: PgBouncer, libevent 2.1.12-stable (epoll), adns: c-ares"]),
            Service(
                "api",
                [
                    "INFO:     Started server process [1]",
                    "INFO:     Application startup complete.",
                    "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
                ],
                env={
                    "PATH": "/usr/bin:/bin",
                    "HOME": "/tmp",
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "DATABASE_URL": f"postgresql+psycopg2://{APP_USER}:{APP_PASSWORD}@/{DATABASE}",
                    **pg_env,
                },
                options={
                    "working_dir": "/app",
                    "volumes": {
                        **tools,
                        str(self.dir / "app"): {"bind": "/app", "mode": "ro"},
                        str(self.dir / "log"): {"bind": "/var/log", "mode": "rw"},
                    },
                },
            ),
            Service("caddy", CADDY),
        ]

    # --- faults' helpers ---

    def hold_pool(self, clients: int, connect_timeout: int = 5) -> None:
        """`clients` app sessions through PgBouncer, each in a long query: past pool_size they wait."""

        def hold() -> None:
            try:
                conn = psycopg.connect(self.bouncer.dsn(APP_USER), autocommit=True, connect_timeout=connect_timeout)
                self.holding.append(conn)
                conn.execute("SELECT pg_sleep(120)")
            except psycopg.Error:
                pass

        for _ in range(clients):
            threading.Thread(target=hold, daemon=True).start()

    def release_pool(self) -> None:
        with contextlib.suppress(RuntimeError):  # a stopped server has nothing to cancel
            self.pg.psql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
        for conn in self.holding:
            conn.close()
        self.holding.clear()


# --- drills: the runbook's problem categories ------------------------------------------------


# every check of the monitoring account's login and its tokens: what fails when the API
# behind the proxy cannot be reached with the client certificate
AUTH_FLOW = (
    "test_http_status[api-auth]",
    "test_http_latency_below_limit[api-auth]",
    "test_http_login_succeeds[api-auth]",
    "test_jwt_not_expiring[api-auth]",
    "test_jwt_algorithm_safe[api-auth]",
    "test_jwt_claims_as_expected[api-auth]",
    "test_http_auth_refused[api-auth:tampered]",
    "test_http_auth_refused[api-auth:missing]",
)


def _install(r: Awe, kind: str, issued) -> None:
    """A certificate (and its key) where setup_mtls_infrastructure.sh puts it."""
    shutil.copy(issued.cert_path, r.certs / kind / f"{kind}.crt")
    shutil.copy(issued.key_path, r.certs / kind / f"{kind}.key")


def _server_expired(r: Awe) -> None:
    _install(
        r, "server", r.pki.issue("server-expired", issuer=r.pki.root, expired=True, hosts=("localhost", "127.0.0.1"))
    )
    reload(r.proxy)


def _server_renewed(r: Awe) -> None:
    _install(r, "server", r.pki.issue("server-renewed", issuer=r.pki.root, hosts=("localhost", "127.0.0.1")))
    reload(r.proxy)


def _client_ca_rotated(r: Awe) -> None:
    other = Pki(r.dir / "pki-rotated")  # the CA was regenerated; the monitoring client still has the old one's cert
    r.proxy.sites["caddy"].client_ca = other.ca_file
    reload(r.proxy)


def _client_ca_back(r: Awe) -> None:
    r.proxy.sites["caddy"].client_ca = r.certs / "ca" / "ca.crt"
    reload(r.proxy)


def _client_expiring(r: Awe) -> None:
    _install(
        r, "client", r.pki.issue("client-soon", issuer=r.pki.root, client=True, days=10, hosts=("opscheck-monitor",))
    )


def _client_renewed(r: Awe) -> None:
    _install(r, "client", r.pki.issue("client-renewed", issuer=r.pki.root, client=True, hosts=("opscheck-monitor",)))


def _api_crashed(r: Awe) -> None:
    lines = [
        "INFO:     Started server process [1]",
        "Traceback (most recent call last):",
        '  File "/app/main.py", line 12, in <module>',
        'sqlalchemy.exc.OperationalError: could not translate host name "database"',
        "CRITICAL: application startup failed",
    ]
    r.compose.recreate("api", lines=lines, keep="")  # the container exits
    r.proxy.sites["caddy"].upstream = r.closed
    reload(r.proxy)


def _api_back(r: Awe) -> None:
    r.compose.recreate("api")
    r.proxy.sites["caddy"].upstream = r.api.port
    reload(r.proxy)


def _alembic_behind(r: Awe) -> None:
    r.pg.psql(f"UPDATE alembic_version SET version_num = '{REVISIONS[-2][0]}'", dbname=DATABASE)


def _alembic_head(r: Awe) -> None:
    r.pg.psql(f"UPDATE alembic_version SET version_num = '{HEAD}'", dbname=DATABASE)


BRANCH = ("5f0d3e8b1a27", REVISIONS[-2][0], "webhooks")  # a second head off the same parent


def _alembic_branched(r: Awe) -> None:
    r.revision(*BRANCH)


def _alembic_merged(r: Awe) -> None:
    (r.dir / "app" / "alembic" / "versions" / f"{BRANCH[0]}_{BRANCH[2]}.py").unlink()


AUDIT_LOG = "log/security_audit.log"


def _audit_critical(r: Awe) -> None:
    with (r.dir / AUDIT_LOG).open("a") as f:
        f.write(
            "2025-12-01 09:12:44,907 - security_audit - CRITICAL - privilege_escalation user=svc-agent role=admin\n"
        )


def _audit_silent(r: Awe) -> None:
    old = time.time() - 2 * 86400
    os.utime(r.dir / AUDIT_LOG, (old, old))


def _audit_fresh(r: Awe) -> None:
    (r.dir / AUDIT_LOG).write_text("".join(f"{line}\n" for line in AUDIT))


def _brute_force(r: Awe) -> None:
    r.compose.log(
        "api",
        *[f"WARNING:  auth: login failed for user 'admin' (invalid password), attempt {n}" for n in range(25)],
    )


def _backup_stale(r: Awe) -> None:
    old = time.time() - 3 * 86400
    os.utime(r.dir / "backup" / "latest.sql", (old, old))


def _backup_fresh(r: Awe) -> None:
    os.utime(r.dir / "backup" / "latest.sql")


def _database_down(r: Awe) -> None:
    r.pg.stop()
    r.compose.log("database", "LOG:  received fast shutdown request", "LOG:  database system is shut down")
    # the app's next request waits in PgBouncer for a server; the run starts once it has waited
    # past maxwait's 15 s critical limit, so both maxwait checks fail whenever the run reaches
    # them within PgBouncer's query_wait_timeout (120 s: it then drops the client); before 15 s,
    # a slow run would trip the critical one and a quick one not
    r.hold_pool(1, connect_timeout=120)
    time.sleep(15.5)


def _database_up(r: Awe) -> None:
    r.pg.start()
    r.release_pool()
    r.bouncer.stop()  # PgBouncer refuses logins for server_login_retry (15 s) after failing ones
    r.bouncer.start()
    r.compose.recreate("database")


def _pool_waiting(r: Awe) -> None:
    r.hold_pool(3)  # pool_size 2: the third client waits
    time.sleep(1.5)  # longer than maxwait's 1 s warning


def _wrong_password(r: Awe) -> None:
    r.env["AWE_MONITOR_PASSWORD"] = "the-password-before-the-reset"


def _right_password(r: Awe) -> None:
    r.env["AWE_MONITOR_PASSWORD"] = PASSWORD


def _long_tokens(r: Awe) -> None:
    r.api.lifetime_s = 48 * 3600


def _session_tokens(r: Awe) -> None:
    r.api.lifetime_s = 8 * 3600


def _api_errors(r: Awe) -> None:
    r.compose.log(
        "api",
        *[f"ERROR:    agent run {n} failed: tool 'web_search' timed out after 30s" for n in range(12)],
        "Traceback (most recent call last):",
        '  File "/app/agents/orchestrator.py", line 88, in run',
        "TimeoutError: tool 'web_search' timed out",
    )


def _caddy_errors(r: Awe) -> None:
    lines = [
        '{"level":"error","ts":1764580100.0,"logger":"http.log.access","msg":"handled request","status":502,'
        '"request":{"method":"GET","uri":"/api/workflows","proto":"HTTP/2.0"},"duration":0.001}'
    ] * 3
    lines += [
        '{"level":"debug","logger":"http.stdlib","msg":"http: TLS handshake error from 10.0.0.7:51234: EOF"}'
    ] * 51
    r.compose.log("caddy", *lines)


def _fresh(*services: str):
    def reset(r: Awe) -> None:
        for service in services:
            r.compose.recreate(service)

    return reset


Awe.drills = [
    Drill(
        "alembic-behind",
        "Database Issues > Migration Failures",
        "alembic_version is one revision behind the head of alembic/versions",
        ("test_postgres_migrations_at_head[awe-db]", "test_command_output[api:alembic-current]"),
        _alembic_behind,
        _alembic_head,
        group=0,
    ),
    Drill(
        "alembic-two-heads",
        "Database Issues > Migration Failures (alembic history)",
        "a second migration off the same parent: alembic/versions has two heads to merge",
        ("test_command_output[api:alembic-single-head]",),
        _alembic_branched,
        _alembic_merged,
        group=1,
    ),
    Drill(
        "jwt-lifetime-too-long",
        "Authentication Issues > JWT Token Problems",
        "the API issues tokens valid 48 h (the session lifetime is 24 h)",
        ("test_jwt_claims_as_expected[api-auth]",),
        _long_tokens,
        _session_tokens,
        group=0,
    ),
    Drill(
        "backup-stale",
        "Emergency Procedures > Database recovery (/backup/latest.sql)",
        "/backup/latest.sql was written 3 days ago",
        ("test_backup_recent[latest-dump]",),
        _backup_stale,
        _backup_fresh,
        group=0,
    ),
    Drill(
        "api-errors",
        "Debugging Tools > Log Analysis (docker-compose logs api)",
        "the api logs 12 ERROR lines and a Traceback",
        ("test_log_forbidden_pattern_absent[api:traceback_or_critical]", "test_log_error_rate_below_limit[api:errors]"),
        _api_errors,
        _fresh("api"),
        group=0,
    ),
    Drill(
        "proxy-errors",
        "Debugging Tools > Log Analysis (docker-compose logs caddy)",
        "caddy's access log: 3 of 5 requests answered 502; 51 TLS handshake errors",
        (
            "test_log_ratio_within_limit[caddy:access_5xx]",
            "test_log_forbidden_pattern_absent[caddy:tls_handshake_errors]",
        ),
        _caddy_errors,
        _fresh("caddy"),
        group=0,
    ),
    Drill(
        "security-audit-critical",
        "Debugging Tools > Log Analysis (cat /var/log/security_audit.log)",
        "the security audit log records a CRITICAL privilege escalation",
        ("test_command_output[api:security-audit-no-critical]",),
        _audit_critical,
        _audit_fresh,
        group=0,
    ),
    Drill(
        "security-audit-silent",
        "Debugging Tools > Log Analysis (cat /var/log/security_audit.log)",
        "the security audit log was last written 2 days ago: audit logging stopped",
        ("test_command_output[api:security-audit-fresh]",),
        _audit_silent,
        _audit_fresh,
        group=1,
    ),
    Drill(
        "client-certificate-expiring",
        "SSL/Certificate Issues > mTLS Handshake Problems (openssl x509 -in certs/client/client.crt -noout -dates)",
        "the monitoring client certificate expires in 10 days",
        (
            "test_certificate_file_expiry_warning[client-cert]",
            "test_certificate_file_expiry_critical[client-cert]",
            "test_tls_certificates_expiry_warning[mtls-proxy]",
            "test_tls_certificates_expiry_critical[mtls-proxy]",
        ),
        _client_expiring,
        _client_renewed,
        group=0,
    ),
    Drill(
        "pgbouncer-clients-waiting",
        "Database Issues > Connection Problems (SHOW POOLS)",
        "three app clients in long queries on a pool of 2: one waits",
        (
            "test_pgbouncer_clients_waiting_below_limit[awe-pgbouncer]",
            "test_pgbouncer_maxwait_below_warning[awe-pgbouncer]",
            "test_pgbouncer_server_pool_below_warning[awe-pgbouncer]",
            "test_pgbouncer_server_pool_below_critical[awe-pgbouncer]",
        ),
        _pool_waiting,
        lambda r: r.release_pool(),
        group=1,
    ),
    Drill(
        "login-fails",
        "Authentication Issues > Login Failures",
        "the monitoring account's password was reset; the stored one no longer logs in",
        # a request without credentials is refused as before: that refusal still passes
        tuple(c for c in AUTH_FLOW if c != "test_http_auth_refused[api-auth:missing]"),
        _wrong_password,
        _right_password,
        group=1,
    ),
    Drill(
        "login-brute-force",
        "Authentication Issues > Login Failures (docker-compose logs api | grep auth)",
        "the api logs 25 failed logins for admin within the hour",
        ("test_log_forbidden_pattern_absent[api:auth_failures]",),
        _brute_force,
        _fresh("api"),
        group=1,
    ),
    Drill(
        "client-certificate-rejected",
        "SSL/Certificate Issues > mTLS Handshake Problems",
        "the proxy trusts a regenerated CA: the monitoring client certificate is refused",
        (
            "test_http_status[api-health]",
            *AUTH_FLOW,
            "test_tls_client_certificate_accepted[mtls-proxy]",
        ),
        _client_ca_rotated,
        _client_ca_back,
        group=2,
    ),
    Drill(
        "database-down",
        "Database Issues > Connection Problems",
        "PostgreSQL stopped 15 s ago (PgBouncer still answers; an app client has waited since)",
        (
            "test_postgres_select_1[awe-db]",
            "test_postgres_connections_below_warning[awe-db]",
            "test_postgres_connections_below_critical[awe-db]",
            "test_postgres_long_queries_below_warning[awe-db]",
            "test_postgres_long_queries_below_critical[awe-db]",
            "test_postgres_no_old_transactions[awe-db]",
            "test_postgres_no_idle_in_transaction[awe-db]",
            "test_postgres_lock_waits_below_warning[awe-db]",
            "test_postgres_lock_waits_below_critical[awe-db]",
            "test_postgres_no_new_deadlocks[awe-db]",
            "test_postgres_wraparound_below_warning[awe-db]",
            "test_postgres_wraparound_below_critical[awe-db]",
            "test_postgres_sequences_below_critical[awe-db]",
            "test_postgres_no_disabled_triggers[awe-db]",
            "test_postgres_migrations_at_head[awe-db]",
            "test_postgres_no_slow_statements[awe-db]",
            "test_command_exit_code[database:pg-isready]",
            "test_command_exit_code[api:alembic-current]",
            "test_command_output[api:alembic-current]",
            "test_pgbouncer_clients_waiting_below_limit[awe-pgbouncer]",
            "test_pgbouncer_maxwait_below_warning[awe-pgbouncer]",
            "test_pgbouncer_maxwait_below_critical[awe-pgbouncer]",
        ),
        _database_down,
        _database_up,
        group=2,
    ),
    Drill(
        "api-container-down",
        "Startup Issues > Container Won't Start",
        "the api container exited at startup (Traceback, CRITICAL); the proxy answers 502",
        (
            "test_container_running[awe-compose:api]",
            "test_container_cpu_below_limit[awe-compose:api]",
            "test_container_memory_below_limit[awe-compose:api]",
            "test_http_status[api-health]",
            *AUTH_FLOW,
            "test_tls_client_certificate_accepted[mtls-proxy]",
            "test_log_forbidden_pattern_absent[api:traceback_or_critical]",
            *(  # no exec in an exited container
                f"test_command_{kind}[api:{command}]"
                for command in (
                    "alembic-current",
                    "alembic-single-head",
                    "security-audit-fresh",
                    "security-audit-no-critical",
                )
                for kind in ("exit_code", "output")
            ),
        ),
        _api_crashed,
        _api_back,
        group=3,
    ),
    Drill(
        "certificate-expired",
        "SSL/Certificate Issues > Certificate Validation Failures",
        "certs/server/server.crt expired yesterday, and the proxy serves it",
        (
            "test_certificate_file_expiry_warning[server-cert]",
            "test_certificate_file_expiry_critical[server-cert]",
            "test_certificate_file_verifies[server-cert]",
            "test_tls_certificates_expiry_warning[mtls-proxy]",
            "test_tls_certificates_expiry_critical[mtls-proxy]",
            "test_tls_chain_verifies[mtls-proxy]",
            "test_http_status[api-health]",
            "test_http_latency_below_limit[api-health]",
            *AUTH_FLOW,
        ),
        _server_expired,
        _server_renewed,
        group=4,
    ),
]
