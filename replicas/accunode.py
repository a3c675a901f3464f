"""AccuNode (runbook 001, inventories/accunode.yml): the ECS service accunode-api behind an ALB,
RDS accunode-prod (PostgreSQL), ElastiCache (Redis), CloudWatch metrics, alarms, dashboards
and logs, X-Ray, ECR, the API on :8000 with its OAuth2 token endpoint, the status pages,
the internal docs, PagerDuty, and a Docker host running the accunode-api container.

Real parts: moto's server with the front that answers what moto lacks (tests/servers_aws),
reached through AWS_ENDPOINT_URL as boto3 reaches a VPC endpoint, filled with the runbook's
resources and two weeks of metrics; PostgreSQL and redis-server as what RDS and ElastiCache
serve; the API's health route and a JWT API issuing real tokens for the OAuth2 password
grant (tests/servers_http_auth.JwtApi); nginx serving the status pages, the docs pages, the
API's certificate and a PagerDuty REST API stand-in (the service, its escalation policy's
on-call, the read-only key checked); a private Docker engine running accunode-api with its
model file and uvicorn's log; a sign-off record for the daily checklist line a person does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
import requests
import yaml

from replicas.base import Drill, Replica
from replicas.parts import MONITOR_PASSWORD, MONITOR_USER, Front, FrontSite, pg_setup, reload, script
from tests.servers import HttpServer, PostgresServer, RedisServer, Route
from tests.servers_aws import ACCOUNT, REGION, AwsFront, MotoServer, epoch, load_balancer
from tests.servers_docker import DockerEngineServer
from tests.servers_http_auth import PASSWORD, USER, JwtApi
from tests.servers_tls import Pki, Site

KEY, SECRET = "AKIDACCUNODEREPLICA", "accunode-replica-Secret-1"
CLUSTER, SERVICE = "accunode-prod", "accunode-api"
DATABASE = "accunode_prod"
SCHEMA = """
CREATE EXTENSION pg_stat_statements;
CREATE TABLE companies (id bigserial PRIMARY KEY, name text NOT NULL, sector text);
CREATE TABLE predictions (id bigserial PRIMARY KEY, company_id bigint REFERENCES companies(id),
    probability numeric NOT NULL, model_version text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO companies (name, sector) SELECT 'company-' || n, 'sector-' || (n % 7) FROM generate_series(1, 200) n;
INSERT INTO predictions (company_id, probability, model_version)
    SELECT 1 + n % 200, (n % 100) / 100.0, 'v2.1' FROM generate_series(1, 2000) n;
"""
WIDGETS = json.dumps(
    {
        "widgets": [
            {
                "type": "metric",
                "x": 0,
                "y": 0,
                "width": 12,
                "height": 6,
                "properties": {
                    "metrics": [["AWS/ECS", "CPUUtilization", "ServiceName", SERVICE, "ClusterName", CLUSTER]],
                    "region": REGION,
                },
            }
        ]
    }
)
ACCESS = '{ip} - "{method} {path} HTTP/1.1" {status}'
CACHE_NODE = "accunode-redis-001"
MODEL_FILE = "/app/models/model.pkl"  # the runbook names none: the .env.example's
TASK_DEFINITION = f"{SERVICE}:1"  # the revision "the pipeline deployed"
PAGERDUTY_TOKEN, ESCALATION_POLICY = "pd-replica-Token-7731", "PACCU01"
PAGERDUTY_SERVICES = json.dumps(
    {
        "services": [
            {
                "id": "PSVC001",
                "name": "AccuNode Service",
                "status": "active",
                "escalation_policy": {"id": ESCALATION_POLICY, "type": "escalation_policy_reference"},
            }
        ]
    }
)
PAGERDUTY_ONCALLS = json.dumps(
    {"oncalls": [{"escalation_policy": {"id": ESCALATION_POLICY}, "escalation_level": 1, "user": {"id": "PUSR01"}}]}
)


def pagerduty_locations(token: str) -> str:
    """The two read-only REST calls the inventory makes; any other key is refused (401) as PagerDuty does."""
    refused = f'if ($http_authorization != "Token token={token}") {{ return 401 \'{{"error":{{"code":2006}}}}\'; }}'
    policy = f"escalation_policy_ids%5B%5D={ESCALATION_POLICY}"
    return (
        f"location = /services {{ default_type application/json; {refused} return 200 '{PAGERDUTY_SERVICES}'; }}\n"
        f"location = /oncalls {{ default_type application/json; {refused}\n"
        f'    if ($args !~ "{policy}") {{ return 200 \'{{"oncalls":[]}}\'; }}\n'
        f"    return 200 '{PAGERDUTY_ONCALLS}'; }}\n"
        "location / { return 404; }"
    )


DOCS_LOCATIONS = (
    'location = /runbooks { return 200 "AccuNode runbooks\\n"; }\n'
    'location = /architecture { return 200 "AccuNode architecture\\n"; }\n'
    "location / { return 404; }"
)


def api_log(requests_n: int = 30) -> list[str]:
    """uvicorn's start-up and access lines, as `docker logs accunode-api` shows them."""
    lines = ["INFO:     Started server process [1]", "INFO:     Application startup complete."]
    for i in range(requests_n):
        method, path = ("POST", "/api/v1/predict") if i % 3 else ("GET", "/api/v1/health")
        access = ACCESS.format(ip=f"10.0.1.{i % 5}:4{i:04d}", method=method, path=path, status="200 OK")
        lines.append(f"INFO:     {access}")
    return lines


class AccuNode(Replica):
    name = "accunode"
    runbook = "001_925611f44760d2e2.txt"
    title = "AccuNode (AWS ECS, RDS, ElastiCache, CloudWatch)"
    adapted = {
        "tls[status-page].port": "the stand-in listens on a random port (the seed's 443 is the default)",
        "tls[status-page].server_name": "SNI and the name to match stay status.accunode.com",
        "tls[api].port": "the seed's port 443 is the default, not a variable",
    }

    def build(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        self.pki = Pki(self.dir / "pki")
        status = self.pki.issue("status-page", hosts=("status.accunode.com", "127.0.0.1"))
        internal = self.pki.issue("status-internal", hosts=("status.internal.accunode.com", "127.0.0.1"))
        docs = self.pki.issue("docs", hosts=("docs.internal.accunode.com", "127.0.0.1"))
        pagerduty = self.pki.issue("pagerduty", hosts=("127.0.0.1",))
        api = self.pki.issue("api", hosts=("localhost", "127.0.0.1", "api.accunode.com"))

        def chain(cert):
            return self.pki.chain_file(cert, self.pki.intermediate)

        self.web = Front(
            {
                "status-page": Site(chain(status), status.key_path),
                "status-internal": Site(chain(internal), internal.key_path),
                "docs": FrontSite(chain(docs), docs.key_path, locations=DOCS_LOCATIONS),
                "pagerduty": FrontSite(
                    chain(pagerduty), pagerduty.key_path, locations=pagerduty_locations(PAGERDUTY_TOKEN)
                ),
                "api": Site(chain(api), api.key_path),
            }
        )
        self.engine = DockerEngineServer()
        self.pg = PostgresServer(extra_conf={"shared_preload_libraries": "'pg_stat_statements'", "max_connections": 40})
        self.redis = RedisServer()
        self.app = HttpServer(
            {"/api/v1/health": Route(body={"status": "healthy", "database": "ok", "redis": "ok", "model": "v2.1"})}
        )
        self.jwt = JwtApi(issuer="accunode", audience="accunode-api", lifetime_s=3600)
        self.moto = MotoServer()
        self.services(self.web, self.pg, self.redis, self.app, self.jwt, self.moto, self.engine)
        self.api_container()
        self.front = AwsFront(self.moto.url)
        self.services(self.front)
        pg_setup(self.pg, DATABASE, SCHEMA, ["companies", "predictions"])
        self.cloud()
        self.held: list = []
        self.injected_metrics: list = []

        signoffs = self.dir / "accunode.signoffs.yml"
        record = {
            "item": "accunode-daily-overnight-alerts",
            "by": "replica",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "outcome": "done",
            "note": "the replica has no overnight: nothing to review",
        }
        signoffs.write_text(yaml.safe_dump({"signoffs": [record]}, sort_keys=False))
        self.trust(self.pki.ca_file)
        sites = self.web.sites
        self.env.update(
            ACCUNODE_API_URL=f"http://localhost:{self.app.port}",
            ACCUNODE_AUTH_CHECK_URL=self.jwt.url("/auth/me"),
            ACCUNODE_TOKEN_URL=self.jwt.url("/auth/token"),
            ACCUNODE_MONITOR_USER=USER,
            ACCUNODE_MONITOR_PASSWORD=PASSWORD,
            ACCUNODE_TOKEN_LIFETIME_MIN=str(self.jwt.lifetime_s // 60),
            ACCUNODE_STATUS_PAGE_URL=f"https://127.0.0.1:{sites['status-page'].port}/",
            ACCUNODE_STATUS_PAGE_HOST="127.0.0.1",
            ACCUNODE_INTERNAL_STATUS_PAGE_URL=f"https://127.0.0.1:{sites['status-internal'].port}/",
            ACCUNODE_RUNBOOKS_URL=f"https://127.0.0.1:{sites['docs'].port}/runbooks",
            ACCUNODE_ARCHITECTURE_URL=f"https://127.0.0.1:{sites['docs'].port}/architecture",
            ACCUNODE_PAGERDUTY_TOKEN=PAGERDUTY_TOKEN,
            ACCUNODE_PAGERDUTY_ESCALATION_POLICY_ID=ESCALATION_POLICY,
            ACCUNODE_PAGERDUTY_API_URL=f"https://127.0.0.1:{sites['pagerduty'].port}",
            ACCUNODE_DATABASE_MAX_GB="80",  # 80 % of the stand-in RDS instance's AllocatedStorage (100)
            ACCUNODE_CACHE_ID="accunode-redis",
            ACCUNODE_CACHE_NODE_ID=CACHE_NODE,
            ACCUNODE_TASK_DEFINITION=TASK_DEFINITION,
            ACCUNODE_DOCKER_HOST=self.engine.url,
            ACCUNODE_MODEL_FILE=MODEL_FILE,
            ACCUNODE_DATABASE_URL=self.pg.dsn(MONITOR_USER, MONITOR_PASSWORD, DATABASE),
            ACCUNODE_REDIS_URL=f"redis://127.0.0.1:{self.redis.port}/0",
            ACCUNODE_API_HOST="localhost",
            ACCUNODE_ALB_DIMENSION=self.alb_dimension,
            ACCUNODE_RDS_SECURITY_GROUP=self.security_groups["rds"],
            ACCUNODE_CACHE_SECURITY_GROUP=self.security_groups["cache"],
            ACCUNODE_ECS_SECURITY_GROUP=self.security_groups["ecs"],
            OPSCHECK_SIGNOFFS=str(signoffs),
            AWS_ENDPOINT_URL=self.front.url,  # boto3's own variable: every service through the emulator
            AWS_ACCESS_KEY_ID=KEY,
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(self.dir / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.dir / "no-aws-credentials"),
        )
        self.unset |= {"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN"}
        status_site, api_site = self.web.sites["status-page"], self.web.sites["api"]
        self.adapt("tls[status-page].port", status_site.port)
        self.adapt("tls[status-page].server_name", "status.accunode.com")
        self.adapt("tls[api].port", api_site.port)

    # --- the Docker host: the accunode-api container ---

    def api_container(self, lines: list[str] | None = None, keep: str = "sleep 1000000") -> None:
        """accunode-api with its model file, logging uvicorn's lines, then `keep` (recreated: a fresh log)."""
        with contextlib.suppress(Exception):  # not there yet
            self.engine.client.api.remove_container("accunode-api", force=True)
        model = f"mkdir -p {MODEL_FILE.rsplit('/', 1)[0]} && printf 'accunode v2.1' > {MODEL_FILE}; "
        self.engine.run("accunode-api", model + script(api_log() if lines is None else lines, keep))
        running = keep.startswith("sleep")
        self.engine.wait("accunode-api", lambda a: a["State"]["Running"] == running, 15, "its state")

    def api_log_lines(self, *lines: str) -> None:
        """Lines written to accunode-api's log now (its main process's stdout)."""
        command = "".join(f"printf '%s\\n' {shlex.quote(line)} > /proc/1/fd/1; " for line in lines)
        result = self.engine.client.containers.get("accunode-api").exec_run(["sh", "-c", command])
        if result.exit_code != 0:
            raise RuntimeError(f"accunode-api: cannot write its log: {result.output!r}")

    # --- the AWS account, in moto ---

    def client(self, name: str):
        return boto3.client(
            name, endpoint_url=self.moto.url, region_name=REGION, aws_access_key_id=KEY, aws_secret_access_key=SECRET
        )

    def ecs_service(self):
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][REGION].services[f"{CLUSTER}:{SERVICE}"]

    def cloud(self) -> None:
        c = self.client
        ecs, ec2, elb, rds, cw = c("ecs"), c("ec2"), c("elbv2"), c("rds"), c("cloudwatch")
        ecs.create_cluster(clusterName=CLUSTER)
        ecs.register_task_definition(
            family=SERVICE, containerDefinitions=[{"name": "api", "image": f"{SERVICE}:latest", "memory": 1024}]
        )
        os.environ["MOTO_ECS_SERVICE_RUNNING"] = "3"  # moto reads it in-process, when the service is created
        try:
            ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=SERVICE, desiredCount=3)
        finally:
            del os.environ["MOTO_ECS_SERVICE_RUNNING"]
        self.ecs_service().events = [
            {
                "id": "e1",
                "createdAt": datetime.now(UTC) - timedelta(hours=3),
                "message": f"(service {SERVICE}) has reached a steady state.",
            }
        ]
        vpc, _, lb = load_balancer(ec2, elb)
        group = elb.create_target_group(Name=SERVICE, Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip")
        self.target_group = group["TargetGroups"][0]["TargetGroupArn"]
        elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": self.target_group}],
        )
        elb.register_targets(TargetGroupArn=self.target_group, Targets=[{"Id": f"10.0.1.{i}"} for i in (11, 12, 13)])
        self.alb_dimension = lb["LoadBalancerArn"].split("loadbalancer/", 1)[1]
        rds.create_db_instance(
            DBInstanceIdentifier=CLUSTER,
            DBInstanceClass="db.t3.medium",
            Engine="postgres",
            AllocatedStorage=100,
            MasterUsername="accunode",
            MasterUserPassword="not-used-Pw-1",
            BackupRetentionPeriod=7,
        )
        c("elasticache").create_replication_group(
            ReplicationGroupId="accunode-redis",
            ReplicationGroupDescription="AccuNode cache",
            Engine="redis",
            CacheNodeType="cache.t3.micro",
        )
        for name in ("cpu-high", "memory-high", "alb-5xx", "rds-storage-low"):
            cw.put_metric_alarm(
                AlarmName=f"accunode-{name}",
                MetricName="CPUUtilization",
                Namespace="AWS/ECS",
                Statistic="Average",
                Period=300,
                EvaluationPeriods=2,
                Threshold=80,
                ComparisonOperator="GreaterThanThreshold",
            )
        cw.put_dashboard(DashboardName="AccuNode-Production", DashboardBody=WIDGETS)
        self.metrics(cw)
        self.front.percentiles[("TargetResponseTime", "p95")] = 0.18
        self.logs(c("logs"))
        scaling = c("application-autoscaling")
        scaling.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=f"service/{CLUSTER}/{SERVICE}",
            ScalableDimension="ecs:service:DesiredCount",
            MinCapacity=2,
            MaxCapacity=10,
        )
        self.front.scaling_activities = [
            {
                "ActivityId": "a1",
                "ServiceNamespace": "ecs",
                "ResourceId": f"service/{CLUSTER}/{SERVICE}",
                "ScalableDimension": "ecs:service:DesiredCount",
                "Description": "Setting desired count to 3.",
                "Cause": "monitor alarm TargetTracking-accunode-api-AlarmHigh",
                "StartTime": epoch(timedelta(hours=6)),
                "EndTime": epoch(timedelta(hours=6)),
                "StatusCode": "Successful",
                "StatusMessage": "Successfully set desired count to 3.",
            }
        ]
        self.security_groups = {
            n: ec2.create_security_group(GroupName=f"accunode-{n}", Description=n, VpcId=vpc)["GroupId"]
            for n in ("ecs", "rds", "cache")
        }
        for name, port in (("rds", 5432), ("cache", 6379)):
            ec2.authorize_security_group_ingress(
                GroupId=self.security_groups[name],
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "UserIdGroupPairs": [{"GroupId": self.security_groups["ecs"]}],
                    }
                ],
            )
        self.front.service_graph = [
            {
                "ReferenceId": 0,
                "Name": SERVICE,
                "Type": "AWS::ECS::Container",
                "State": "active",
                "SummaryStatistics": {
                    "OkCount": 4990,
                    "FaultStatistics": {"TotalCount": 3, "OtherCount": 3},
                    "TotalCount": 5000,
                },
            }
        ]
        self.ecr(c("ecr"))

    def metrics(self, cw) -> None:
        """Two weeks of hourly datapoints (the 7-day trends and the week before), 5-minute ones for the last 2 h."""
        now = datetime.now(UTC)
        ecs = {"ClusterName": CLUSTER, "ServiceName": SERVICE}
        tg = {"LoadBalancer": self.alb_dimension, "TargetGroup": self.target_group.rsplit(":", 1)[-1]}
        series = [
            ("AWS/ECS", ecs, {"CPUUtilization": 35.0, "MemoryUtilization": 58.0}),
            (
                "AWS/RDS",
                {"DBInstanceIdentifier": CLUSTER},
                {
                    "CPUUtilization": 22.0,
                    "FreeStorageSpace": 61.0 * 1024**3,
                    "ReadLatency": 0.002,
                    "WriteLatency": 0.003,
                },
            ),
            ("AWS/ApplicationELB", tg, {"RequestCount": 900.0, "HTTPCode_Target_5XX_Count": 1.0}),
            ("AWS/ElastiCache", {"CacheClusterId": CACHE_NODE}, {"DatabaseMemoryUsagePercentage": 12.0}),
        ]
        stamps = [now - timedelta(hours=h) for h in range(2, 15 * 24)]
        stamps += [now - timedelta(minutes=m) for m in range(2, 121, 5)]
        data = [
            (
                namespace,
                {
                    "MetricName": metric,
                    "Value": value,
                    "Timestamp": when,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                },
            )
            for namespace, dims, values in series
            for metric, value in values.items()
            for when in stamps
        ]
        for namespace in {n for n, _ in data}:
            points = [p for n, p in data if n == namespace]
            for start in range(0, len(points), 1000):
                cw.put_metric_data(Namespace=namespace, MetricData=points[start : start + 1000])

    def logs(self, logs, extra: list[str] = ()) -> None:
        """An hour of uvicorn access lines in /aws/ecs/accunode-prod (and `extra` lines now)."""
        group, stream = f"/aws/ecs/{CLUSTER}", "accunode-api/api/0f3c"
        if not extra:
            logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(datetime.now(UTC).timestamp() * 1000)
        if extra:
            events = [{"timestamp": now - 1000 + i, "message": m} for i, m in enumerate(extra)]
        else:
            lines = ["INFO:     Started server process [7]", "INFO:     Application startup complete."]
            for i in range(300):
                path = "/api/v1/predict" if i % 3 else "/api/v1/health"
                lines.append(
                    "INFO:     "
                    + ACCESS.format(
                        ip=f"10.0.1.{5 + i % 3}:5{i:04d}", method="POST" if i % 3 else "GET", path=path, status="200 OK"
                    )
                )
            events = [{"timestamp": now - 3_000_000 + i * 9000, "message": m} for i, m in enumerate(lines)]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    def ecr(self, ecr) -> None:
        ecr.create_repository(repositoryName=SERVICE, imageScanningConfiguration={"scanOnPush": True})
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "digest": "sha256:" + "c" * 64,
                "size": 1,
                "mediaType": "application/vnd.docker.container.image.v1+json",
            },
            "layers": [],
        }
        ecr.put_image(repositoryName=SERVICE, imageTag="latest", imageManifest=json.dumps(manifest))
        ecr.start_image_scan(repositoryName=SERVICE, imageId={"imageTag": "latest"})
        self.scan({"LOW": 2})

    def scan(self, counts: dict[str, int]) -> None:
        """The latest image's scan findings (moto's configurable scan results)."""
        result = {
            "imageScanFindings": {
                "findingSeverityCounts": counts,
                "imageScanCompletedAt": epoch(timedelta(hours=4)),
                "enhancedFindings": [],
            },
            "registryId": ACCOUNT,
            "repositoryName": SERVICE,
            "imageId": {"imageTag": "latest"},
            "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
        }
        requests.post(
            f"{self.moto.url}/moto-api/static/ecr/scan-finding-results",
            json={"results": [result], "region": REGION},
            timeout=10,
        ).raise_for_status()


