"""AI Platform (runbook 004, inventories/aiplatform.yml): the api-gateway Deployment in
namespace arch-separation and Prometheus, Alertmanager, Grafana in monitoring on Kubernetes,
PostgreSQL, the gateway behind TLS, a Cloudflare Worker with its KV namespace and R2 bucket.

Real parts: KMock's Kubernetes API (tests/servers_kubernetes) holding the cluster's objects
and pod logs, each api-gateway pod backed by a container on a private Docker engine that
in-pod probes exec into (its Service's ClusterIP on its loopback, /etc/hosts naming the
Service as cluster DNS would, the gateway's /health on :8080, a connection to the database
port); a real Prometheus scraping the gateway's /metrics and a node exporter's, with the
Watchdog and the runbook's alert rules, sending to a real Alertmanager; PostgreSQL; nginx
with TLS in front of the gateway's /health (and its plain-HTTP port redirecting to https://);
a Grafana API stand-in (Grafana is not packaged for Debian: /api/health, and its Prometheus data
source, whose health check queries the real Prometheus as Grafana's does); the Cloudflare API v4
emulator (tests/servers_cloudflare); moto's S3 holding the bucket of the database's dumps (a
real pg_dump of the replica's database).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import psycopg
import requests

from replicas.base import Drill, Replica, parallel
from replicas.parts import MONITOR_PASSWORD, MONITOR_USER, Front, FrontSite, pg_setup
from tests.servers import HttpServer, PostgresServer, Route, Service, closed_port, send_json, wait_for
from tests.servers_aws import MotoServer
from tests.servers_cloudflare import CloudflareApi
from tests.servers_docker import DockerEngineServer
from tests.servers_kubernetes import (
    KubeEmulator,
    certificate,
    certificate_request,
    configmap,
    deployment,
    endpoint_slice,
    ingress,
    network_policy,
    node,
    node_metrics,
    owner,
    pod,
    pod_metrics,
    service,
)
from tests.servers_monitoring import AlertmanagerServer, PrometheusServer
from tests.servers_tls import Pki

NS, MON = "arch-separation", "monitoring"
HOST = "localhost"  # AIPLAT_API_HOST: the name the gateway's certificate, ingress and cert-manager carry
LIMITS = {"cpu": "500m", "memory": "512Mi"}
GATEWAY_PODS = ["api-gateway-6f8d9c-2kq7x", "api-gateway-6f8d9c-9wz4m"]
CLUSTER_IP = "10.96.12.34"
TOKEN = "cf-replica-Token-20417"
ACCOUNT, ZONE, KV = "4f1c2b9a8e7d6c5b4a3f2e1d0c9b8a7f", "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b", "7a" * 16
DATABASE = "ai_platform"
GRAFANA_TOKEN, GRAFANA_UID = "glsa_replicaViewer_5Jq2T8", "prometheus-main"
S3_KEY, S3_SECRET = "replica-backup-reader", "replica-S3-Secret-7730"
BUCKET, PREFIX = "aiplatform-backups", "pg/daily/"
WATCHDOG = {"alert": "Watchdog", "expr": "vector(1)", "labels": {"severity": "none"}}
RULES = [
    {
        "name": "api-gateway",
        "rules": [
            WATCHDOG,
            {
                "alert": "ApiGatewayHighErrorRate",
                "expr": 'sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m])) > 0.05',
                "labels": {"severity": "critical"},
                "annotations": {"summary": "api-gateway answers 5xx to more than 5 % of requests"},
            },
            {
                "alert": "ApiGatewaySlow",
                "expr": "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[1m]))) > 5",
                "labels": {"severity": "warning"},
            },
            {"record": "job:up:sum", "expr": "sum by (job) (up)"},
        ],
    }
]


def gateway_health(breaker: str = "closed", database: str = "healthy") -> dict:
    status = "healthy" if breaker == "closed" and database == "healthy" else "degraded"
    return {
        "status": status,
        "checks": {
            "database": {"status": database, "latency_ms": 3},
            "circuit_breaker": {"status": "healthy" if breaker == "closed" else "unhealthy", "state": breaker},
            "worker": {"status": "healthy"},
        },
    }


class Metrics(HttpServer):
    """The gateway's /metrics: request counters and a latency histogram that grow as time passes."""

    def __init__(self):
        super().__init__({"/metrics": Route(body="")})
        self.per_second = {"200": 40.0, "500": 0.0}
        self.started = time.monotonic()
        self.counts = {code: 0.0 for code in self.per_second}
        self.stopped = threading.Event()
        self.refresh()

    def refresh(self) -> None:
        for code, rate in self.per_second.items():
            self.counts[code] += rate * 0.5
        total = sum(self.counts.values())
        lines = ["# TYPE http_requests_total counter"]
        lines += [f'http_requests_total{{code="{c}",route="/api"}} {n:.0f}' for c, n in self.counts.items()]
        lines.append("# TYPE http_request_duration_seconds histogram")
        for le, share in (("0.05", 0.6), ("0.1", 0.85), ("0.25", 0.97), ("1", 0.995), ("5", 1.0), ("+Inf", 1.0)):
            lines.append(f'http_request_duration_seconds_bucket{{le="{le}"}} {total * share:.0f}')
        lines.append(f"http_request_duration_seconds_count {total:.0f}")
        if "/metrics" in self.routes and self.routes["/metrics"].status == 200:
            self.routes["/metrics"] = Route(body="\n".join(lines) + "\n")

    def start(self) -> None:
        super().start()

        def tick() -> None:
            while not self.stopped.wait(0.5):
                self.refresh()

        threading.Thread(target=tick, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        super().stop()


class GrafanaApi(Service):
    """The part of Grafana's HTTP API the seed reads, behind a bearer token: /api/health,
    /api/datasources and a data source's health check, which queries the data source's
    Prometheus (GET /api/v1/query?query=1%2B1) as Grafana's own check does."""

    def __init__(self, token: str, uid: str, prometheus_url: str):
        self.token = token
        self.datasource = {
            "id": 1,
            "uid": uid,
            "name": "Prometheus",
            "type": "prometheus",
            "access": "proxy",
            "url": prometheus_url,
            "isDefault": True,
        }
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                send_json(self, *grafana.answer(self.path, self.headers.get("Authorization", "")))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, path: str, authorization: str) -> tuple[int, object]:
        if path == "/api/health":
            return 200, {"commit": "03f502a94d", "database": "ok", "version": "10.4.1"}
        if authorization != f"Bearer {self.token}":
            return 401, {"message": "Invalid API key"}
        if path == "/api/datasources":
            return 200, [self.datasource]
        if path == f"/api/datasources/uid/{self.datasource['uid']}/health":
            try:
                answer = requests.get(f"{self.datasource['url']}/api/v1/query", params={"query": "1+1"}, timeout=3)
                answer.raise_for_status()
                assert answer.json()["status"] == "success"
            except Exception as exc:  # Grafana's answer: 400 with status ERROR and the reason
                return 400, {"status": "ERROR", "message": f'Post "{self.datasource["url"]}/api/v1/query": {exc}'}
            return 200, {"status": "OK", "message": "Successfully queried the Prometheus API."}
        if path.startswith("/api/datasources/uid/"):
            return 404, {"message": "Data source not found"}
        return 404, {"message": "Not found"}

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class AiPlatform(Replica):
    name = "aiplatform"
    runbook = "004_78864828457ee668.txt"
    title = "AI Platform (Kubernetes, Workers, Prometheus)"
    adapted: dict[str, str] = {}  # every field the replica needs has its ${VARIABLE}

    def build(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log, amid pytest's output
        self.pki = Pki(self.dir / "pki")
        self.app = HttpServer({"/health": Route(body=gateway_health())})
        self.worker = HttpServer({"/health": Route(body={"status": "healthy", "kv": "ok", "r2": "ok"})})
        self.metrics = Metrics()
        self.node_exporter = HttpServer(
            {"/metrics": Route(body='node_filesystem_avail_bytes{fstype="ext4",mountpoint="/"} 4.2e+10\n')}
        )
        self.alertmanager = AlertmanagerServer()
        self.kube = KubeEmulator()
        self.engine = DockerEngineServer()
        self.pg = PostgresServer(extra_conf={"max_connections": 30, "shared_preload_libraries": "'pg_stat_statements'"})
        self.moto = MotoServer()
        self.cloudflare = CloudflareApi(TOKEN, ACCOUNT)
        cert = self.pki.issue("api-gateway", hosts=(HOST, "127.0.0.1"))
        self.front = Front(
            {
                "api": FrontSite(
                    self.pki.chain_file(cert, self.pki.intermediate),
                    cert.key_path,
                    locations=f"location / {{ proxy_pass http://127.0.0.1:{self.app.port}; }}",
                    plain_redirect=True,
                )
            }
        )
        self.services(
            self.app,
            self.worker,
            self.metrics,
            self.node_exporter,
            self.alertmanager,
            self.kube,
            self.engine,
            self.pg,
            self.moto,
            self.cloudflare,
            self.front,
        )
        self.prometheus = self.new_prometheus()
        self.grafana = GrafanaApi(GRAFANA_TOKEN, GRAFANA_UID, self.prometheus.url)
        self.services(self.prometheus, self.grafana)
        schema = "CREATE EXTENSION pg_stat_statements; CREATE TABLE videos (id bigserial PRIMARY KEY, title text);"
        pg_setup(self.pg, DATABASE, schema, ["videos"])
        self.pg.psql(
            "INSERT INTO videos (title) SELECT 'lecture ' || n || ': architecture separation, part ' || n % 7 "
            "FROM generate_series(1, 600) AS n; ANALYZE videos",  # as autovacuum would have
            dbname=DATABASE,
        )
        self.backup()
        self.api_url = f"https://{HOST}:{self.front.sites['api'].port}"
        self.fill_cluster()
        self.pods()
        self.fill_cloudflare()
        kubeconfig = self.kube.kubeconfig(self.dir / "kubeconfig", context="aiplat-prod", token="kmock-replica-Tk-1")
        self.wait_monitoring()
        self.held: list = []

        self.trust(self.pki.ca_file)
        site = self.front.sites["api"]
        self.env.update(
            AIPLAT_API_URL=self.api_url,
            AIPLAT_API_HTTP_URL=f"http://{HOST}:{site.http_port}",
            AIPLAT_API_HOST=HOST,
            AIPLAT_API_TLS_PORT=str(site.port),
            AIPLAT_WORKER_URL=f"http://127.0.0.1:{self.worker.port}",
            AIPLAT_DATABASE_URL=self.pg.dsn(MONITOR_USER, MONITOR_PASSWORD, DATABASE),
            AIPLAT_KUBE_CONTEXT="aiplat-prod",
            KUBECONFIG=str(kubeconfig),
            AIPLAT_PROMETHEUS_URL=self.prometheus.url,
            AIPLAT_ALERTMANAGER_URL=self.alertmanager.url,
            AIPLAT_GRAFANA_URL=self.grafana.url,
            AIPLAT_GRAFANA_TOKEN=GRAFANA_TOKEN,
            AIPLAT_GRAFANA_PROMETHEUS_UID=GRAFANA_UID,
            CLOUDFLARE_ACCOUNT_ID=ACCOUNT,
            CLOUDFLARE_API_TOKEN=TOKEN,
            CLOUDFLARE_API_URL=self.cloudflare.url,
            CLOUDFLARE_ZONE_ID=ZONE,
            AIPLAT_KV_NAMESPACE_ID=KV,
            AIPLAT_BACKUP_S3_BUCKET=BUCKET,
            AIPLAT_BACKUP_S3_PREFIX=PREFIX,
            AIPLAT_BACKUP_S3_ENDPOINT=self.moto.url,
            # the S3 credentials come from boto3's chain (aiplatform.env.example): the replica's only
            AWS_ACCESS_KEY_ID=S3_KEY,
            AWS_SECRET_ACCESS_KEY=S3_SECRET,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(self.dir / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.dir / "no-aws-credentials"),
        )
        self.unset |= {"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL"}

    # --- backups ---

    def s3(self):
        return boto3.client(
            "s3",
            endpoint_url=self.moto.url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
        )

    def backup(self) -> None:
        """Last night's dump: a real pg_dump of the database, as an object under the prefix."""
        dump = self.pg._as_postgres(
            f"{self.pg.bindir}/pg_dump", "-h", self.pg.dir, "-p", str(self.pg.port), "-d", DATABASE
        ).encode()
        s3 = self.s3()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}{DATABASE}-{datetime.now(UTC):%Y-%m-%d}.sql", Body=dump)

    # --- monitoring ---

    def new_prometheus(self) -> PrometheusServer:
        return PrometheusServer(
            {
                "api-gateway": [f"127.0.0.1:{self.metrics.port}"],
                "node-exporter": [f"127.0.0.1:{self.node_exporter.port}"],
            },
            RULES,
            [f"127.0.0.1:{self.alertmanager.port}"],
            interval="3s",  # a scrape older than 3 intervals is a failure: 3 s would flap on a busy machine
        )

    def wait_monitoring(self) -> None:
        """Until the targets are up, rate() and predict_linear() have samples and the Watchdog reached Alertmanager."""

        def settled() -> bool:
            targets = self.prometheus.get("/api/v1/targets")["data"]["activeTargets"]
            rate = self.prometheus.get("/api/v1/query", query="sum(rate(http_requests_total[5m]))")["data"]["result"]
            # predict_linear (the seed's disk-lasts-7-days) needs two scrapes of node_exporter too
            disk = self.prometheus.get("/api/v1/query", query="predict_linear(node_filesystem_avail_bytes[5m], 60)")
            alerts = self.alertmanager.get("/api/v2/alerts")
            return (
                all(t["health"] == "up" for t in targets)
                and bool(disk["data"]["result"])
                and bool(rate)
                and float(rate[0]["value"][1]) > 0
                and any(a["labels"]["alertname"] == "Watchdog" for a in alerts)
            )

        wait_for(settled, 60, "Prometheus scraping and the Watchdog in Alertmanager")

    # --- the cluster ---

    def gateway_pod(self, name: str, **extra) -> dict:
        return pod(
            name, NS, {"app": "api-gateway"}, owners=owner("ReplicaSet", "api-gateway-6f8d9c"), limits=LIMITS, **extra
        )

    def fill_cluster(self) -> None:
        mon = {"app.kubernetes.io/part-of": "monitoring"}
        objects = [self.gateway_pod(name) for name in GATEWAY_PODS]
        objects += [
            deployment("api-gateway", NS, replicas=2),
            service("api-gateway", NS, cluster_ip=CLUSTER_IP),
            endpoint_slice("api-gateway", NS, [True, True]),
            ingress("api-gateway", NS, HOST, "api-gateway"),
            certificate("api-gateway-tls", NS, [HOST]),
            certificate_request("api-gateway-tls-1", NS, "api-gateway-tls", failed=False),
            configmap("api-gateway-config", NS, {"PORT": "8080", "LOG_LEVEL": "info", "DB_HOST": "postgres"}),
            network_policy("default-deny-ingress", NS),
            network_policy("allow-monitoring", NS),
            *[pod_metrics(name, NS, {"app": ("120m", "180Mi")}) for name in GATEWAY_PODS],
        ]
        for app, port in (("prometheus", 9090), ("alertmanager", 9093), ("grafana", 3000)):
            name = f"{app}-7c9b5d-q{port}"
            objects += [
                pod(name, MON, {"app": app, **mon}, owners=owner("ReplicaSet", f"{app}-7c9b5d"), limits=LIMITS),
                deployment(app, MON, replicas=1),
                pod_metrics(name, MON, {"app": ("80m", "200Mi")}),
            ]
        objects += [pod("coredns-5d78c-x2x9p", "kube-system", {"k8s-app": "kube-dns"}, limits=LIMITS)]
        objects += [
            node("node-1"),
            node("node-2"),
            node_metrics("node-1", "900m", "6Gi"),
            node_metrics("node-2", "700m", "5Gi"),
        ]
        self.kube.put(*objects)
        now = datetime.now(UTC)
        for name in GATEWAY_PODS:
            self.kube.log(
                NS,
                name,
                "app",
                [
                    (now - timedelta(minutes=50), '{"level":"info","msg":"listening on :8080"}'),
                    (now - timedelta(minutes=49), '{"level":"info","msg":"connected to postgres:5432 (pool 10)"}'),
                    (now - timedelta(minutes=2), '{"level":"info","msg":"GET /health 200","duration_ms":3}'),
                ],
            )
        self.kube.log(
            MON,
            "prometheus-7c9b5d-q9090",
            "app",
            [
                (now - timedelta(minutes=30), 'level=info msg="Server is ready to receive web requests."'),
                (now - timedelta(minutes=5), 'level=info msg="Completed loading of configuration file"'),
            ],
        )

    def pods(self) -> None:
        """A container per api-gateway pod, for the in-pod probes (exec runs there)."""
        userland = {  # getent and the host's tools beside busybox's applets
            "/usr": {"bind": "/usr", "mode": "ro"},
            "/usr/lib": {"bind": "/lib", "mode": "ro"},
            "/usr/lib64": {"bind": "/lib64", "mode": "ro"},
        }
        fqdn = f"api-gateway.{NS}.svc.cluster.local"
        for name in GATEWAY_PODS:
            container = f"k8s_app_{name}_{NS}"
            command = (
                'echo "api-gateway pod sandbox: listening on :8080"; '
                f"ip addr add {CLUSTER_IP}/32 dev lo; mkdir -p /www; "
                "printf '%s' '{\"status\":\"healthy\"}' > /www/health; httpd -p 8080 -h /www; "
                "nc -ll -p 5432 -e cat & sleep 0.3; exec nc 127.0.0.1 5432 -e sleep 1000000"
            )
            self.engine.run(
                container,
                command,
                hostname=name,
                extra_hosts={"api-gateway": CLUSTER_IP, fqdn: CLUSTER_IP, "postgres": "127.0.0.1"},
                cap_add=["NET_ADMIN"],
                volumes=userland,
                environment={"PATH": "/bin:/usr/bin"},
            )
            self.kube.emulator.exec_in[(NS, name)] = ["docker", "-H", self.engine.url, "exec", container]

    def fill_cloudflare(self) -> None:
        cf = self.cloudflare
        cf.scripts["ai-worker"] = {
            "deployments": [
                {
                    "id": "dep-1",
                    "created_on": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
                    "strategy": "percentage",
                    "versions": [{"version_id": "v42", "percentage": 100}],
                }
            ],
            "bindings": [
                {"name": "API_GATEWAY_URL", "type": "plain_text", "text": self.api_url},
                {"name": "API_TOKEN", "type": "secret_text"},
                {"name": "CACHE", "type": "kv_namespace", "namespace_id": KV},
                {"name": "VIDEOS", "type": "r2_bucket", "bucket_name": "ai-platform-videos"},
            ],
        }
        cf.kv = {KV: 240}
        cf.r2 = {"ai-platform-videos"}
        cf.analytics = {
            "ai-worker": {
                "sum": {"requests": 48_000, "errors": 31, "subrequests": 9_100},
                "quantiles": {"cpuTimeP50": 2_100.0, "cpuTimeP99": 18_500.0},
            }
        }
        cf.zones = {ZONE: (1_200_000, 900)}

    # --- faults' helpers ---

    def restart_monitoring(self) -> None:
        """A fresh Prometheus (its TSDB forgets the fault's rates) and Alertmanager, on their ports."""
        self.prometheus.stop()
        self.alertmanager.stop()
        self.alertmanager.start()
        self.prometheus.start()
        self.wait_monitoring()

    def firing(self, alertname: str) -> bool:
        found = requests.get(f"{self.alertmanager.url}/api/v2/alerts", params={"active": "true"}, timeout=5).json()
        return any(a["labels"].get("alertname") == alertname for a in found)


