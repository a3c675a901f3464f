"""AccuNode (runbook 001, inventories/accunode.yml): the ECS service accunode-api behind an ALB,
RDS accunode-prod (PostgreSQL), ElastiCache (Redis), CloudWatch metrics, alarms, dashboards
and logs, X-Ray, ECR, the API on :8000 with its OAuth2 token endpoint, the status page.

Real parts: moto's server with the front that answers what moto lacks (tests/servers_aws),
reached through AWS_ENDPOINT_URL as boto3 reaches a VPC endpoint, filled with the runbook's
resources and two weeks of metrics; PostgreSQL and redis-server as what RDS and ElastiCache
serve; the API's health route and a JWT API issuing real tokens for the OAuth2 password
grant (tests/servers_http_auth.JwtApi); nginx serving the status page and the API's
certificate; a sign-off record for the daily checklist line a person does.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import boto3
import requests
import yaml

from replicas.base import Override, Replica
from replicas.parts import MONITOR_PASSWORD, MONITOR_USER, pg_setup
from tests.servers import HttpServer, PostgresServer, RedisServer, Route
from tests.servers_aws import ACCOUNT, REGION, AwsFront, MotoServer, epoch
from tests.servers_http_auth import PASSWORD, USER, JwtApi
from tests.servers_tls import Nginx, Pki, Site

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
    {"widgets": [{"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
                  "properties": {"metrics": [["AWS/ECS", "CPUUtilization", "ServiceName", SERVICE,
                                              "ClusterName", CLUSTER]], "region": REGION}}]}
)  # fmt: skip
ACCESS = '{ip} - "{method} {path} HTTP/1.1" {status}'


class AccuNode(Replica):
    name = "accunode"
    runbook = "001_925611f44760d2e2.txt"
    title = "AccuNode (AWS ECS, RDS, ElastiCache, CloudWatch)"

    def build(self) -> None:
        self.pki = Pki(self.dir / "pki")
        status = self.pki.issue("status-page", hosts=("status.accunode.com", "127.0.0.1"))
        api = self.pki.issue("api", hosts=("localhost", "127.0.0.1", "api.accunode.com"))
        self.web = Nginx(
            {
                "status-page": Site(self.pki.chain_file(status, self.pki.intermediate), status.key_path),
                "api": Site(self.pki.chain_file(api, self.pki.intermediate), api.key_path),
            }
        )
        self.pg = PostgresServer(extra_conf={"shared_preload_libraries": "'pg_stat_statements'", "max_connections": 40})
        self.redis = RedisServer()
        self.app = HttpServer(
            {"/api/v1/health": Route(body={"status": "healthy", "database": "ok", "redis": "ok", "model": "v2.1"})}
        )
        self.jwt = JwtApi(issuer="accunode", audience="accunode-api", lifetime_s=3600)
        self.moto = MotoServer()
        self.services(self.web, self.pg, self.redis, self.app, self.jwt, self.moto)
        self.front = AwsFront(self.moto.url)
        self.services(self.front)
        pg_setup(self.pg, DATABASE, SCHEMA, ["companies", "predictions"])
        self.cloud()

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
        self.env.update(
            ACCUNODE_API_URL=f"http://localhost:{self.app.port}",
            ACCUNODE_AUTH_CHECK_URL=self.jwt.url("/auth/me"),
            ACCUNODE_TOKEN_URL=self.jwt.url("/auth/token"),
            ACCUNODE_MONITOR_USER=USER,
            ACCUNODE_MONITOR_PASSWORD=PASSWORD,
            ACCUNODE_DATABASE_URL=self.pg.dsn(MONITOR_USER, MONITOR_PASSWORD, DATABASE),
            ACCUNODE_REDIS_URL=f"redis://127.0.0.1:{self.redis.port}/0",
            ACCUNODE_API_HOST="localhost",
            ACCUNODE_ALB_DIMENSION=self.alb_dimension,
            ACCUNODE_RDS_SECURITY_GROUP=self.groups["rds"],
            ACCUNODE_CACHE_SECURITY_GROUP=self.groups["cache"],
            ACCUNODE_ECS_SECURITY_GROUP=self.groups["ecs"],
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
        self.overrides += [
            Override(
                "http[status-page].url",
                f"https://127.0.0.1:{status_site.port}/",
                "https://status.accunode.com is a literal: the stand-in status page's address",
            ),
            Override("tls[status-page].host", "127.0.0.1", "status.accunode.com is a literal: the stand-in's address"),
            Override("tls[status-page].port", status_site.port, "the stand-in listens on a random port"),
            Override("tls[status-page].server_name", "status.accunode.com", "SNI and the name to match"),
            Override("tls[api].port", api_site.port, "the seed's port 443 is the default, not a variable"),
        ]

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
            {"id": "e1", "createdAt": datetime.now(UTC) - timedelta(hours=3),
             "message": f"(service {SERVICE}) has reached a steady state."}
        ]  # fmt: skip
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"][
                "SubnetId"
            ]
            for i, z in ((1, "a"), (2, "b"))
        ]
        lb = elb.create_load_balancer(Name="accunode-alb", Subnets=subnets)["LoadBalancers"][0]
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
            {"ActivityId": "a1", "ServiceNamespace": "ecs", "ResourceId": f"service/{CLUSTER}/{SERVICE}",
             "ScalableDimension": "ecs:service:DesiredCount", "Description": "Setting desired count to 3.",
             "Cause": "monitor alarm TargetTracking-accunode-api-AlarmHigh", "StartTime": epoch(timedelta(hours=6)),
             "EndTime": epoch(timedelta(hours=6)), "StatusCode": "Successful",
             "StatusMessage": "Successfully set desired count to 3."}
        ]  # fmt: skip
        self.groups = {n: ec2.create_security_group(GroupName=f"accunode-{n}", Description=n, VpcId=vpc)["GroupId"]
                       for n in ("ecs", "rds", "cache")}  # fmt: skip
        for name, port in (("rds", 5432), ("cache", 6379)):
            ec2.authorize_security_group_ingress(
                GroupId=self.groups[name],
                IpPermissions=[{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                                "UserIdGroupPairs": [{"GroupId": self.groups["ecs"]}]}],
            )  # fmt: skip
        self.front.service_graph = [
            {"ReferenceId": 0, "Name": SERVICE, "Type": "AWS::ECS::Container", "State": "active",
             "SummaryStatistics": {"OkCount": 4990, "FaultStatistics": {"TotalCount": 3, "OtherCount": 3},
                                   "TotalCount": 5000}}
        ]  # fmt: skip
        self.ecr(c("ecr"))

    def metrics(self, cw) -> None:
        """Two weeks of hourly datapoints (the 7-day trends and the week before), 5-minute ones for the last 2 h."""
        now = datetime.now(UTC)
        ecs = {"ClusterName": CLUSTER, "ServiceName": SERVICE}
        tg = {"LoadBalancer": self.alb_dimension, "TargetGroup": self.target_group.rsplit(":", 1)[-1]}
        series = [
            ("AWS/ECS", ecs, {"CPUUtilization": 35.0, "MemoryUtilization": 58.0}),
            ("AWS/RDS", {"DBInstanceIdentifier": CLUSTER},
             {"CPUUtilization": 22.0, "FreeStorageSpace": 61.0 * 1024**3, "ReadLatency": 0.002, "WriteLatency": 0.003}),
            ("AWS/ApplicationELB", tg, {"RequestCount": 900.0, "HTTPCode_Target_5XX_Count": 1.0}),
        ]  # fmt: skip
        stamps = [now - timedelta(hours=h) for h in range(2, 15 * 24)]
        stamps += [now - timedelta(minutes=m) for m in range(2, 121, 5)]
        data = [
            (namespace, {"MetricName": metric, "Value": value, "Timestamp": when,
                         "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]})
            for namespace, dims, values in series
            for metric, value in values.items()
            for when in stamps
        ]  # fmt: skip
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
                lines.append("INFO:     " + ACCESS.format(ip=f"10.0.1.{5 + i % 3}:5{i:04d}", method="POST" if i % 3
                             else "GET", path=path, status="200 OK"))  # fmt: skip
            events = [{"timestamp": now - 3_000_000 + i * 9000, "message": m} for i, m in enumerate(lines)]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    def ecr(self, ecr) -> None:
        ecr.create_repository(repositoryName=SERVICE, imageScanningConfiguration={"scanOnPush": True})
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": "sha256:" + "c" * 64, "size": 1,
                       "mediaType": "application/vnd.docker.container.image.v1+json"},
            "layers": [],
        }  # fmt: skip
        ecr.put_image(repositoryName=SERVICE, imageTag="latest", imageManifest=json.dumps(manifest))
        ecr.start_image_scan(repositoryName=SERVICE, imageId={"imageTag": "latest"})
        self.scan({"LOW": 2})

    def scan(self, counts: dict[str, int]) -> None:
        """The latest image's scan findings (moto's configurable scan results)."""
        result = {
            "imageScanFindings": {"findingSeverityCounts": counts, "imageScanCompletedAt": epoch(timedelta(hours=4)),
                                  "enhancedFindings": []},
            "registryId": ACCOUNT, "repositoryName": SERVICE, "imageId": {"imageTag": "latest"},
            "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
        }  # fmt: skip
        requests.post(
            f"{self.moto.url}/moto-api/static/ecr/scan-finding-results",
            json={"results": [result], "region": REGION},
            timeout=10,
        ).raise_for_status()