# --- drills: the runbook's "Common Issues Quick Reference" -------------------------------------


def _cloudwatch():
    from moto.cloudwatch.models import cloudwatch_backends

    return cloudwatch_backends[ACCOUNT][REGION]


def _put_metric(r: AccuNode, namespace: str, dims: dict, metric: str, value: float, minutes: range) -> None:
    """Datapoints now-ish, remembered so the reset takes exactly them out again."""
    backend = _cloudwatch()
    mark = len(backend.metric_data)
    now = datetime.now(UTC)
    data = [
        {
            "MetricName": metric,
            "Value": value,
            "Timestamp": now - timedelta(minutes=m),
            "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
        }
        for m in minutes
    ]
    for start in range(0, len(data), 1000):
        r.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])
    r.injected_metrics += backend.metric_data[mark:]


def _drop_metrics(r: AccuNode) -> None:
    backend = _cloudwatch()
    injected = {id(d) for d in r.injected_metrics}
    backend.metric_data[:] = [d for d in backend.metric_data if id(d) not in injected]
    r.injected_metrics = []


def _events(r: AccuNode, stream: str, lines: list[str]) -> None:
    logs = r.client("logs")
    logs.create_log_stream(logGroupName=f"/aws/ecs/{CLUSTER}", logStreamName=stream)
    now = int(datetime.now(UTC).timestamp() * 1000)  # 2 minutes back: the family's window ends at the minute
    logs.put_log_events(
        logGroupName=f"/aws/ecs/{CLUSTER}",
        logStreamName=stream,
        logEvents=[{"timestamp": now - 120_000 + i, "message": m} for i, m in enumerate(lines)],
    )