# --- drills: the runbook's "Common Issues and Solutions" -------------------------------------


def _remove(r: AiPlatform, plural: str, name: str) -> None:
    """Delete an object from the emulator (its keys carry KMock's resource, not the put() path)."""
    objects = r.kube.emulator.objects
    for key in [k for k in objects if k[0].plural == plural and k[1:] == (NS, name)]:
        del objects[key]


def _healthy_cluster(r: AiPlatform) -> None:
    r.fill_cluster()


def _five_xx(r: AiPlatform) -> None:
    """The gateway answers 500 to a third of its requests: the error rate, the critical alert, the logs."""
    r.metrics.per_second["500"] = 20.0
    now = datetime.now(UTC)
    lines = [
        (now - timedelta(seconds=30 - i), f'{{"level":"error","msg":"GET /api/videos 500: upstream reset","n":{i}}}')
        for i in range(12)
    ]
    r.kube.log(NS, GATEWAY_PODS[1], "app", lines)
    wait_for(lambda: r.firing("ApiGatewayHighErrorRate"), 60, "ApiGatewayHighErrorRate reaching Alertmanager")


def _five_xx_over(r: AiPlatform) -> None:
    r.metrics.per_second["500"] = 0.0
    r.fill_cluster()
    r.restart_monitoring()


