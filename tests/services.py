"""Real services for the self-tests: PostgreSQL, Redis, HTTP and dead targets.

Plain classes, not fixtures, so fixtures of any scope can use them. Each one listens on
a free loopback port, is a context manager, and removes every process and directory it
made in stop()/close(). Mocks would prove nothing about timeouts, auth or saturation.
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
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
import redis
from psycopg import sql

STARTUP_TIMEOUT = 30  # seconds; a service not up by then is broken, not slow
MONITOR_PASSWORD = "opscheck-monitor-Pw"


def free_port() -> int:
    """A loopback port free right now (the kernel picks it; a tiny reuse race is accepted)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    return free_port()


def run(*command: str, timeout: float = STARTUP_TIMEOUT, **kwargs) -> str:
    """Run a command, return its stdout; raise with its stderr so failures explain themselves."""
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


class _Managed:
    """`with X() as x:` starts x and always stops it, even when start() fails halfway."""

    def start(self):
        return self

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def postgres_bindir() -> Path:
    """The server binaries: pg_config's bindir, else the newest /usr/lib/postgresql/*/bin."""
    if shutil.which("pg_config"):
        bindir = Path(run("pg_config", "--bindir").strip())
        if (bindir / "initdb").exists():
            return bindir
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found")
    return Path(found[-1])


def _conf_value(value) -> str:
    """A postgresql.conf value: on/off, a bare number, or a quoted string."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class PostgresServer(_Managed):
    """A throwaway PostgreSQL cluster on 127.0.0.1; the OS user `postgres` runs it (not root)."""

    host = "127.0.0.1"

    def __init__(self, name: str = "pg", extra_conf: dict | None = None):
        self.name = name
        self.port = free_port()
        self.conf = {"max_connections": 20, "superuser_reserved_connections": 3,
                     **(extra_conf or {})}
        self.bindir = postgres_bindir()
        self.dir: Path | None = None
        self.started = False

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def _as_postgres(self, tool: str, *args: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """initdb and pg_ctl refuse to run as root."""
        return run("runuser", "-u", "postgres", "--", str(self.bindir / tool), *args,
                   timeout=timeout)

    def start(self) -> "PostgresServer":
        # pytest's tmp dirs are private to root, so the cluster lives in its own /tmp dir.
        self.dir = Path(tempfile.mkdtemp(prefix="opscheck-pg-", dir="/tmp"))
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                          "--no-sync", "--no-instructions", "--auth-local=trust",
                          "--auth-host=scram-sha-256")
        conf = {"listen_addresses": self.host, "port": self.port,
                "unix_socket_directories": str(self.dir), "fsync": False, **self.conf}
        with open(self.data / "postgresql.conf", "a") as f:
            f.writelines(f"{key} = {_conf_value(value)}\n" for key, value in conf.items())
        (self.data / "pg_hba.conf").write_text(
            "local all postgres trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        shutil.chown(self.data / "pg_hba.conf", "postgres", "postgres")
        self.started = True
        log = self.dir / "server.log"
        try:
            # -w: pg_ctl polls until the server accepts connections, bounded by -t.
            self._as_postgres("pg_ctl", "-D", str(self.data), "-l", str(log), "-w",
                              "-t", str(STARTUP_TIMEOUT), "start", timeout=STARTUP_TIMEOUT + 5)
        except RuntimeError as exc:  # the log is removed by stop(), so show it now
            raise RuntimeError(f"{exc}\n{log.read_text()}") from None
        return self

    def stop(self) -> None:
        if self.started:
            self.started = False
            try:
                self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "20",
                                  "stop", timeout=25)
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill_postmaster()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _kill_postmaster(self) -> None:
        """Last resort when a fast shutdown failed: an immediate shutdown, then SIGKILL."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "10",
                              "stop", timeout=15)
            return
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 9)

    def psql(self, query: str) -> str:
        """Run SQL as the superuser over the unix socket; raise on the first error."""
        return run(str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                   "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                   "-c", query)

    def create_monitor_role(self, name: str = "opscheck", password: str = MONITOR_PASSWORD) -> None:
        """The least-privilege role the checks connect as: LOGIN + pg_monitor, nothing to write."""
        role = sql.Identifier(name)
        self.psql(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}; GRANT pg_monitor TO {}")
                  .format(role, sql.Literal(password), role).as_string())

    def dsn(self, user: str, password: str, dbname: str = "postgres") -> str:
        """A libpq URL over TCP, so password auth is exercised as in production."""
        return (f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
                f"@{self.host}:{self.port}/{quote(dbname, safe='')}")

    @contextlib.contextmanager
    def hold_connections(self, n: int, user: str, password: str):
        """Keep n real sessions open (to saturate max_connections) until the block exits."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(psycopg.connect(self.dsn(user, password), connect_timeout=5,
                                                       autocommit=True))
                   for _ in range(n)]


class RedisServer(_Managed):
    """redis-server on 127.0.0.1 with persistence off; extra CLI args are passed through."""

    host = "127.0.0.1"

    def __init__(self, *args: str):
        self.args = args
        self.port = free_port()
        self.password = args[args.index("--requirepass") + 1] if "--requirepass" in args else None
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.clients: list[redis.Redis] = []

    def url(self, password: str | None = None) -> str:
        auth = f":{quote(password, safe='')}@" if password is not None else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client for setup writes, authenticated when --requirepass was given."""
        client = redis.Redis(self.host, self.port, password=self.password, socket_timeout=10)
        self.clients.append(client)
        return client

    def start(self) -> "RedisServer":
        self.dir = Path(tempfile.mkdtemp(prefix="opscheck-redis-"))
        log = self.dir / "redis.log"
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                ["redis-server", "--bind", self.host, "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.dir), *self.args],
                stdout=out, stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.proc.returncode}: {log.read_text()}")
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