def _drop_events(stream: str):
    def reset(r: AccuNode) -> None:
        r.client("logs").delete_log_stream(logGroupName=f"/aws/ecs/{CLUSTER}", logStreamName=stream)

    return reset


ECS = {"ClusterName": CLUSTER, "ServiceName": SERVICE}


CRASH = [
    "ERROR:    Exception in ASGI application",
    *[
        f"ERROR:    sqlalchemy.exc.OperationalError: connection to server at accunode-prod failed (request {n})"
        for n in range(14)
    ],
]


def _api_500(r: AccuNode) -> None:
    r.app.routes["/api/v1/health"] = Route(status=500, body={"detail": "Internal Server Error"})
    _events(r, "accunode-api/api/crash", CRASH)
    r.api_log_lines(*CRASH)  # the same lines in `docker logs accunode-api`


def _api_back(r: AccuNode) -> None:
    r.app.routes["/api/v1/health"] = Route(body={"status": "healthy", "database": "ok", "redis": "ok", "model": "v2.1"})
    _drop_events("accunode-api/api/crash")(r)
    r.api_container()  # restarted: its log starts afresh


def _api_exited(r: AccuNode) -> None:
    """accunode-api fails at start-up and exits 1 (the restarted container's log: the traceback)."""
    lines = [
        "INFO:     Started server process [1]",
        "INFO:     Waiting for application startup.",
        "Traceback (most recent call last):",
        "RuntimeError: REDIS_URL is not set",
        "ERROR:    Application startup failed. Exiting.",
    ]
    r.api_container(lines, keep="false")