def _crash_loop(r: AiPlatform) -> None:
    from tests.servers_kubernetes import container_status, event, terminated

    name = GATEWAY_PODS[0]
    r.kube.put(
        r.gateway_pod(
            name,
            statuses=[
                container_status(
                    ready=False,
                    restarts=7,
                    waiting=("CrashLoopBackOff", "back-off 5m0s restarting failed container=app"),
                    last=terminated("Error", 2, minutes=1),
                )
            ],
        ),
        deployment("api-gateway", NS, replicas=2, available=1),
        event(
            "api-gateway-backoff",
            NS,
            "BackOff",
            ("Pod", name),
            "Back-off restarting failed container app",
            count=7,
            minutes=1,
        ),
    )
    now = datetime.now(UTC)
    r.kube.log(
        NS,
        name,
        "app",
        [
            (now - timedelta(seconds=70), '{"level":"info","msg":"listening on :8080"}'),
            (now - timedelta(seconds=65), '{"level":"fatal","msg":"config: DATABASE_URL is not set"}'),
        ],
    )


def _crash_loop_over(r: AiPlatform) -> None:
    _remove(r, "events", "api-gateway-backoff")
    r.fill_cluster()


def _oom(r: AiPlatform) -> None:
    from tests.servers_kubernetes import container_status, terminated

    r.kube.put(
        r.gateway_pod(
            GATEWAY_PODS[1], statuses=[container_status(restarts=1, last=terminated("OOMKilled", 137, minutes=20))]
        )
    )