@dataclass
class Route:
    """What the HTTP server answers on one path. A dict body is sent as JSON."""

    status: int = 200
    body: bytes | dict = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    methods: tuple = ("GET",)


class HttpServer(_Managed):
    """A real threaded HTTP server on 127.0.0.1 serving fixed routes and counting hits."""

    host = "127.0.0.1"

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((self.host, 0), self._handler_class())
        self.port = self.server.server_address[1]
        self.thread: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self):
                path = urlsplit(self.path).path
                with server.lock:
                    server.hits[path] += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                route = server.routes.get(path)
                if route is None:
                    return self.reply(404, b"not found", {})
                if self.command not in route.methods:
                    allow = {"Allow": ", ".join(route.methods)}
                    return self.reply(405, b"method not allowed", allow)
                time.sleep(route.delay)
                body, headers = route.body, dict(route.headers)
                if isinstance(body, dict):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                self.reply(route.status, body, headers)

            def reply(self, status: int, body: bytes, headers: dict):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any

            def log_message(self, *args):
                pass  # keep pytest output clean

        return Handler

    def start(self) -> "HttpServer":
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread:  # shutdown() would wait forever if serve_forever never ran
            self.server.shutdown()
            self.thread.join(timeout=10)
            self.thread = None
        self.server.server_close()


class SilentListener:
    """Accepts TCP connections on 127.0.0.1 and never answers: every client hits its timeout.

    `accepts` counts connection attempts, so a test can prove one attempt per dead target.
    """

    host = "127.0.0.1"

    def __init__(self):
        self._sock = socket.create_server((self.host, 0), backlog=64)
        self._sock.settimeout(0.1)  # lets the accept loop notice close()
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._accepted: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def accepts(self) -> int:
        with self._lock:
            return len(self._accepted)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._accepted.append(conn)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._sock.close()
        with self._lock:
            for conn in self._accepted:
                conn.close()

    def __enter__(self) -> "SilentListener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BlackholeNamespace:
    """An address in a network namespace that drops every packet: connects hang, never refuse.

    A veth pair joins the root namespace (10.254.x.y+1/30) to a new namespace holding
    `address` (y+2); an nftables input policy of drop inside it swallows the SYNs, while
    ARP still resolves, so the client sees neither a refusal nor "no route to host".
    """

    _count = 0
    RULES = """
table inet filter {
    chain input { type filter hook input priority 0; policy drop; }
}
"""

    def __init__(self):
        for tool in ("ip", "nft"):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} is not installed")
        BlackholeNamespace._count += 1
        tag = f"{os.getpid()}-{BlackholeNamespace._count}"
        self.name = f"opscheck-bh-{tag}"
        self.host_if, self.peer_if = f"obh{tag}h"[-15:], f"obh{tag}p"[-15:]  # IFNAMSIZ is 16
        # One of the 16384 /30s in 10.254.0.0/16, picked from the pid so parallel runs differ.
        third, quad = divmod((os.getpid() * 8 + BlackholeNamespace._count) % 16384, 64)
        self.host_address = f"10.254.{third}.{quad * 4 + 1}"
        self.address = f"10.254.{third}.{quad * 4 + 2}"
        try:
            run("ip", "netns", "add", self.name)
        except RuntimeError as exc:
            raise RuntimeError(f"ip netns add is not permitted: {exc}") from None
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        run("ip", "link", "set", self.peer_if, "netns", self.name)
        run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        run("ip", "-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.peer_if)
        run("ip", "-n", self.name, "link", "set", self.peer_if, "up")
        run("ip", "netns", "exec", self.name, "nft", "-f", "-", input=self.RULES)
        try:
            socket.create_connection((self.address, 5432), timeout=1).close()
        except TimeoutError:
            return  # dropped silently: what we want
        except OSError as exc:
            raise RuntimeError(f"{self.address} is not a blackhole: {exc}") from None
        raise RuntimeError(f"{self.address} accepted a connection; it is not a blackhole")

    def close(self) -> None:
        # Deleting one end of a veth pair deletes both; then the namespace goes.
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)

    def __enter__(self) -> "BlackholeNamespace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