def _db_connections(r: AccuNode) -> None:
    # max_connections 40 - 3 reserved: 32 sessions are 86 % (> 80 % critical)
    r.held = [psycopg.connect(r.pg.dsn(MONITOR_USER, MONITOR_PASSWORD, DATABASE), connect_timeout=5) for _ in range(32)]


def _db_released(r: AccuNode) -> None:
    for conn in r.held:
        conn.close()
    r.held = []


def _status_page_expired(r: AccuNode) -> None:
    expired = r.pki.issue("status-page-expired", hosts=("status.accunode.com", "127.0.0.1"), expired=True)
    site = r.web.sites["status-page"]
    site.chain, site.key = r.pki.chain_file(expired, r.pki.intermediate), expired.key_path
    reload(r.web)


def _status_page_renewed(r: AccuNode) -> None:
    renewed = r.pki.issue("status-page-renewed", hosts=("status.accunode.com", "127.0.0.1"))
    site = r.web.sites["status-page"]
    site.chain, site.key = r.pki.chain_file(renewed, r.pki.intermediate), renewed.key_path
    reload(r.web)


def _deployment_stuck(r: AccuNode) -> None:
    """A new task definition revision rolls out and its tasks do not start: 1 of 3 new tasks run."""
    service = r.ecs_service()
    r.saved_service = (service.running_count, service.pending_count, list(service.deployments), list(service.events))
    started = datetime.now(UTC) - timedelta(minutes=25)
    old = dict(
        service.deployments[0], status="ACTIVE", desiredCount=0, runningCount=1, pendingCount=0, updatedAt=started
    )
    new = dict(
        service.deployments[0],
        id="ecs-svc/9876543210123456",
        status="PRIMARY",
        desiredCount=3,
        runningCount=1,
        pendingCount=2,
        rolloutState="IN_PROGRESS",
        createdAt=started,
        updatedAt=started,
        rolloutStateReason="ECS deployment ecs-svc/9876543210123456 in progress.",
        taskDefinition=service.deployments[0]["taskDefinition"].replace(":1", ":2"),
    )
    service.deployments = [new, old]
    service.running_count, service.pending_count = 2, 2
    service.events = [
        {
            "id": "e9",
            "createdAt": datetime.now(UTC) - timedelta(minutes=2),
            "message": f"(service {SERVICE}) is unable to consistently start tasks successfully.",
        },
        *service.events,
    ]

    r.env["ACCUNODE_TASK_DEFINITION"] = new["taskDefinition"].rsplit("/", 1)[-1]  # what the pipeline deployed