def _worker_down(r: AiPlatform) -> None:
    r.worker.routes["/health"] = Route(status=522, body="error code: 522")
    r.cloudflare.analytics["ai-worker"]["sum"]["errors"] = 9_000


def _worker_up(r: AiPlatform) -> None:
    r.worker.routes["/health"] = Route(body={"status": "healthy", "kv": "ok", "r2": "ok"})
    r.cloudflare.analytics["ai-worker"]["sum"]["errors"] = 31


def _worker_slow(r: AiPlatform) -> None:
    r.worker.routes["/health"].delay = 2.5
    r.cloudflare.analytics["ai-worker"]["quantiles"]["cpuTimeP99"] = 86_000.0


def _worker_fast(r: AiPlatform) -> None:
    r.worker.routes["/health"].delay = 0.0
    r.cloudflare.analytics["ai-worker"]["quantiles"]["cpuTimeP99"] = 18_500.0


def _worker_misconfigured(r: AiPlatform) -> None:
    bindings = r.cloudflare.scripts["ai-worker"]["bindings"]
    bindings[0] = {"name": "API_GATEWAY_URL", "type": "plain_text", "text": "http://localhost:8000"}


def _worker_configured(r: AiPlatform) -> None:
    r.fill_cloudflare()


def _db_pool(r: AiPlatform) -> None:
    # max_connections 30 - 3 reserved: 23 sessions are 85 % (> 80 %)
    r.held = [psycopg.connect(r.pg.dsn(MONITOR_USER, MONITOR_PASSWORD, DATABASE), connect_timeout=5) for _ in range(23)]


