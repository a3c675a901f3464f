"""Real services for the self-tests, on random loopback ports (or in a netns of our own).

PostgreSQL runs as the `postgres` user (initdb and pg_ctl refuse root) with its data in
/tmp, since pytest's own tmp directories are private to root.
"""

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import redis

_GIVEN_PORTS: set[int] = set()
_GIVEN_LOCK = threading.Lock()


def free_port() -> int:
    """A loopback port nothing listens on, never the same one twice in this process.

    The kernel may hand out a port it gave a moment ago (the socket is closed at once): two
    servers of one nginx or one replica then share a port, and one answers for the other."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with _GIVEN_LOCK:
            if port not in _GIVEN_PORTS:
                _GIVEN_PORTS.add(port)
                return port


def closed_port() -> int:
    """A loopback port with nothing listening: connections are refused at once."""
    return free_port()


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {seconds} s")


class Service:
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


# --- PostgreSQL ---------------------------------------------------------------------------


def pg_bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return found[-1]


class PostgresServer(Service):
    """A throw-away PostgreSQL cluster owned by the postgres user."""

    def __init__(
        self,
        extra_conf: dict | None = None,
        primary: "PostgresServer | None" = None,
        hba: str = "host all all 127.0.0.1/32 scram-sha-256\n",
    ):
        self.bindir = pg_bindir()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.conf = {
            "max_connections": 20,
            "superuser_reserved_connections": 3,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **(extra_conf or {}),
        }
        self.primary = primary  # a streaming replica of this server, made with pg_basebackup
        self.hba = hba
        self.dir = ""

    def _as_postgres(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout

    def start(self) -> None:
        if not self.dir:
            self.dir = tempfile.mkdtemp(prefix="opscheck-pg-", dir="/tmp")
            shutil.chown(self.dir, "postgres", "postgres")
            self.data = os.path.join(self.dir, "data")
            if self.primary:
                self._as_postgres(
                    f"{self.bindir}/pg_basebackup",
                    "-D",
                    self.data,
                    "-h",
                    self.primary.dir,
                    "-p",
                    str(self.primary.port),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-C",
                    "-S",
                    f"replica_{self.port}",
                )
            else:
                self._as_postgres(
                    f"{self.bindir}/initdb",
                    "-D",
                    self.data,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale",
                    "C",
                )
            with open(os.path.join(self.data, "pg_hba.conf"), "w") as hba:
                hba.write("local all postgres trust\nlocal replication postgres trust\n" + self.hba)
            conf = {
                **self.conf,
                "listen_addresses": "'127.0.0.1'",
                "port": self.port,
                "unix_socket_directories": f"'{self.dir}'",
            }
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        log = os.path.join(self.dir, "log")
        for attempt in range(3):
            try:
                self._as_postgres(f"{self.bindir}/pg_ctl", "-D", self.data, "-l", log, "-w", "-t", "60", "start")
                return
            except RuntimeError as exc:
                tail = Path(log).read_text(errors="replace")[-2000:] if os.path.exists(log) else ""
                # another process took the free port between free_port() and the bind: take another
                if "could not bind" not in tail or attempt == 2:
                    raise RuntimeError(f"{exc}\n{log}:\n{tail}") from None
                self.port = free_port()
                with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                    f.write(f"port = {self.port}\n")

    def stop(self) -> None:
        if self.dir and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._as_postgres(f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(self, *exc):
        self.close()

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        return self._as_postgres(
            f"{self.bindir}/psql",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.dir,
            "-p",
            str(self.port),
            "-d",
            dbname,
            "-c",
            sql,
        )

    def create_monitor_role(self, name: str, password: str) -> None:
        """The least-privilege role the README tells users to create: pg_monitor, no writes."""
        self.psql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        self.psql(f"GRANT pg_monitor TO {name}")

    def dsn(self, user: str, password: str, dbname: str = "postgres") -> str:
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{dbname}"

    @contextlib.contextmanager
    def hold_connections(self, n: int, user: str, password: str):
        """Keep n real sessions open (to saturate max_connections)."""
        conns = [psycopg.connect(self.dsn(user, password), connect_timeout=5) for _ in range(n)]
        try:
            yield conns
        finally:
            for conn in conns:
                conn.close()


class PgBouncerServer(Service):
    """PgBouncer (Debian package) in front of a PostgresServer, run as postgres (it refuses root).

    users: {name: password}; `stats` is a stats_users account for the admin console.
    `alias` is the database name clients use (PgBouncer's [databases] entry).
    """

    def __init__(
        self,
        backend: PostgresServer,
        users: dict[str, str],
        pool_size: int = 2,
        dbname: str = "postgres",
        alias: str = "app",
    ):
        self.backend, self.users, self.pool_size, self.dbname = backend, users, pool_size, dbname
        self.alias = alias
        self.port = free_port()
        self.dir = ""

    def start(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="opscheck-pgb-", dir="/tmp")
        with open(f"{self.dir}/users.txt", "w") as f:
            f.writelines(f'"{u}" "{p}"\n' for u, p in self.users.items())
        with open(f"{self.dir}/pgbouncer.ini", "w") as f:
            f.write(f"""[databases]
{self.alias} = host=127.0.0.1 port={self.backend.port} dbname={self.dbname} pool_size={self.pool_size}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
auth_type = plain
auth_file = {self.dir}/users.txt
stats_users = stats
pool_mode = transaction
max_client_conn = 50
unix_socket_dir =
pidfile = {self.dir}/pgbouncer.pid
logfile = {self.dir}/pgbouncer.log
""")
        for name in os.listdir(self.dir):
            shutil.chown(f"{self.dir}/{name}", "postgres", "postgres")
        shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "pgbouncer", "-d", f"{self.dir}/pgbouncer.ini"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_for(lambda: socket.create_connection(("127.0.0.1", self.port), 0.2).close() or True, 10, "pgbouncer")

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError), open(f"{self.dir}/pgbouncer.pid") as f:
            os.kill(int(f.read().strip()), 15)
        time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, user: str, dbname: str | None = None) -> str:
        return f"postgresql://{user}:{self.users[user]}@127.0.0.1:{self.port}/{dbname or self.alias}"


# --- Redis --------------------------------------------------------------------------------


class RedisServer(Service):
    """redis-server on a random loopback port, no persistence; extra CLI args pass through."""

    def __init__(self, *args: str, tls: dict | None = None):
        self.port = free_port()
        self.args = args
        self.tls = tls  # {"cert": path, "key": path, "ca": path}: TLS only, on self.port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found (apt-get install redis-server)")
        ports = ["--port", str(self.port)]
        tls_client = {}
        if self.tls:
            ports = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                self.tls["cert"],
                "--tls-key-file",
                self.tls["key"],
                "--tls-ca-cert-file",
                self.tls["ca"],
                "--tls-auth-clients",
                "no",
            ]
            tls_client = {"ssl": True, "ssl_ca_certs": self.tls["ca"]}
        self.dir = tempfile.mkdtemp(prefix="opscheck-redis-", dir="/tmp")  # a replica writes its RDB here
        self.proc = subprocess.Popen(
            [
                binary,
                *ports,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        password = self._password()
        wait_for(
            lambda: redis.Redis(
                host="127.0.0.1", port=self.port, password=password, socket_timeout=1, **tls_client
            ).ping(),
            15,
            "redis-server",
        )

    def _password(self) -> str | None:
        args = list(self.args)
        return args[args.index("--requirepass") + 1] if "--requirepass" in args else None

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, password: str | None = None) -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self._password(), socket_timeout=10)


# --- HTTP ---------------------------------------------------------------------------------


def send_json(handler, status: int, body, headers: dict | None = None) -> None:
    """Answer a test server's request with a JSON body (and these extra headers)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


@dataclass
class Route:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    methods: tuple = ("GET",)


class HttpServer(Service):
    """A real threaded HTTP server that answers each path as its Route says, counting hits."""

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                route = server.routes.get(self.path)
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if route is None:
                    return self._send(404, b"not found", {})
                if self.command not in route.methods:
                    return self._send(405, b"method not allowed", {})
                time.sleep(route.delay)
                body = route.body
                headers = dict(route.headers)
                if isinstance(body, dict | list):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(body, str):
                    body = body.encode()
                self._send(route.status, body, headers)

            def _send(self, status, body, headers):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_OPTIONS = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# --- dead targets -------------------------------------------------------------------------


class SilentListener(Service):
    """Accepts TCP connections and never sends a byte; counts the connection attempts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def accepts(self) -> int:
        with self._lock:
            return len(self.accepted)

    def start(self) -> None:
        def loop():
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                with self._lock:
                    self.accepted.append(conn)

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class Misbehaving(Service):
    """A TCP server on loopback that hands each connection to `talk(conn, stop)` on a thread
    of its own: the self-tests' hostile servers (drip a byte a second, never end, speak
    another protocol). `stop` is set when the server stops; the connections are then closed."""

    def __init__(self, talk):
        self.talk = talk
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()

    def start(self) -> None:
        def serve():
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

    def _talk(self, conn) -> None:
        with conn, contextlib.suppress(OSError):
            self.talk(conn, self.stopping)

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()


def dripping(head: bytes, byte: bytes = b" ", every: float = 0.5):
    """A Misbehaving talk: read the request, send `head`, then `byte` every `every` seconds,
    for ever: no single read of the client ever times out."""

    def talk(conn, stop) -> None:
        conn.recv(65536)
        conn.sendall(head)
        while not stop.wait(every):
            conn.sendall(byte)

    return talk


class BlackholeNamespace(Service):
    """An address in a network namespace of our own whose packets are dropped (nft).

    A TCP connect to `address` gets no answer at all (no refusal, no ICMP), so the client
    waits for its timeout: the realistic "host is down / firewalled" case. A blackhole
    route would fail at once and prove nothing.
    """

    def __init__(self):
        if not shutil.which("ip") or not shutil.which("nft"):
            raise RuntimeError("ip (iproute2) and nft (nftables) are needed")
        n = os.getpid() % 16000
        self.name = f"opscheck-bh-{os.getpid()}"
        self.veth = f"ocbh{os.getpid() % 100000}"
        base = f"10.254.{n // 64}.{(n % 64) * 4}"
        prefix = base.rsplit(".", 1)[0]
        last = int(base.rsplit(".", 1)[1])
        self.host_address = f"{prefix}.{last + 1}"
        self.address = f"{prefix}.{last + 2}"
        self.start()

    def _ip(self, *args: str) -> None:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=15)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")

    def start(self) -> None:
        try:
            self._ip("ip", "netns", "add", self.name)
            self._ip("ip", "link", "add", self.veth, "type", "veth", "peer", "name", f"{self.veth}p")
            self._ip("ip", "link", "set", f"{self.veth}p", "netns", self.name)
            self._ip("ip", "addr", "add", f"{self.host_address}/30", "dev", self.veth)
            self._ip("ip", "link", "set", self.veth, "up")
            ns = ["ip", "netns", "exec", self.name]
            self._ip(*ns, "ip", "addr", "add", f"{self.address}/30", "dev", f"{self.veth}p")
            self._ip(*ns, "ip", "link", "set", f"{self.veth}p", "up")
            self._ip(
                *ns,
                "nft",
                "add table inet opscheck; "
                "add chain inet opscheck input { type filter hook input priority 0; policy drop; }",
            )
        except RuntimeError:
            self.stop()
            raise

    def __enter__(self):
        return self

    def stop(self) -> None:
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True, timeout=15)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=15)