def _deployment_back(r: AccuNode) -> None:
    service = r.ecs_service()
    service.running_count, service.pending_count, service.deployments, service.events = r.saved_service
    r.env["ACCUNODE_TASK_DEFINITION"] = TASK_DEFINITION


def _cpu_spike(r: AccuNode) -> None:
    _put_metric(r, "AWS/ECS", ECS, "CPUUtilization", 96.0, range(2, 30))
    r.client("cloudwatch").set_alarm_state(
        AlarmName="accunode-cpu-high", StateValue="ALARM", StateReason="Threshold Crossed: 2 datapoints > 80"
    )


def _cpu_calm(r: AccuNode) -> None:
    _drop_metrics(r)
    r.client("cloudwatch").set_alarm_state(AlarmName="accunode-cpu-high", StateValue="OK", StateReason="back to normal")


def _memory_leak(r: AccuNode) -> None:
    # 3 datapoints an hour at 84 % beside the hourly 58 %: the last day's mean 77.5 %, +34 % on the day before
    _put_metric(r, "AWS/ECS", ECS, "MemoryUtilization", 84.0, range(5, 24 * 60, 20))


def _signoff_missing(r: AccuNode) -> None:
    path = Path(r.env["OPSCHECK_SIGNOFFS"])
    r.saved_signoffs = path.read_text()
    path.write_text("signoffs: []\n")