def _db_pool_released(r: AiPlatform) -> None:
    for conn in r.held:
        conn.close()
    r.held = []


def _slow_queries(r: AiPlatform) -> None:
    """Ten calls of one statement taking 1.2 s each (at once): its mean is over the 1 s limit."""
    statement = "SELECT pg_sleep(1.2), count(*) FROM videos WHERE title LIKE '%part 3'"
    parallel(*[lambda: r.pg.psql(statement, dbname=DATABASE) for _ in range(10)])


def _slow_queries_forgotten(r: AiPlatform) -> None:
    r.pg.psql("SELECT pg_stat_statements_reset()", dbname=DATABASE)


def _certificate_failing(r: AiPlatform) -> None:
    r.kube.put(
        certificate(
            "api-gateway-tls",
            NS,
            [HOST],
            ready=False,
            message="Issuing certificate as Secret does not exist: order is in errored state",
        ),
        certificate_request("api-gateway-tls-2", NS, "api-gateway-tls", failed=True),
    )


def _certificate_issued(r: AiPlatform) -> None:
    _remove(r, "certificaterequests", "api-gateway-tls-2")
    r.fill_cluster()


def _gateway_unreachable(r: AiPlatform) -> None:
    for name in GATEWAY_PODS:
        r.engine.client.containers.get(f"k8s_app_{name}_{NS}").exec_run(["killall", "httpd"])


