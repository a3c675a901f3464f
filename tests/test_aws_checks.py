"""AWS family against moto's server mode on loopback, reached by boto3 over HTTP exactly as
AWS is, through a small front (tests/servers_aws.py) that replays the documented shapes of
the four calls moto lacks (RDS DescribePendingMaintenanceActions, Application Auto Scaling
DescribeScalingActivities, X-Ray GetServiceGraph, percentile GetMetricData).

Broken states come from the API where moto can reach them (1 of 3 tasks running and its
deployment IN_PROGRESS, a target on a stopped instance, an alarm set to ALARM, a security
group open to the world); where moto cannot (an RDS instance in storage-full, a replication
group modifying, ECS service events), the emulator's own state is set, and the checks read
it through the same API calls.
"""

import json
import os
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from tests.conftest import run_suite
from tests.servers import closed_port
from tests.servers_aws import ACCOUNT, REGION, AwsFront, MotoServer, epoch, load_balancer

# the module's emulator set-up (about 80 calls to moto) and one suite run of ~110 checks: a
# few seconds alone, much more on a loaded 2-core machine
pytestmark = pytest.mark.timeout(300)

KEY, SECRET = "AKIDOPSCHECKTEST", "opscheck-aws-Secret-5521"
# what boto3's credential chain reads from the environment besides the files set below
CHAIN = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
REVOKED = "AKIDREVOKEDKEY01"
LIMITED = "AKIDLIMITEDKEY01"
EXTERNAL_ID = "opscheck-external-Id-7743"
WIDGETS = json.dumps(
    {"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 3, "properties": {"markdown": "x"}}]}
)


def _clients(url):
    def client(name):
        return boto3.client(
            name, endpoint_url=url, region_name=REGION, aws_access_key_id=KEY, aws_secret_access_key=SECRET
        )

    return client


def _service(ecs, name, desired, running):
    os.environ["MOTO_ECS_SERVICE_RUNNING"] = str(running)  # moto reads it in-process, at creation
    try:
        ecs.create_service(cluster="prod", serviceName=name, taskDefinition="api", desiredCount=desired)
    finally:
        del os.environ["MOTO_ECS_SERVICE_RUNNING"]


def _backends():
    from moto.ecs.models import ecs_backends
    from moto.elasticache.models import elasticache_backends
    from moto.rds.models import rds_backends

    return ecs_backends[ACCOUNT][REGION], rds_backends[ACCOUNT][REGION], elasticache_backends[ACCOUNT][REGION]


def _metrics(cw, namespace, dims, **series):
    now = datetime.now(UTC)
    data = [
        {
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            "Timestamp": now - timedelta(minutes=minutes),
            "Value": float(value),
        }
        for name, value in series.items()
        for minutes in range(3, 58, 5)
    ]
    for start in range(0, len(data), 500):
        cw.put_metric_data(Namespace=namespace, MetricData=data[start : start + 500])


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch, MotoServer() as moto, AwsFront(moto.url) as front:
        for name in CHAIN:  # the developer's own AWS settings stay out of the set-up and the runs
            patch.delenv(name, raising=False)
        c = _clients(moto.url)
        ecs, ec2, elb, rds, cw = c("ecs"), c("ec2"), c("elbv2"), c("rds"), c("cloudwatch")
        # ECS: a healthy service, a degraded one (1 of 3, deployment IN_PROGRESS), a throttled cluster's
        ecs.create_cluster(clusterName="prod")
        ecs.register_task_definition(family="api", containerDefinitions=[{"name": "api", "image": "x", "memory": 128}])
        _service(ecs, "api", 3, 3)
        _service(ecs, "degraded", 3, 1)
        ecs_backend, rds_backend, cache_backend = _backends()
        ecs_backend.services["prod:degraded"].events = [
            {
                "id": "e1",
                "createdAt": datetime.now(UTC),
                "message": "(service degraded) was unable to place a task because no container instance met "
                "all of its requirements.",
            },
            {"id": "e0", "createdAt": datetime.now(UTC) - timedelta(days=3), "message": "(service degraded) unhealthy"},
        ]
        ecs_backend.services["prod:api"].events = [
            {"id": "e2", "createdAt": datetime.now(UTC), "message": "(service api) has reached a steady state."}
        ]
        for cluster in ("busy", "jammed"):
            ecs.create_cluster(clusterName=cluster)
            os.environ["MOTO_ECS_SERVICE_RUNNING"] = "1"
            ecs.create_service(cluster=cluster, serviceName="api", taskDefinition="api", desiredCount=1)
            del os.environ["MOTO_ECS_SERVICE_RUNNING"]
        # ALB, two target groups: "api" (3 healthy ip targets), "web" (one target on a stopped instance)
        vpc, subnets, lb = load_balancer(ec2, elb)
        groups = {}
        for name, kind in (("api", "ip"), ("web", "instance")):
            groups[name] = elb.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType=kind)[
                "TargetGroups"
            ][0]
            elb.create_listener(
                LoadBalancerArn=lb["LoadBalancerArn"],
                Protocol="HTTP",
                Port=80 if name == "api" else 8080,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[name]["TargetGroupArn"]}],
            )
        elb.register_targets(
            TargetGroupArn=groups["api"]["TargetGroupArn"],
            Targets=[{"Id": f"10.0.1.{i}", "Port": 80} for i in (5, 6, 7)],
        )
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnets[0])["Instances"][0]
        elb.register_targets(
            TargetGroupArn=groups["web"]["TargetGroupArn"], Targets=[{"Id": instance["InstanceId"], "Port": 80}]
        )
        ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
        lb_dim = lb["LoadBalancerArn"].split("loadbalancer/", 1)[1]
        for name, errors in (("api", 2), ("web", 50)):
            tg_dim = groups[name]["TargetGroupArn"].rsplit(":", 1)[-1]
            _metrics(
                cw,
                "AWS/ApplicationELB",
                {"LoadBalancer": lb_dim, "TargetGroup": tg_dim},
                RequestCount=1000 / 11,
                HTTPCode_Target_5XX_Count=errors / 11,
            )
        # RDS: "db" healthy; "db-full" in storage-full with 1 GiB free, CPU 95 %, 50 ms reads; "db-nobackup"
        for name, retention in (("db", 7), ("db-full", 7), ("db-nobackup", 0)):
            rds.create_db_instance(
                DBInstanceIdentifier=name,
                DBInstanceClass="db.t3.micro",
                Engine="postgres",
                AllocatedStorage=100,
                MasterUsername="opscheck",
                MasterUserPassword="not-used-Pw-1",
                BackupRetentionPeriod=retention,
            )
        rds_backend.databases["db-full"].status = "storage-full"
        for name, free_gib, cpu, read in (("db", 60, 20, 0.002), ("db-full", 1, 95, 0.05)):
            _metrics(
                cw,
                "AWS/RDS",
                {"DBInstanceIdentifier": name},
                FreeStorageSpace=free_gib * 1024**3,
                CPUUtilization=cpu,
                ReadLatency=read,
                WriteLatency=0.003,
            )
        front.maintenance = {
            "db": [{"Action": "system-update", "Description": "New Operating System update is available"}],
            "db-full": [
                {
                    "Action": "db-upgrade",
                    "Description": "Minor engine version upgrade",
                    "ForcedApplyDate": "2026-12-20T00:00:00Z",
                }
            ],
        }
        # ElastiCache: a cluster and a replication group; "rg-busy" is modifying
        cache = c("elasticache")
        cache.create_cache_cluster(
            CacheClusterId="cache", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1
        )
        for name in ("rg", "rg-busy"):
            cache.create_replication_group(
                ReplicationGroupId=name, ReplicationGroupDescription="d", Engine="redis", CacheNodeType="cache.t3.micro"
            )
        cache_backend.replication_groups["rg-busy"].status = "modifying"
        # CloudWatch: five alarms (one in ALARM), dashboards, ECS metrics
        for name in ("accunode-cpu", "accunode-memory", "accunode-5xx", "accunode-latency", "accunode-storage"):
            cw.put_metric_alarm(
                AlarmName=name,
                MetricName="Errors",
                Namespace="AccuNode/Alarms",  # no data: moto keeps them OK
                Statistic="Average",
                Period=60,
                EvaluationPeriods=1,
                Threshold=80,
                ComparisonOperator="GreaterThanThreshold",
            )
        cw.set_alarm_state(AlarmName="accunode-5xx", StateValue="ALARM", StateReason="Threshold Crossed: 1 datapoint")
        cw.put_dashboard(DashboardName="AccuNode-Production", DashboardBody=WIDGETS)
        cw.put_dashboard(DashboardName="Empty", DashboardBody=json.dumps({"widgets": []}))
        _metrics(cw, "AWS/ECS", {"ClusterName": "prod", "ServiceName": "api"}, CPUUtilization=35, MemoryUtilization=60)
        _metrics(cw, "AWS/ECS", {"ClusterName": "prod", "ServiceName": "degraded"}, CPUUtilization=92)
        front.percentiles[("TargetResponseTime", "p95")] = 0.42
        front.percentiles[("TargetResponseTime", "p99")] = 2.5
        # CloudWatch Logs: /aws/ecs/prod, 2 ERROR lines (one about the model), 200s and 429s
        logs = c("logs")
        logs.create_log_group(logGroupName="/aws/ecs/prod")
        logs.create_log_stream(logGroupName="/aws/ecs/prod", logStreamName="api/1")
        now = int(datetime.now(UTC).timestamp() * 1000)
        lines = ["ERROR database timeout", "ERROR prediction failed: model file missing"]
        lines += ["GET /api/v1/health status=200"] * 40 + ["GET /api/v1/predict status=429"] * 3
        logs.put_log_events(
            logGroupName="/aws/ecs/prod",
            logStreamName="api/1",
            logEvents=[{"timestamp": now - 60_000 + i, "message": m} for i, m in enumerate(lines)],
        )
        # Application Auto Scaling: api 3 of max 10; degraded 3 of max 3 with a Failed activity
        scaling = c("application-autoscaling")
        for name, maximum in (("api", 10), ("degraded", 3)):
            scaling.register_scalable_target(
                ServiceNamespace="ecs",
                ResourceId=f"service/prod/{name}",
                ScalableDimension="ecs:service:DesiredCount",
                MinCapacity=1,
                MaxCapacity=maximum,
            )
        front.scaling_activities = [
            {
                "ActivityId": "a1",
                "ServiceNamespace": "ecs",
                "ResourceId": "service/prod/degraded",
                "ScalableDimension": "ecs:service:DesiredCount",
                "Description": "Setting desired count to 4.",
                "Cause": "monitor alarm TargetTracking-high",
                "StartTime": epoch(timedelta(hours=2)),
                "EndTime": epoch(timedelta(hours=2)),
                "StatusCode": "Failed",
                "StatusMessage": "Failed to set desired count to 4: maximum capacity 3 reached",
            }
        ]
        # security groups: db-open allows 5432 from the world, db-closed only from the app's group
        app = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
        opened = ec2.create_security_group(GroupName="db-open", Description="d", VpcId=vpc)["GroupId"]
        closed = ec2.create_security_group(GroupName="db-closed", Description="d", VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=opened,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            ],
        )
        ec2.authorize_security_group_ingress(
            GroupId=closed,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": app}]}
            ],
        )
        # X-Ray: accunode-api healthy, payments faulting 10 %
        front.service_graph = [
            {
                "ReferenceId": 0,
                "Name": "accunode-api",
                "Type": "AWS::ECS::Container",
                "State": "active",
                "SummaryStatistics": {
                    "OkCount": 990,
                    "FaultStatistics": {"TotalCount": 2, "OtherCount": 2},
                    "TotalCount": 1000,
                },
            },
            {
                "ReferenceId": 1,
                "Name": "payments",
                "Type": "remote",
                "State": "active",
                "SummaryStatistics": {
                    "OkCount": 90,
                    "FaultStatistics": {"TotalCount": 10, "OtherCount": 10},
                    "TotalCount": 100,
                },
            },
        ]
        # ECR: api:latest scanned with 1 MEDIUM, api:old with 2 CRITICAL (moto's configurable scan results)
        ecr = c("ecr")
        ecr.create_repository(repositoryName="accunode-api", imageScanningConfiguration={"scanOnPush": True})
        for tag, digit in (("latest", "a"), ("old", "b")):
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "digest": "sha256:" + digit * 64,
                    "size": 1,
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                },
                "layers": [],
            }
            ecr.put_image(repositoryName="accunode-api", imageTag=tag, imageManifest=json.dumps(manifest))
            ecr.start_image_scan(repositoryName="accunode-api", imageId={"imageTag": tag})
        import requests

        scans = [
            {
                "imageScanFindings": {
                    "findingSeverityCounts": counts,
                    "imageScanCompletedAt": epoch(timedelta(hours=5)),
                    "enhancedFindings": [],
                },
                "registryId": ACCOUNT,
                "repositoryName": "accunode-api",
                "imageId": {"imageTag": tag},
                "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
            }
            for tag, counts in (("latest", {"MEDIUM": 1}), ("old", {"CRITICAL": 2, "HIGH": 1}))
        ]
        requests.post(
            f"{moto.url}/moto-api/static/ecr/scan-finding-results",
            json={"results": scans, "region": REGION},
            timeout=10,
        )
        # credentials: a revoked key (refused by the front), a key whose X-Ray access is denied
        front.refused_keys.add(REVOKED)
        front.denied.add((LIMITED, "GetServiceGraph"))
        front.throttles.append(["DescribeServices", b'"busy"', 2])
        front.throttles.append(["DescribeServices", b'"jammed"', -1])
        folder = tmp_path_factory.mktemp("aws-config")
        (folder / "credentials").write_text(
            f"[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"
            f"[revoked]\naws_access_key_id = {REVOKED}\naws_secret_access_key = revoked-Secret-1\n"
            f"[limited]\naws_access_key_id = {LIMITED}\naws_secret_access_key = limited-Secret-1\n"
        )
        (folder / "config").write_text("[default]\nregion = us-east-1\n")
        env = {
            "AWS_SHARED_CREDENTIALS_FILE": str(folder / "credentials"),
            "AWS_CONFIG_FILE": str(folder / "config"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_EXTERNAL_ID": EXTERNAL_ID,
        }
        yield front, env


def _healthy(front):
    return {
        "name": "healthy",
        "region": REGION,
        "endpoint_url": front.url,
        "ecs_services": [{"cluster": "prod", "service": "api", "task_definition": "api:1"}],
        "target_groups": [{"name": "api", "ecs_service": "prod/api"}],
        "rds_instances": [{"id": "db"}],
        "elasticache": [{"cache_cluster": "cache"}, {"replication_group": "rg"}],
        "alarms": {"prefix": "accunode-", "allow": ["accunode-5xx"]},
        "dashboards": ["AccuNode-Production"],
        "metrics": [
            {
                "name": "ecs-cpu",
                "namespace": "AWS/ECS",
                "metric": "CPUUtilization",
                "dimensions": {"ClusterName": "prod", "ServiceName": "api"},
                "op": "<",
                "value": 80,
            },
            {
                "name": "ecs-memory",
                "namespace": "AWS/ECS",
                "metric": "MemoryUtilization",
                "dimensions": {"ClusterName": "prod", "ServiceName": "api"},
                "op": "<",
                "value": 85,
                "growth_max_pct": 20,
                "window": "30m",
            },
            {
                "name": "response-p95",
                "namespace": "AWS/ApplicationELB",
                "metric": "TargetResponseTime",
                "statistic": "p95",
                "window": "24h",
                "period": 3600,
                "op": "<=",
                "value": 1,
            },
        ],
        "log_patterns": [
            {"name": "errors", "log_group": "/aws/ecs/prod", "filter_pattern": "ERROR", "max_events": 10},
            {
                "name": "rate-limited",
                "log_group": "/aws/ecs/prod",
                "filter_pattern": '"status=429"',
                "ratio_filter_pattern": '"GET"',
                "max_ratio_pct": 10,
                "max_events": 100,
            },
        ],
        "scalable_targets": [{"resource_id": "service/prod/api"}],
        "security_groups": [],
        "xray": {"services": ["accunode-api"], "fault_max_pct": 15},
        "ecr_images": [{"repository": "accunode-api", "tag": "latest", "push_max_age_days": 30}],
    }


@pytest.fixture(scope="module")
def result(aws, tmp_path_factory):
    front, env = aws
    healthy = _healthy(front)
    inventory = {
        "environment": "selftest-aws",
        "aws": [
            healthy,
            {
                "name": "broken",
                "region": REGION,
                "endpoint_url": front.url,
                "ecs_services": [
                    {"cluster": "prod", "service": "degraded", "pending_grace": "1s", "task_definition": "api:2"},
                    {"cluster": "prod", "service": "gone"},
                ],
                "target_groups": [{"name": "web", "error_ratio_max_pct": 1}],
                "rds_instances": [{"id": "db-full", "snapshot_max_age_hours": 0.0001}, {"id": "db-nobackup"}],
                "elasticache": [{"replication_group": "rg-busy"}],
                "alarms": {"prefix": "accunode-"},
                "dashboards": ["Empty"],
                "metrics": [
                    {
                        "name": "ecs-cpu",
                        "namespace": "AWS/ECS",
                        "metric": "CPUUtilization",
                        "dimensions": {"ClusterName": "prod", "ServiceName": "degraded"},
                        "op": "<",
                        "value": 80,
                        "severity": "p1",
                        "hint": "ECS CPU over 80 %: scale out or find the hot path.",
                    },
                    {
                        "name": "no-data",
                        "namespace": "AWS/ECS",
                        "metric": "CPUUtilization",
                        "dimensions": {"ClusterName": "prod", "ServiceName": "nothing"},
                        "op": "<",
                        "value": 80,
                    },
                    {
                        "name": "response-p99",
                        "namespace": "AWS/ApplicationELB",
                        "metric": "TargetResponseTime",
                        "statistic": "p99",
                        "window": "24h",
                        "period": 3600,
                        "op": "<=",
                        "value": 1,
                    },
                ],
                "log_patterns": [
                    {
                        "name": "prediction-errors",
                        "log_group": "/aws/ecs/prod",
                        "filter_pattern": "ERROR",
                        "regex": "predict|model",
                        "ignore_case": True,
                        "max_events": 0,
                    },
                    {
                        "name": "rate-limited",
                        "log_group": "/aws/ecs/prod",
                        "filter_pattern": '"status=429"',
                        "ratio_filter_pattern": '"GET"',
                        "max_ratio_pct": 1,
                        "max_events": 100,
                    },
                    {"name": "capped", "log_group": "/aws/ecs/prod", "max_events": 5, "scan_max_events": 20},
                ],
                "scalable_targets": [{"resource_id": "service/prod/degraded"}],
                "xray": {"services": ["accunode-api"], "fault_max_pct": 1},
                "ecr_images": [{"repository": "accunode-api", "tag": "old", "push_max_age_days": 0.00001}],
            },
            {
                "name": "throttled",
                "region": REGION,
                "endpoint_url": front.url,
                "ecs_services": [{"cluster": "busy", "service": "api"}],
            },
            {
                "name": "jammed",
                "region": REGION,
                "endpoint_url": front.url,
                "timeout": 1,
                "ecs_services": [{"cluster": "jammed", "service": "api"}],
            },
            {
                "name": "revoked",
                "region": REGION,
                "endpoint_url": front.url,
                "profile": "revoked",
                "ecs_services": [{"cluster": "prod", "service": "api"}],
                "rds_instances": [{"id": "db"}],
            },
            {
                "name": "limited",
                "region": REGION,
                "endpoint_url": front.url,
                "profile": "limited",
                "alarms": {"prefix": "accunode-cpu"},
                "xray": {},
            },
            {
                "name": "assumed",
                "region": REGION,
                "endpoint_url": front.url,
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/opscheck-readonly",
                "external_id": "${AWS_EXTERNAL_ID}",
                "alarms": {"prefix": "accunode-cpu"},
                "xray": {"services": ["accunode-worker"], "fault_max_pct": 50},
            },
            {
                "name": "down",
                "region": REGION,
                "endpoint_url": f"http://127.0.0.1:{closed_port()}",
                "timeout": 1,
                "ecs_services": [{"cluster": "prod", "service": "api"}],
                "rds_instances": [{"id": "db"}],
                "alarms": {},
            },
        ],
    }
    ec2 = boto3.client(
        "ec2", endpoint_url=front.url, region_name=REGION, aws_access_key_id=KEY, aws_secret_access_key=SECRET
    )
    by_name = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    inventory["aws"][0]["security_groups"] = [{"id": by_name["db-closed"], "allowed_sources": [by_name["app"]]}]
    inventory["aws"][1]["security_groups"] = [{"id": by_name["db-open"]}]
    folder = tmp_path_factory.mktemp("aws")
    # a previous run saw db-full's upgrade pending 10 days ago (state.json), db's is new
    state = folder / "reports" / "selftest-aws"
    state.mkdir(parents=True)
    first_seen = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    (state / "state.json").write_text(
        json.dumps(
            {
                "aws:broken:rds:db-full:maintenance:db-upgrade": first_seen,
                "last_run": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            }
        )
    )
    front.reset_calls()
    with pytest.MonkeyPatch.context() as patch:  # the developer's own AWS credentials stay out
        for name in CHAIN:
            patch.delenv(name, raising=False)
        return run_suite(inventory, folder, env=env), front


ECS = "healthy:prod/api"


def test_healthy_account_passes(result):
    result, _ = result
    result.assert_passed(
        f"test_aws_ecs_service_active[{ECS}]",
        f"test_aws_ecs_running_equals_desired[{ECS}]",
        f"test_aws_ecs_no_pending_tasks_beyond_grace[{ECS}]",
        f"test_aws_ecs_deployment_completed[{ECS}]",
        f"test_aws_ecs_no_failure_events[{ECS}]",
        f"test_aws_ecs_task_definition_as_expected[{ECS}]",
        "test_aws_target_group_healthy[healthy:api]",
        "test_aws_target_group_5xx_ratio_below_limit[healthy:api]",
        "test_aws_rds_available[healthy:db]",
        "test_aws_rds_free_storage_above_limit[healthy:db]",
        "test_aws_rds_cpu_below_limit[healthy:db]",
        "test_aws_rds_latency_below_limit[healthy:db]",
        "test_aws_rds_no_overdue_maintenance[healthy:db]",
        "test_aws_rds_automated_snapshot_recent[healthy:db]",
        "test_aws_elasticache_available[healthy:cache]",
        "test_aws_elasticache_available[healthy:rg]",
        "test_aws_no_alarm_in_alarm[healthy]",
        "test_aws_dashboard_exists[healthy:AccuNode-Production]",
        "test_aws_metric_holds[healthy:ecs-cpu]",
        "test_aws_metric_holds[healthy:ecs-memory]",
        "test_aws_metric_holds[healthy:response-p95]",
        "test_aws_log_pattern_below_limit[healthy:errors]",
        "test_aws_log_pattern_below_limit[healthy:rate-limited]",
        "test_aws_autoscaling_headroom[healthy:service/prod/api]",
        "test_aws_autoscaling_no_failed_activity[healthy:service/prod/api]",
        "test_aws_xray_no_faulting_service[healthy]",
        "test_aws_ecr_no_findings_at_severity[healthy:accunode-api:latest]",
        "test_aws_ecr_image_recently_pushed[healthy:accunode-api:latest]",
    )
    assert [c for c in result.checks if "[healthy" in c and result.outcome(c) != "passed"] == []


def test_degraded_ecs_service_fails_the_deploy_gate(result):
    result, _ = result
    svc = "broken:prod/degraded"
    result.assert_passed(f"test_aws_ecs_service_active[{svc}]")
    result.assert_failed(
        f"test_aws_ecs_running_equals_desired[{svc}]", "runs 1 of 3 desired tasks (2 pending)", "unable to place"
    )
    result.assert_failed(f"test_aws_ecs_no_pending_tasks_beyond_grace[{svc}]", "2 pending task(s)", "(grace 1s)")
    result.assert_failed(
        f"test_aws_ecs_deployment_completed[{svc}]", "PRIMARY IN_PROGRESS", "wanted one PRIMARY COMPLETED"
    )
    message = result.assert_failed(
        f"test_aws_ecs_no_failure_events[{svc}]", "1 event(s) since", "was unable to place a task"
    )
    assert "(service degraded) unhealthy" not in message  # the 3-day-old event is before the last run
    result.assert_failed(
        f"test_aws_ecs_task_definition_as_expected[{svc}]", "runs task definition api:1, expected api:2"
    )
    result.assert_failed("test_aws_ecs_service_active[broken:prod/gone]", "ECS service prod/gone not found (MISSING)")


def test_unhealthy_targets_and_5xx_fail(result):
    result, _ = result
    result.assert_failed(
        "test_aws_target_group_healthy[broken:web]", "1 of 1 target(s) not healthy", "Target.InvalidState"
    )
    result.assert_failed(
        "test_aws_target_group_5xx_ratio_below_limit[broken:web]", "50 5xx of 1,000 requests", "= 5.00% > limit 1%"
    )


def test_rds_storage_full_and_slow_fails(result):
    result, _ = result
    result.assert_failed("test_aws_rds_available[broken:db-full]", "is storage-full, not available")
    result.assert_failed(
        "test_aws_rds_free_storage_above_limit[broken:db-full]", "1 GiB", "= 1.0% of 100 GiB", "<= limit 20%"
    )
    result.assert_failed("test_aws_rds_cpu_below_limit[broken:db-full]", "peaked at 95.0%", ">= limit 80%")
    result.assert_failed(
        "test_aws_rds_latency_below_limit[broken:db-full]", "ReadLatency peaked at 50.0 ms", ">= limit 20 ms"
    )
    result.assert_failed(
        "test_aws_rds_no_overdue_maintenance[broken:db-full]", "db-upgrade pending since", "forced from 2026-12-20"
    )
    result.assert_failed(
        "test_aws_rds_automated_snapshot_recent[broken:db-full]",
        "newest automated snapshot rds:db-full-",
        "> limit 0.0001 h",
    )
    result.assert_failed(
        "test_aws_rds_automated_snapshot_recent[broken:db-nobackup]",
        "automated backups are off (BackupRetentionPeriod 0)",
    )


def test_cloudwatch_alarm_metrics_and_logs_fail(result):
    result, _ = result
    result.assert_failed("test_aws_elasticache_available[broken:rg-busy]", "replication group rg-busy is modifying")
    result.assert_failed(
        "test_aws_no_alarm_in_alarm[broken]",
        "1 alarm(s) with prefix 'accunode-' in ALARM",
        "accunode-5xx",
        "Threshold Crossed",
    )
    result.assert_failed("test_aws_dashboard_exists[broken:Empty]", "dashboard Empty has no widgets")
    result.assert_failed("test_aws_metric_holds[broken:ecs-cpu]", "datapoints in the last 1h break < 80; worst 92.00")
    result.assert_failed("test_aws_metric_holds[broken:no-data]", "no datapoints in the last 1h")
    result.assert_failed(
        "test_aws_metric_holds[broken:response-p99]", "TargetResponseTime p99", "break <= 1; worst 2.50"
    )
    assert result.checks[["checks/test_aws.py", "test_aws_metric_holds[broken:ecs-cpu]"][1]]["severity"] == "p1"
    result.assert_failed(
        "test_aws_log_pattern_below_limit[broken:prediction-errors]",
        "1 events > limit 0",
        "prediction failed: model file missing",
    )
    result.assert_failed(
        "test_aws_log_pattern_below_limit[broken:rate-limited]", "3 of 43 events", "= 6.98% > limit 1%"
    )
    result.assert_failed(
        "test_aws_log_pattern_below_limit[broken:capped]", "[truncated: stopped at 20 events", "20 events > limit 5"
    )


def test_scaling_security_xray_ecr_fail(result):
    result, _ = result
    result.assert_failed("test_aws_autoscaling_headroom[broken:service/prod/degraded]", "desired 3 tasks = maximum 3")
    result.assert_failed(
        "test_aws_autoscaling_no_failed_activity[broken:service/prod/degraded]",
        "1 failed scaling",
        "maximum capacity 3 reached",
    )
    open_group = next(c for c in result.checks if c.startswith("test_aws_security_group_ports_closed[broken:"))
    result.assert_failed(open_group, "(db-open) allows ingress on 5432 from 0.0.0.0/0 (the world)")
    result.assert_passed(
        next(c for c in result.checks if c.startswith("test_aws_security_group_ports_closed[healthy:"))
    )
    result.assert_failed("test_aws_xray_no_faulting_service[broken]", "payments (remote): 10 faults of 100 = 10.0%")
    result.assert_failed("test_aws_xray_no_faulting_service[assumed]", "no node for accunode-worker", "2 node(s) seen")
    result.assert_failed(
        "test_aws_ecr_no_findings_at_severity[broken:accunode-api:old]", "2 finding(s) at or above CRITICAL: CRITICAL 2"
    )
    result.assert_failed("test_aws_ecr_image_recently_pushed[broken:accunode-api:old]", "> limit 1e-05 days")


def test_throttling_is_retried_within_the_timeout(result):
    result, front = result
    result.assert_passed("test_aws_ecs_running_equals_desired[throttled:busy/api]")
    result.assert_failed(
        "test_aws_ecs_service_active[jammed:jammed/api]",
        "DescribeServices still throttled after",
        "within the 1 s timeout",
    )


def test_refused_credentials_fail_first_then_block(result):
    result, _ = result
    first = result.assert_failed("test_aws_ecs_service_active[revoked:prod/api]")
    assert (
        "credentials refused" in first and "UnrecognizedClientException" in first or "InvalidClientTokenId" in first
    ), first
    assert not first.startswith("blocked")
    for check in ("test_aws_ecs_running_equals_desired[revoked:prod/api]", "test_aws_rds_available[revoked:db]"):
        result.assert_failed(check, "blocked:", "credentials refused")


def test_a_denied_action_blocks_only_its_checks(result):
    result, _ = result
    result.assert_failed(
        "test_aws_xray_no_faulting_service[limited]", "xray:GetServiceGraph is denied", "AccessDeniedException"
    )
    result.assert_passed("test_aws_no_alarm_in_alarm[limited]")


def test_role_is_assumed(result):
    result, front = result
    result.assert_passed("test_aws_no_alarm_in_alarm[assumed]")
    assert front.calls["AssumeRole"] == 1
    assert EXTERNAL_ID not in result.output and SECRET not in result.output


def test_unreachable_endpoint_fails_once_then_blocks(result):
    result, _ = result
    first = result.assert_failed("test_aws_ecs_service_active[down:prod/api]", "cannot reach")
    assert not first.startswith("blocked")
    result.assert_failed("test_aws_ecs_running_equals_desired[down:prod/api]", "blocked: ")
    result.assert_failed("test_aws_rds_available[down:db]", "blocked: ")
    result.assert_failed("test_aws_no_alarm_in_alarm[down]", "blocked: ")


def test_calls_are_made_once_per_run(result):
    result, front = result
    # healthy and broken share cluster prod but are two targets: one DescribeServices each
    assert front.calls["DescribeServices"] >= 2
    assert front.calls["DescribeAlarms"] == 4  # one per target with alarms: healthy, broken, limited, assumed
    assert front.calls["GetMetricData"] == 6  # healthy: 1h, 30m, the 30m before, 24h; broken: 1h, 24h
    assert front.calls["DescribeTargetHealth"] == 2 and front.calls["DescribeTargetGroups"] == 2


BAD = """environment: selftest-aws-bad
aws:
  - name: prod
    region: mars-central-1
    ecs_services: [{cluster: prod, service: api}]
    target_groups: [{name: api, ecs_service: prod/other}]
    metrics:
      - {name: cpu, namespace: AWS/ECS, metric: CPUUtilization, statistic: Median, period: 90, op: "<", value: 1}
"""


def test_bad_aws_sections_are_refused_where_declared(run_checks):
    result = run_checks(BAD)
    assert result.rc == 4, result.output
    assert "inventory.yml:4: aws[0].region" in result.output
    assert "statistic: Average, Sum, Minimum, Maximum, SampleCount or a percentile" in result.output
    assert "period must be a multiple of 60 seconds" in result.output
    assert "Traceback" not in result.output


def test_collecting_aws_checks_imports_no_boto3(tmp_path):
    """Collection records what each target needs, and calls nothing: boto3 stays unimported."""
    import subprocess
    import sys

    import yaml

    path = tmp_path / "inventory.yml"
    path.write_text(
        yaml.safe_dump({"environment": "collect-aws", "aws": [_healthy(type("F", (), {"url": "http://127.0.0.1:1"}))]})
    )
    probe = (
        "import sys, pytest\n"
        f"rc = pytest.main(['-q', '--collect-only', '--inventory={path}', '--reports-dir={tmp_path}'])\n"
        "print('@@', rc, 'boto3' in sys.modules, 'botocore' in sys.modules)\n"
    )
    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "@@ 0 False False" in proc.stdout, proc.stdout + proc.stderr


def test_accunode_inventory_covers_every_cloud_catalog_entry():
    """Every accunode-ecs-*, -cloud-*, -rds-*, -logs-* entry of the catalog is named where the
    AccuNode inventory checks it (the seed inventories carry the catalog ids as comments)."""
    import re

    import yaml

    from tests.conftest import REPO

    catalog = REPO.parent / "shared" / "catalog" / "seed-checks.yaml"
    if not catalog.exists():
        pytest.skip("the shared catalog is not beside this checkout")
    ids = [e["id"] for e in yaml.safe_load(catalog.read_text())["checks"]]
    cloud = [i for i in ids if re.match(r"accunode-(ecs|cloud|rds|logs)-", i)]
    assert len(cloud) == 18
    text = (REPO / "inventories" / "accunode.yml").read_text()
    assert [i for i in cloud if i not in text] == []


def test_gather_reads_everything_once_then_nothing(aws, monkeypatch):
    """The interface a gather phase calls: gather() performs every read of the target's checks,
    concurrently; reading again (as the checks do) makes no further call."""
    from opscheck.families.aws import Aws, AwsClient, rows_of

    front, env = aws
    for name in CHAIN:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    target = Aws.model_validate(_healthy(front))
    client = AwsClient(target, timeout=10)
    front.reset_calls()
    client.gather()
    gathered = dict(front.calls)
    assert gathered["GetMetricData"] == 4 and gathered["DescribeServices"] == 1 and gathered["DescribeAlarms"] == 1
    for argname, rows in rows_of(target, marked=False).items():
        for row in rows:
            for read in client.reads(argname, row.value):
                read()
    assert dict(front.calls) == gathered
    assert sum(client.calls.values()) == sum(gathered.values())
    client.close()