def _signoff_back(r: AccuNode) -> None:
    Path(r.env["OPSCHECK_SIGNOFFS"]).write_text(r.saved_signoffs)


def _token_clock_behind(r: AccuNode) -> None:
    r.jwt.iat_offset = -2 * 3600  # the token service's clock is 2 h behind: its tokens are born expired


def _token_clock_right(r: AccuNode) -> None:
    r.jwt.iat_offset = 0


def _slow(r: AccuNode) -> None:
    r.app.routes["/api/v1/health"].delay = 1.5


def _fast(r: AccuNode) -> None:
    r.app.routes["/api/v1/health"].delay = 0.0


def _storage_full(r: AccuNode) -> None:
    from moto.rds.models import rds_backends

    rds_backends[ACCOUNT][REGION].databases[CLUSTER].status = "storage-full"
    _put_metric(r, "AWS/RDS", {"DBInstanceIdentifier": CLUSTER}, "FreeStorageSpace", 0.4 * 1024**3, range(1, 20, 5))


def _storage_scaled(r: AccuNode) -> None:
    from moto.rds.models import rds_backends

    rds_backends[ACCOUNT][REGION].databases[CLUSTER].status = "available"
    _drop_metrics(r)


def _redis_down(r: AccuNode) -> None:
    r.redis.stop()