def _gateway_reachable(r: AiPlatform) -> None:
    for name in GATEWAY_PODS:
        r.engine.client.containers.get(f"k8s_app_{name}_{NS}").exec_run(["httpd", "-p", "8080", "-h", "/www"])


def _scrape_down(r: AiPlatform) -> None:
    r.metrics.routes["/metrics"] = Route(status=503, body="service unavailable")
    wait_for(
        lambda: any(t["health"] == "down" for t in r.prometheus.get("/api/v1/targets")["data"]["activeTargets"]),
        20,
        "the api-gateway target going down",
    )


def _scrape_up(r: AiPlatform) -> None:
    r.metrics.routes["/metrics"] = Route(body="")
    r.metrics.refresh()
    r.wait_monitoring()


def _breaker_open(r: AiPlatform) -> None:
    r.app.routes["/health"] = Route(status=200, body=gateway_health(breaker="open"))


def _breaker_closed(r: AiPlatform) -> None:
    r.app.routes["/health"] = Route(body=gateway_health())


def _slow_gateway(r: AiPlatform) -> None:
    r.app.routes["/health"].delay = 6.0  # longer than the 5 s timeout: 504 at the edge, a timeout here


def _fast_gateway(r: AiPlatform) -> None:
    r.app.routes["/health"].delay = 0.0


