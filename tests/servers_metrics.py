"""node_exporter (textfile collector only) and a Pushgateway, Debian's packages, on loopback.

What a user runs to hand opscheck's metrics file or push to Prometheus: the metrics
self-test scrapes both with a real Prometheus (tests/servers_monitoring.py).
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import requests

from tests.servers import Service, free_port, wait_for


class _Exporter(Service):
    binary = ""
    ready_path = "/metrics"

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.dir = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        if not shutil.which(self.binary):
            raise RuntimeError(f"{self.binary} not found (apt-get install {self.binary})")
        self.dir = tempfile.mkdtemp(prefix=f"opscheck-{self.binary}-")
        log = open(Path(self.dir) / "log", "w")  # noqa: SIM115 - the child keeps it; closed with the dir
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        try:
            wait_for(lambda: requests.get(self.url + self.ready_path, timeout=1).ok, 20, self.binary)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""


class NodeExporter(_Exporter):
    """node_exporter serving only the *.prom files of `textfile_dir` (every other collector off)."""

    binary = "prometheus-node-exporter"

    def __init__(self, textfile_dir: Path):
        super().__init__()
        self.textfile_dir = textfile_dir

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={self.textfile_dir}",
            f"--web.listen-address={self.address}",
            "--log.level=warn",
        ]


class Pushgateway(_Exporter):
    """A Pushgateway without persistence."""

    binary = "prometheus-pushgateway"
    ready_path = "/-/ready"

    def argv(self) -> list[str]:
        return [self.binary, f"--web.listen-address={self.address}", "--persistence.file=", "--log.level=warn"]