def _redis_up(r: AccuNode) -> None:
    r.redis.start()


def _prediction_errors(r: AccuNode) -> None:
    """The model file is gone from the container; the two predictions since then failed."""
    lines = [f"ERROR:    prediction failed: model file {MODEL_FILE} not found"] * 2
    result = r.engine.client.containers.get("accunode-api").exec_run(["rm", MODEL_FILE])
    if result.exit_code != 0:
        raise RuntimeError(f"accunode-api: cannot remove {MODEL_FILE}: {result.output!r}")
    r.api_log_lines(*lines)
    _events(r, "accunode-api/api/predict", lines)


def _predictions_back(r: AccuNode) -> None:
    _drop_events("accunode-api/api/predict")(r)
    r.api_container()  # redeployed with its model


def _rate_limited(r: AccuNode) -> None:
    line = "INFO:     " + ACCESS.format(
        ip="10.0.1.9:50001", method="POST", path="/api/v1/predict", status="429 Too Many Requests"
    )
    _events(r, "accunode-api/api/spike", [line] * 20)


AccuNode.drills = [
    Drill(
        "api-answering-500",
        "API Issues > 500 Internal Server Error | Application crash",
        "/api/v1/health answers 500; 15 ERROR lines in /aws/ecs/accunode-prod and in docker logs accunode-api",
        (
            "test_http_status[api-health]",
            "test_aws_log_pattern_below_limit[accunode:errors-1h]",
            "test_aws_log_pattern_below_limit[accunode:api-errors-1h]",
            "test_log_error_rate_below_limit[accunode-api:errors]",
        ),
        _api_500,
        _api_back,
        group=0,
    ),
    Drill(
        "db-connections-exhausted",
        "Database Issues > Connection timeout | Connection pool exhausted",
        "32 more sessions: 86 % of max_connections minus the reserved ones",
        (
            "test_postgres_connections_below_warning[accunode-db]",
            "test_postgres_connections_below_critical[accunode-db]",
        ),
        _db_connections,
        _db_released,
        group=0,
    ),
    Drill(
        "ssl-certificate-expired",
        "Infrastructure Issues > SSL certificate errors | Certificate expiration",
        "status.accunode.com serves a certificate that expired yesterday",
        (
            "test_http_status[status-page]",
            "test_http_latency_below_limit[status-page]",
            "test_tls_chain_verifies[status-page]",
            "test_tls_certificates_expiry_warning[status-page]",
            "test_tls_certificates_expiry_critical[status-page]",
        ),
        _status_page_expired,
        _status_page_renewed,
        group=0,
    ),
    Drill(
        "ecs-deployment-stuck",
        "Useful AWS CLI Commands > Check ECS service status / Get recent ECS events",
        "a new revision's rollout runs 1 of 3 tasks for 25 minutes; 'unable to consistently start tasks'",
        (
            "test_aws_ecs_running_equals_desired[accunode:accunode-prod/accunode-api]",
            "test_aws_ecs_no_pending_tasks_beyond_grace[accunode:accunode-prod/accunode-api]",
            "test_aws_ecs_deployment_completed[accunode:accunode-prod/accunode-api]",
            "test_aws_ecs_no_failure_events[accunode:accunode-prod/accunode-api]",
            "test_aws_target_group_healthy[accunode:accunode-api]",
        ),
        _deployment_stuck,
        _deployment_back,
        group=0,
    ),
    Drill(
        "high-cpu",
        "Infrastructure Issues > High CPU usage | Traffic spike or inefficient code",
        "ECS CPU at 96 % for the last 25 minutes; accunode-cpu-high in ALARM",
        (
            "test_aws_metric_holds[accunode:ecs-cpu-below-80]",
            "test_aws_no_alarm_in_alarm[accunode]",
        ),
        _cpu_spike,
        _cpu_calm,
        group=0,
    ),
    Drill(
        "memory-leak",
        "Infrastructure Issues > Memory leaks",
        "ECS memory averages 77.5 % over the last day, 58 % the day before",
        ("test_aws_metric_holds[accunode:ecs-memory-trend-24h]",),
        _memory_leak,
        _drop_metrics,
        group=0,
    ),
    Drill(
        "overnight-review-not-signed",
        "Daily Operations Checklist > Review overnight alerts and incidents",
        "no sign-off of today's overnight review",
        ("test_checklist_signed_off[accunode-daily-overnight-alerts]",),
        _signoff_missing,
        _signoff_back,
        group=0,
    ),
    Drill(
        "jwt-token-expired",
        "API Issues > 401 Unauthorized | JWT token expired",
        "the token endpoint's clock is 2 hours behind: every token it issues is already expired",
        (
            "test_http_status[api-auth]",
            "test_jwt_not_expiring[api-auth]",
        ),
        _token_clock_behind,
        _token_clock_right,
        group=1,
    ),
    Drill(
        "slow-responses",
        "API Issues > Slow response times | Database queries",
        "/api/v1/health takes 1.5 s (the limit is 1 s)",
        ("test_http_latency_below_limit[api-health]",),
        _slow,
        _fast,
        group=1,
    ),
    Drill(
        "rds-disk-full",
        "Database Issues > Disk space full | Log files or data growth",
        "accunode-prod in storage-full with 0.4 GiB free of 100",
        (
            "test_aws_rds_available[accunode:accunode-prod]",
            "test_aws_rds_free_storage_above_limit[accunode:accunode-prod]",
        ),
        _storage_full,
        _storage_scaled,
        group=1,
    ),
    Drill(
        "redis-down",
        "Quick Diagnostic Commands > Redis connectivity (REDIS DOWN)",
        "the cache's Redis stopped",
        (
            "test_redis_ping[accunode-redis]",
            "test_redis_latency_below_limit[accunode-redis]",
            "test_redis_memory_below_limit[accunode-redis]",
            "test_redis_clients_below_limit[accunode-redis]",
            "test_redis_no_new_evictions[accunode-redis]",
            "test_redis_no_new_rejected_connections[accunode-redis]",
            "test_redis_persistence_ok[accunode-redis]",
        ),
        _redis_down,
        _redis_up,
        group=1,
    ),
    Drill(
        "predictions-failing",
        "Knowledge Base > What to do when predictions are failing?",
        f"{MODEL_FILE} removed from accunode-api; 2 ERROR lines: the model file is missing",
        (
            "test_aws_log_pattern_below_limit[accunode:prediction-errors-1h]",
            f"test_container_file_exists[accunode-docker:accunode-api:{MODEL_FILE}]",
        ),
        _prediction_errors,
        _predictions_back,
        group=1,
    ),
    Drill(
        "rate-limit-errors",
        "API Issues > Rate limit errors | Traffic spike",
        "20 requests answered 429 of 320 in the hour (6 %)",
        ("test_aws_log_pattern_below_limit[accunode:rate-limited-1h]",),
        _rate_limited,
        _drop_events("accunode-api/api/spike"),
        group=1,
    ),
    Drill(
        "api-container-exited",
        "Quick Diagnostic Commands > Container status (docker ps --filter name=accunode)",
        "accunode-api exited 1 at start-up (REDIS_URL not set)",
        (
            "test_container_running[accunode-docker:accunode-api]",
            "test_container_cpu_below_limit[accunode-docker:accunode-api]",
            "test_container_memory_below_limit[accunode-docker:accunode-api]",
            f"test_container_file_exists[accunode-docker:accunode-api:{MODEL_FILE}]",
        ),
        _api_exited,
        lambda r: r.api_container(),
        group=2,
    ),
]
