"""Real Prometheus and Alertmanager (Debian packages) for the monitoring self-tests.

Each runs on a random loopback port with its data in a temp dir, with short scrape and
evaluation intervals and a lowered `--rules.alert.resend-delay`, so a firing rule (and
the Watchdog) reaches Alertmanager within seconds. Alertmanager starts with
`--cluster.listen-address=` (no private address here: clustering off, status "disabled").
"""

import json
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import yaml

from tests.servers import Service, free_port, wait_for


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"{names[0]} not found (apt-get install prometheus prometheus-alertmanager)")


class _Process(Service):
    name = ""

    def __init__(self):
        self.port = free_port()
        self.dir = ""
        self.proc: subprocess.Popen | None = None
        self.log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, argv: list[str]) -> None:
        self.log = open(Path(self.dir) / "log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        try:
            wait_for(lambda: requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200, 30, self.name)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    def get(self, path: str, **params):
        response = requests.get(f"{self.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()


class AlertmanagerServer(_Process):
    """prometheus-alertmanager with a null receiver; clustering off."""

    name = "alertmanager"

    def start(self) -> None:
        binary = _binary("prometheus-alertmanager", "alertmanager")
        self.dir = tempfile.mkdtemp(prefix="opscheck-am-")
        config = {
            "route": {"receiver": "null", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "null"}],
        }
        (Path(self.dir) / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self._spawn(
            [
                binary,
                "--config.file=alertmanager.yml",
                f"--storage.path={self.dir}/data",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ]
        )

    def post_alert(self, labels: dict, started_ago: timedelta, annotations: dict | None = None) -> None:
        starts = datetime.now(UTC) - started_ago
        alert = {
            "labels": labels,
            "annotations": annotations or {},
            "startsAt": starts.isoformat(),
            "endsAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }
        requests.post(f"{self.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

    def silence(self, matchers: dict, lasting: timedelta, comment: str, by: str = "selftest") -> str:
        now = datetime.now(UTC)
        body = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
            "startsAt": now.isoformat(),
            "endsAt": (now + lasting).isoformat(),
            "createdBy": by,
            "comment": comment,
        }
        response = requests.post(
            f"{self.url}/api/v2/silences",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        if response.status_code != 200:
            raise RuntimeError(f"silence refused: {response.status_code} {response.text}")
        return response.json()["silenceID"]


class PrometheusServer(_Process):
    """Prometheus with generated scrape configs and rule groups, evaluating every second."""

    name = "prometheus"

    def __init__(self, scrape: dict[str, list[str]], rules: list[dict], alertmanagers: list[str], interval: str = "1s"):
        super().__init__()
        self.scrape = scrape  # job -> ["127.0.0.1:port", ...]
        self.rules = rules  # rule groups as Prometheus reads them
        self.alertmanagers = alertmanagers  # ["127.0.0.1:port"]
        self.interval = interval

    def start(self) -> None:
        binary = _binary("prometheus")
        self.dir = tempfile.mkdtemp(prefix="opscheck-prom-")
        config = {
            "global": {
                "scrape_interval": self.interval,
                "evaluation_interval": self.interval,
                "scrape_timeout": self.interval,
            },
            "rule_files": ["rules.yml"],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in self.scrape.items()
            ],
        }
        if self.alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]}
        (Path(self.dir) / "prometheus.yml").write_text(yaml.safe_dump(config))
        (Path(self.dir) / "rules.yml").write_text(yaml.safe_dump({"groups": self.rules}))
        self._spawn(
            [
                binary,
                "--config.file=prometheus.yml",
                f"--storage.tsdb.path={self.dir}/data",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
            ]
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"
