"""Pieces several replicas use, built on the self-tests' servers (tests/servers*.py).

- `Front`: the self-tests' nginx (tests/servers_tls.Nginx) with a site's own locations, so one
  TLS front can route an API's paths to the servers behind it (auth_request for a JWT API);
- `Compose`: containers on a private Docker engine (tests/servers_docker) labelled as
  `docker compose` labels them, sharing one network namespace whose /etc/hosts names every
  service, so `redis:6379` from one service reaches the next; they write the runbook's
  log lines, and a service is recreated to start its log afresh;
- `Notify`: the application's NOTIFY listener, a real LISTEN session over TLS that records
  every event it hears as processed;
- `pg_setup`: a database, its schema and the README's least-privilege role.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import threading
import time
from dataclasses import dataclass, field

import psycopg

from tests.servers import PostgresServer
from tests.servers_tls import Nginx, Site

MONITOR_USER, MONITOR_PASSWORD = "opscheck", "opscheck-Replica-Pw-4412"


# --- nginx: a TLS front whose locations the replica writes ---------------------------------


@dataclass
class FrontSite(Site):
    """A site with its own `location` blocks (nginx syntax) instead of the fixed answer."""

    locations: str = ""


class Front(Nginx):
    """tests/servers_tls.Nginx, with each FrontSite's locations in place of `return 200`."""

    def _server_block(self, site: Site) -> str:
        block = super()._server_block(site)
        if isinstance(site, FrontSite) and site.locations:
            block = block.replace('location / { return 200 "ok\\n"; }', site.locations)
        return block


def reload(nginx: Nginx) -> None:
    """Write an nginx's configuration again (a site's certificate, CA or locations changed) and reload."""
    import signal

    conf = nginx.dir / "nginx.conf"
    head, _, _ = conf.read_text().partition("  default_type text/plain;\n")
    blocks = "".join(nginx._server_block(s) for s in nginx.sites.values())
    conf.write_text(head + "  default_type text/plain;\n" + blocks + "}\n")
    assert nginx.proc is not None
    nginx.proc.send_signal(signal.SIGHUP)
    time.sleep(0.7)  # the new workers take over


# --- containers, as docker compose names and labels them ------------------------------------


@dataclass
class Service:
    """One compose service: its command's log lines, then what it keeps running."""

    name: str
    lines: list[str] = field(default_factory=list)
    keep: str = "sleep 1000000"  # what runs after the lines (a listener, a loop)
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # more containers.run() keyword arguments


def script(lines: list[str], keep: str) -> str:
    """`sh -c` text that prints the lines (as the service's log) and then runs `keep`."""
    printed = "".join(f"printf '%s\\n' {shlex.quote(line)}; " for line in lines)
    return f"{printed}exec {keep}" if keep else printed.rstrip("; ")


class Compose:
    """A compose project's containers on a private engine, all in the first one's network.

    The first service holds the network namespace (the others join it): stopping any other
    service leaves the rest reachable, as a compose network does.
    """

    def __init__(self, engine, project: str, services: list[Service], hosts: dict[str, str] | None = None):
        self.engine, self.project = engine, project
        self.services = {s.name: s for s in services}
        self.holder = services[0].name
        self.hosts = {s.name: "127.0.0.1" for s in services} | (hosts or {})

    def container_names(self, service: str) -> list[str]:
        return [f"{self.project}-{service}-{i}" for i in range(1, self.services[service].replicas + 1)]

    def _spec(self, service: Service, number: int, lines: list[str] | None = None, keep: str | None = None):
        labels = {
            "com.docker.compose.project": self.project,
            "com.docker.compose.service": service.name,
            "com.docker.compose.container-number": str(number),
        }
        options = {"labels": labels, "environment": service.env, **service.options}
        if service.name == self.holder:
            options.update(hostname=service.name, extra_hosts=self.hosts)
        else:
            options["network_mode"] = f"container:{self.project}-{self.holder}-1"
        text = script(service.lines if lines is None else lines, service.keep if keep is None else keep)
        return text, options

    def up(self) -> None:
        specs = {}
        for service in self.services.values():
            for number, name in enumerate(self.container_names(service.name), start=1):
                specs[name] = self._spec(service, number)
        self.engine.run_many(specs)

    def recreate(self, service: str, lines: list[str] | None = None, keep: str | None = None) -> None:
        """Remove the service's containers and start them again (a fresh log, or other lines)."""
        spec = self.services[service]
        for number, name in enumerate(self.container_names(service), start=1):
            with contextlib.suppress(Exception):
                self.engine.client.api.remove_container(name, force=True)
            command, options = self._spec(spec, number, lines, keep)
            self.engine.run(name, command, **options)

    def stop(self, service: str) -> None:
        for name in self.container_names(service):
            self.engine.client.api.stop(name, timeout=1)

    def log(self, service: str, *lines: str) -> None:
        """Lines written to the service's log now (to its main process's stdout)."""
        for name in self.container_names(service):
            command = "".join(f"printf '%s\\n' {shlex.quote(line)} > /proc/1/fd/1; " for line in lines)
            result = self.engine.client.containers.get(name).exec_run(["sh", "-c", command])
            if result.exit_code != 0:
                raise RuntimeError(f"{name}: cannot write its log: {result.output!r}")


# --- PostgreSQL -----------------------------------------------------------------------------


def pg_tls_conf(server_cert, server_key, ca=None) -> dict:
    """postgresql.conf lines for TLS with files the postgres user owns (it refuses others' keys)."""
    for path in (server_cert, server_key):
        shutil.chown(path, "postgres", "postgres")
    server_key.chmod(0o600)
    return {"ssl": "on", "ssl_cert_file": f"'{server_cert}'", "ssl_key_file": f"'{server_key}'"}


def pg_setup(pg: PostgresServer, database: str, schema: str, reads: list[str]) -> None:
    """The database with its schema, and the README's role: pg_monitor, SELECT on `reads`."""
    pg.psql(f"CREATE DATABASE {database}")
    pg.psql(schema, dbname=database)
    pg.psql(f"CREATE ROLE {MONITOR_USER} LOGIN PASSWORD '{MONITOR_PASSWORD}'")
    pg.psql(f"GRANT pg_monitor TO {MONITOR_USER}")
    grants = f"GRANT SELECT ON {', '.join(reads)} TO {MONITOR_USER}; " if reads else ""
    pg.psql(
        f"GRANT CONNECT ON DATABASE {database} TO {MONITOR_USER}; {grants}"
        f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {MONITOR_USER}",
        dbname=database,
    )


class Notify:
    """The application's listener: LISTEN on a channel; each event id heard is marked processed."""

    def __init__(self, dsn: str, channel: str, record: str, application: str):
        self.dsn, self.channel, self.record, self.application = dsn, channel, record, application
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.heard = 0
        self.thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self) -> Notify:
        self.thread.start()
        if not self.ready.wait(20):
            raise RuntimeError(f"the {self.channel} listener did not connect")
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _listen(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name=self.application) as conn:
            conn.execute(f"LISTEN {self.channel}")
            self.ready.set()
            while not self.stopped.is_set():
                for notice in list(conn.notifies(timeout=0.5)):
                    conn.execute(self.record, {"id": int(notice.payload), "ms": 12})
                    self.heard += 1