def _datasource_broken(r: AiPlatform) -> None:
    r.grafana.datasource["url"] = f"http://127.0.0.1:{closed_port()}"  # a stale address: nothing listens


def _datasource_fixed(r: AiPlatform) -> None:
    r.grafana.datasource["url"] = r.prometheus.url


def _node_memory(r: AiPlatform) -> None:
    r.kube.put(node_metrics("node-2", "700m", "15.5Gi"))


AiPlatform.drills = [
    Drill(
        "gateway-5xx-alert-firing",
        "API Gateway Issues > 5xx Errors; Monitoring Issues > Alert Fatigue",
        "a third of the gateway's requests answer 500: ApiGatewayHighErrorRate fires; error lines in its log",
        (
            "test_prometheus_query[prometheus:error-rate-below-1pct]",
            "test_prometheus_no_firing_warning_alerts[prometheus]",
            "test_prometheus_no_firing_critical_alerts[prometheus]",
            "test_alertmanager_no_recent_alerts[alertmanager]",
            "test_log_error_rate_below_limit[api-gateway:errors]",
            "test_log_forbidden_pattern_absent[arch-separation:errors]",
        ),
        _five_xx,
        _five_xx_over,
        group=0,
    ),
    Drill(
        "crash-looping-pod",
        "API Gateway Issues > 5xx Errors (kubectl get pods | grep -v Running)",
        "an api-gateway pod in CrashLoopBackOff (7 restarts, fatal config error), 1 of 2 available",
        (
            "test_k8s_pods_running_and_ready[aiplat:arch-separation]",
            "test_k8s_pods_not_stuck[aiplat:arch-separation]",
            "test_k8s_workloads_rolled_out[aiplat:arch-separation]",
            "test_k8s_no_warning_events[aiplat:arch-separation]",
            "test_log_forbidden_pattern_absent[api-gateway:panic-or-fatal]",
            "test_log_forbidden_pattern_absent[arch-separation:panic-or-fatal]",
        ),
        _crash_loop,
        _crash_loop_over,
        group=0,
    ),
    Drill(
        "worker-not-responding",
        "Cloudflare Workers Issues > Worker Not Responding (522)",
        "the Worker's /health answers 522 and 19 % of its invocations fail",
        (
            "test_http_status[worker]",
            "test_cloudflare_worker_errors_below_limit[cloudflare:ai-worker]",
        ),
        _worker_down,
        _worker_up,
        group=0,
    ),
    Drill(
        "worker-misconfigured",
        "Worker Not Responding > Check environment variables (API_GATEWAY_URL)",
        "the Worker's API_GATEWAY_URL points at http://localhost:8000",
        ("test_cloudflare_worker_bindings_as_expected[cloudflare:ai-worker]",),
        _worker_misconfigured,
        _worker_configured,
        group=0,
    ),
    Drill(
        "db-pool-exhausted",
        "Database Issues > Connection Pool Exhaustion",
        "23 more sessions: 85 % of max_connections minus the reserved ones",
        ("test_postgres_connections_below_warning[platform-db]",),
        _db_pool,
        _db_pool_released,
        group=0,
    ),
    Drill(
        "certificate-not-ready",
        "Networking Issues > SSL/TLS Issues (kubectl describe certificate api-gateway-tls)",
        "cert-manager's api-gateway-tls is not Ready; its newest CertificateRequest failed",
        (
            "test_k8s_certificates_ready[aiplat:arch-separation]",
            "test_k8s_certificate_as_expected[aiplat:arch-separation:api-gateway-tls]",
        ),
        _certificate_failing,
        _certificate_issued,
        group=0,
    ),
    Drill(
        "circuit-breaker-open",
        "API Gateway Issues > High Latency or Timeouts (jq .checks.circuit_breaker)",
        "/health reports the circuit breaker open, status degraded",
        (
            "test_http_json_conditions[api-gateway]",
            "test_http_json_conditions[circuit-breaker]",
            "test_http_json_conditions[circuit-breaker-closed]",
        ),
        _breaker_open,
        _breaker_closed,
        group=0,
    ),
    Drill(
        "node-memory-pressure",
        "Kubernetes Health > Resource usage (kubectl top nodes)",
        "node-2 uses 15.5 of 16 GiB",
        ("test_k8s_node_memory_below_limit[aiplat]",),
        _node_memory,
        _healthy_cluster,
        group=0,
    ),
    Drill(
        "gateway-timeouts",
        "API Gateway Issues > High Latency or Timeouts",
        "the gateway's /health takes 6 s, longer than the 5 s timeout",
        (
            "test_http_status[api-gateway]",
            "test_http_latency_below_limit[api-gateway]",
            "test_http_json_conditions[api-gateway]",
            "test_http_status[circuit-breaker]",
            "test_http_latency_below_limit[circuit-breaker]",
            "test_http_json_conditions[circuit-breaker]",
            "test_http_status[circuit-breaker-closed]",
            "test_http_latency_below_limit[circuit-breaker-closed]",
            "test_http_json_conditions[circuit-breaker-closed]",
        ),
        _slow_gateway,
        _fast_gateway,
        group=1,
    ),
    Drill(
        "pod-oom-killed",
        "5xx Errors > Check memory/CPU limits: Pods may be OOM killed",
        "an api-gateway pod's last state: OOMKilled 20 minutes ago",
        ("test_k8s_no_oom_killed[aiplat:arch-separation]",),
        _oom,
        _healthy_cluster,
        group=1,
    ),
    Drill(
        "worker-slow",
        "Cloudflare Workers Issues > Slow Worker Performance",
        "the Worker's /health takes 2.5 s; its CPU time p99 is 86 ms",
        (
            "test_http_latency_below_limit[worker]",
            "test_cloudflare_worker_cpu_below_limit[cloudflare:ai-worker]",
        ),
        _worker_slow,
        _worker_fast,
        group=1,
    ),
    Drill(
        "service-unreachable-in-cluster",
        "Networking Issues > Service Mesh Problems (wget http://api-gateway:8080/health)",
        "nothing answers on api-gateway:8080 inside the pods",
        ("test_k8s_probe[aiplat:arch-separation:api-gateway-health]",),
        _gateway_unreachable,
        _gateway_reachable,
        group=1,
    ),
    Drill(
        "scrape-target-down",
        "Monitoring Issues > Missing Metrics (Prometheus targets down)",
        "the gateway's /metrics answers 503",
        ("test_prometheus_targets_up[prometheus]",),
        _scrape_down,
        _scrape_up,
        group=1,
    ),
    Drill(
        "slow-queries",
        "Database Issues > Slow Queries (pg_stat_statements ORDER BY mean_exec_time)",
        "a statement called 10 times takes 1.2 s on average (the limit is 1 s)",
        ("test_postgres_no_slow_statements[platform-db]",),
        _slow_queries,
        _slow_queries_forgotten,
        group=1,
    ),
    Drill(
        "grafana-datasource-failing",
        "Monitoring Issues > Missing Metrics (Grafana dashboards showing no data; test the data source)",
        "Grafana's Prometheus data source points at an address where nothing listens",
        ("test_http_status[grafana-prometheus-health]", "test_http_json_conditions[grafana-prometheus-health]"),
        _datasource_broken,
        _datasource_fixed,
        group=1,
    ),
]
