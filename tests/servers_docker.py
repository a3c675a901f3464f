"""A private Docker engine for the self-tests, and a busybox image built without a registry.

dockerd runs with its own data root, exec root, pidfile and socket in a temp dir under /tmp,
without iptables or a bridge (`--iptables=false --bridge=none`) and with the vfs storage
driver, so it works inside these machines and never touches a system engine. Containers use
`--network none`, `host`, or another container's network namespace. The image is Debian's
busybox-static binary in a rootfs tarball, loaded with `docker import` (no registry needed).

One engine per test process (an xdist worker): every module that needs it shares it.
"""

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

IMAGE = "opscheck-busybox:1"
BUSYBOX = "/bin/busybox"


def unavailable() -> str | None:
    """Why a private engine cannot start here (None if it can)."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for binary in ("dockerd", "containerd", "runc"):
        if not shutil.which(binary):
            return f"{binary} not installed (apt-get install docker.io)"
    if not os.path.exists(BUSYBOX):
        return "busybox-static not installed (apt-get install busybox-static)"
    return None


def rootfs_tar() -> bytes:
    """A minimal root filesystem: busybox and a symlink per applet."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory, mode in (
            ("bin", 0o755),
            ("etc", 0o755),
            ("tmp", 0o1777),
            ("www", 0o755),
            ("proc", 0o755),
            ("sys", 0o755),
            ("dev", 0o755),
        ):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        page = b"ok\n"
        info = tarfile.TarInfo("www/index.html")
        info.size = len(page)
        tar.addfile(info, io.BytesIO(page))
    return buf.getvalue()


class DockerEngineServer:
    """dockerd in a temp dir; start() waits for the API and imports the busybox image."""

    def __init__(self):
        self.dir = ""
        self.proc: subprocess.Popen | None = None
        self.client = None
        self.tls_port = 0
        self.tls_files: dict[str, str] = {}  # ca, cert, key of a client the engine trusts

    @property
    def url(self) -> str:
        return f"unix://{self.dir}/docker.sock"

    def start(self) -> "DockerEngineServer":
        import docker

        self.dir = tempfile.mkdtemp(prefix="opscheck-dockerd-", dir="/tmp")
        tls_args = self._tls()
        log = open(f"{self.dir}/dockerd.log", "wb")  # noqa: SIM115 - kept open for dockerd's life
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--bridge=none",
                "--storage-driver=vfs",
                f"--data-root={self.dir}/data",
                f"--exec-root={self.dir}/exec",
                f"--pidfile={self.dir}/docker.pid",
                f"--host={self.url}",
                "--log-level=warn",
                *tls_args,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                self.client = docker.DockerClient(base_url=self.url, timeout=30, max_pool_size=64)
                self.client.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"dockerd did not answer within 60 s: {self.log_tail()}") from None
                time.sleep(0.1)
        self.client.api.import_image_from_data(
            rootfs_tar(), repository=IMAGE.split(":")[0], tag=IMAGE.split(":")[1], changes=['CMD ["sh"]']
        )
        return self

    @property
    def tls_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tls_port}"

    def _tls(self) -> list[str]:
        """A second listener on loopback TCP that requires a client certificate (--tlsverify)."""
        import trustme

        from tests.servers import free_port

        ca = trustme.CA()
        server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("opscheck-client")
        files = {name: f"{self.dir}/{name}.pem" for name in ("ca", "server", "server-key", "cert", "key")}
        ca.cert_pem.write_to_path(files["ca"])
        server.cert_chain_pems[0].write_to_path(files["server"])
        server.private_key_pem.write_to_path(files["server-key"])
        client.cert_chain_pems[0].write_to_path(files["cert"])
        client.private_key_pem.write_to_path(files["key"])
        self.tls_files = {k: files[k] for k in ("ca", "cert", "key")}
        self.tls_port = free_port()
        return [
            f"--host={self.tls_url}",
            "--tlsverify",
            f"--tlscacert={files['ca']}",
            f"--tlscert={files['server']}",
            f"--tlskey={files['server-key']}",
        ]

    def log_tail(self) -> str:
        with contextlib.suppress(OSError), open(f"{self.dir}/dockerd.log", "rb") as f:
            return f.read()[-1500:].decode(errors="replace")
        return ""

    def run(self, name: str, command: str, **kwargs):
        """Start a detached container running `sh -c command` (network none unless told)."""
        kwargs.setdefault("network_mode", "none")
        return self.client.containers.run(IMAGE, ["sh", "-c", command], name=name, detach=True, **kwargs)

    def run_many(self, specs: dict[str, tuple[str, dict]]) -> dict:
        """Start many containers concurrently: {name: (command, kwargs)} -> {name: container}."""
        ordered = [n for n, (_, kw) in specs.items() if not str(kw.get("network_mode", "")).startswith("container:")]
        later = [n for n in specs if n not in ordered]
        started = {}
        with ThreadPoolExecutor(max_workers=8) as pool:
            for batch in (ordered, later):
                futures = {n: pool.submit(self.run, n, specs[n][0], **specs[n][1]) for n in batch}
                started.update({n: f.result() for n, f in futures.items()})
        return started

    def wait(self, name: str, predicate, seconds: float, what: str) -> dict:
        deadline = time.monotonic() + seconds
        while True:
            attrs = self.client.api.inspect_container(name)
            if predicate(attrs):
                return attrs
            if time.monotonic() > deadline:
                raise RuntimeError(f"container {name}: {what} not reached within {seconds} s: {attrs['State']}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                containers = self.client.api.containers(all=True)
                with ThreadPoolExecutor(max_workers=8) as pool:
                    list(pool.map(lambda c: self.client.api.remove_container(c["Id"], force=True), containers))
            with contextlib.suppress(Exception):
                self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.dir:
            # dockerd leaves its data root and netns files mounted if it died hard
            with open("/proc/mounts") as f:
                mounts = [line.split()[1] for line in f if self.dir in line.split()[1]]
            for mount in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)


_shared: dict = {"engine": None, "users": 0}
_lock = threading.Lock()


def shared_engine() -> DockerEngineServer:
    with _lock:
        if _shared["engine"] is None:
            _shared["engine"] = DockerEngineServer().start()
        _shared["users"] += 1
        return _shared["engine"]


def release_engine() -> None:
    with _lock:
        _shared["users"] -= 1
        if _shared["users"] == 0 and _shared["engine"] is not None:
            _shared["engine"].stop()
            _shared["engine"] = None


@pytest.fixture(scope="session")
def docker_server():
    """The test process's private Docker engine (skipped locally if dockerd cannot run; CI fails on skips)."""
    reason = unavailable()
    if reason:
        pytest.skip(f"no private Docker engine: {reason}")
    try:
        engine = shared_engine()
    except RuntimeError as exc:
        pytest.skip(f"dockerd cannot start on this machine: {exc}")
    yield engine
    release_engine()
