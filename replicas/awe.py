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
which busybox lacks.)
"""

from __future__ import annotations

import shutil
import subprocess
import threading

import psycopg

from replicas.base import Override, Replica
from replicas.parts import MONITOR_PASSWORD, MONITOR_USER, Compose, Service, pg_setup
from tests.servers import PgBouncerServer, PostgresServer
from tests.servers_docker import DockerEngineServer
from tests.servers_http_auth import PASSWORD, USER, JwtApi, MtlsProxy, ProxySite
from tests.servers_tls import Pki

DATABASE = "ai_workflow_engine"
APP_USER, APP_PASSWORD = "awe", "awe-App-Pw-2291"
STATS_PASSWORD = "awe-Stats-Pw-6630"
PROJECT = "ai-workflow-engine"
REVISIONS = [("3b1f0c2a9d10", None, "initial"), ("8c4e7d21aa05", "3b1f0c2a9d10", "agents"),
             ("e2a9f6b3c7d4", "8c4e7d21aa05", "tool_runs")]  # fmt: skip
HEAD = REVISIONS[-1][0]
SCHEMA = f"""
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('{HEAD}');
CREATE TABLE workflows (id bigserial PRIMARY KEY, name text NOT NULL, definition text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO workflows (name, definition) SELECT 'workflow-' || n, repeat(md5(n::text), 8) FROM generate_series(1, 600) n;
CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_USER};
"""
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

    def build(self) -> None:
        d = self.dir
        self.certs = self.pki_files()
        self.pg = PostgresServer(extra_conf={"max_connections": 30})
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
        self.migrations()
        self.compose = Compose(self.engine, PROJECT, self.containers())
        self.compose.up()
        self.holding: list[psycopg.Connection] = []

        port = self.proxy.sites["caddy"].port
        self.env.update(
            AWE_HOST_SPEC="local://",
            AWE_URL=f"https://localhost:{port}",
            AWE_AUTH_CHECK_URL=f"https://localhost:{port}/auth/me",
            AWE_CA_FILE=str(self.certs / "ca" / "ca.crt"),
            AWE_CLIENT_CERT=str(self.certs / "client" / "client.crt"),
            AWE_CLIENT_KEY=str(self.certs / "client" / "client.key"),
            AWE_CERTS_DIR=str(self.certs),
            AWE_MONITOR_USER=USER,
            AWE_MONITOR_PASSWORD=PASSWORD,
            AWE_DATABASE_URL=self.bouncer.dsn(MONITOR_USER),
            AWE_PGBOUNCER_STATS_URL=self.bouncer.dsn("stats", "pgbouncer"),
            AWE_MIGRATIONS_DIR=str(d / "alembic" / "versions"),
            AWE_DB_CONTAINER_SPEC=f"docker://{PROJECT}-database-1",
            AWE_DOCKER_HOST=self.engine.url,
            DOCKER_HOST=self.engine.url,  # the docker CLI testinfra runs for docker:// specs
        )
        self.overrides += [
            Override(
                "tls[mtls-proxy].port", port, "the proxy listens on a random port; the seed's port 8443 is a literal"
            ),
            Override("hosts[awe-host].ports", [port], "the host's listening port is the proxy's random port"),
            Override(
                "hosts[awe-host].load_per_core_max",
                1000,
                "the replica's host is the machine it runs on: its load is whatever else runs there",
            ),
        ]

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
            ["runuser", "-u", "postgres", "--", f"{self.pg.bindir}/pg_dump", "-h", self.pg.dir, "-p",
             str(self.pg.port), "-Fc", "-f", f"{backups}/latest.sql", DATABASE],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def migrations(self) -> None:
        versions = self.dir / "alembic" / "versions"
        versions.mkdir(parents=True)
        for i, (revision, down, slug) in enumerate(REVISIONS, start=1):
            (versions / f"{revision}_{slug}.py").write_text(
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
            str(self.dir / "backup"): {"bind": "/backup", "mode": "ro"},
        }
        pg_path = f"{self.pg.bindir}:/usr/bin:/bin"
        return [
            Service(
                "database",
                ["PostgreSQL init process complete; ready for start up.",
                 "LOG:  database system is ready to accept connections"],
                env={"PATH": pg_path, "PGPORT": str(self.pg.port), "PGHOST": "/var/run/postgresql"},
                options={"volumes": tools},
            ),  # fmt: skip
            Service("pgbouncer", ["LOG process up: PgBouncer, libevent 2.1.12-stable (epoll), adns: c-ares"]),
            Service(
                "api",
                ["INFO:     Started server process [1]", "INFO:     Application startup complete.",
                 "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)"],
            ),  # fmt: skip
            Service("caddy", CADDY),
        ]

    # --- faults' helpers ---

    def hold_pool(self, clients: int) -> None:
        """`clients` app sessions through PgBouncer, each in a long query: past pool_size they wait."""

        def hold() -> None:
            conn = psycopg.connect(self.bouncer.dsn(APP_USER), autocommit=True, connect_timeout=5)
            self.holding.append(conn)
            try:
                conn.execute("SELECT pg_sleep(120)")
            except psycopg.Error:
                pass

        for _ in range(clients):
            threading.Thread(target=hold, daemon=True).start()

    def release_pool(self) -> None:
        self.pg.psql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
        for conn in self.holding:
            conn.close()
        self.holding.clear()

