"""AWS emulation for the self-tests: moto's server mode on loopback, and a small front in
front of it that answers what moto lacks with documented response shapes.

moto (5.2) has no DescribePendingMaintenanceActions (RDS) and no DescribeScalingActivities
(Application Auto Scaling): both answer 500 "not implemented"; its GetServiceGraph (X-Ray)
always answers an empty graph; its GetMetricData fails (500) on percentile statistics
(p95). The front replays the documented shapes of those four, forwards everything else to
moto unchanged, counts every API call by action, and can refuse an access key
(UnrecognizedClientException, as AWS answers a revoked key), deny an action
(AccessDeniedException) or throttle an action (ThrottlingException) a given number of times.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import requests
from moto.server import ThreadedMotoServer

from tests.servers import free_port

ACCOUNT, REGION = "123456789012", "us-east-1"


class MotoServer:
    """moto's server mode on a free loopback port (module-scoped in the self-tests)."""

    def __init__(self):
        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        starting = threading.Thread(target=self.server.start, daemon=True)  # waits forever if the bind fails
        starting.start()
        starting.join(30)
        if starting.is_alive():
            raise RuntimeError(f"moto's server did not start on 127.0.0.1:{self.port}")
        # moto keeps its state per process, not per server: a server started after another one
        # in this process (an earlier test module, another replica) would see that one's resources
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()


class AwsFront:
    """A loopback HTTP server in front of moto: replays, refusals, throttling, call counts."""

    def __init__(self, moto_url: str):
        self.moto = moto_url.removeprefix("http://")
        self.port = free_port()
        self.calls: Counter = Counter()  # by action, every request with a key that is not refused
        self.refused = 0
        self.refused_keys: set[str] = set()
        self.denied: set[tuple[str, str]] = set()  # (access key, action)
        self.throttles: list[list] = []  # [action, body fragment, times left]
        self.maintenance: dict[str, list[dict]] = {}  # instance id -> pending actions
        self.scaling_activities: list[dict] = []
        self.service_graph: list[dict] = []
        self.percentiles: dict[tuple[str, str], float] = {}  # (metric, stat) -> value of every datapoint
        self.lock = threading.Lock()
        self.local = threading.local()  # the request being answered, per server thread
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                front.handle(self)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AwsFront:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()
            self.refused = 0

    # --- request handling ---

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        action, protocol = self.action(request, body)
        key = re.search(r"Credential=([^/]+)/", request.headers.get("Authorization", ""))
        access_key = key.group(1) if key else ""
        if access_key in self.refused_keys:
            with self.lock:
                self.refused += 1
            code = "UnrecognizedClientException" if protocol == "json" else "InvalidClientTokenId"
            return self.error(request, protocol, 403, code, "The security token included in the request is invalid.")
        with self.lock:
            self.calls[action] += 1
            throttled = next((t for t in self.throttles if t[0] == action and t[1] in body and t[2] != 0), None)
            if throttled is not None:
                throttled[2] -= 1
        if (access_key, action) in self.denied:
            return self.error(
                request, protocol, 403, "AccessDeniedException", f"User is not authorized to perform: {action}"
            )
        if throttled is not None:
            code = "ThrottlingException" if protocol in ("json", "rest-json") else "Throttling"
            return self.error(request, protocol, 400, code, "Rate exceeded")
        replay = getattr(self, f"replay_{action}", None)
        if replay is not None:
            self.local.headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
            answer = replay(body)
            if answer is not None:
                return self.send(request, *answer)
        self.forward(request, body)

    @staticmethod
    def action(request, body: bytes) -> tuple[str, str]:
        target = request.headers.get("X-Amz-Target")
        if target:
            return target.rsplit(".", 1)[-1], "json"
        if request.path.startswith("/ServiceGraph"):
            return "GetServiceGraph", "rest-json"
        form = parse_qs(body.decode(errors="replace"))
        return (form.get("Action") or ["?"])[0], "query"

    def error(self, request, protocol: str, status: int, code: str, message: str) -> None:
        if protocol == "query":
            xml = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                "<RequestId>opscheck-front</RequestId></ErrorResponse>"
            )
            return self.send(request, status, "text/xml", xml.encode())
        headers = {"x-amzn-ErrorType": code}
        return self.send(
            request,
            status,
            "application/x-amz-json-1.1",
            json.dumps({"__type": code, "message": message}).encode(),
            headers,
        )

    @staticmethod
    def send(request, status: int, content_type: str, data: bytes, headers=None) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        request.send_header("x-amzn-RequestId", "opscheck-front")
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def forward(self, request, body: bytes) -> None:
        connection = http.client.HTTPConnection(self.moto, timeout=30)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(request.command, request.path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        request.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
        connection.close()

    def ask_moto(self, headers: dict, body: bytes) -> dict:
        """One JSON call to moto with the caller's headers (moto does not check signatures)."""
        connection = http.client.HTTPConnection(self.moto, timeout=30)
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        connection.request("POST", "/", body=body, headers=headers)
        answer = json.loads(connection.getresponse().read() or b"{}")
        connection.close()
        return answer

    # --- replayed actions (documented response shapes) ---

    def replay_DescribePendingMaintenanceActions(self, body: bytes):
        """RDS query protocol, XML (docs: DescribePendingMaintenanceActions, Response Elements)."""
        entries = ""
        for instance, actions in self.maintenance.items():
            details = "".join(
                "<PendingMaintenanceAction>"
                + "".join(f"<{k}>{v}</{k}>" for k, v in action.items())
                + "</PendingMaintenanceAction>"
                for action in actions
            )
            entries += (
                "<ResourcePendingMaintenanceActions>"
                f"<ResourceIdentifier>arn:aws:rds:{REGION}:{ACCOUNT}:db:{instance}</ResourceIdentifier>"
                f"<PendingMaintenanceActionDetails>{details}</PendingMaintenanceActionDetails>"
                "</ResourcePendingMaintenanceActions>"
            )
        xml = (
            '<DescribePendingMaintenanceActionsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">'
            f"<DescribePendingMaintenanceActionsResult><PendingMaintenanceActions>{entries}"
            "</PendingMaintenanceActions></DescribePendingMaintenanceActionsResult>"
            "<ResponseMetadata><RequestId>opscheck-front</RequestId></ResponseMetadata>"
            "</DescribePendingMaintenanceActionsResponse>"
        )
        return 200, "text/xml", xml.encode()

    def replay_DescribeScalingActivities(self, body: bytes):
        """Application Auto Scaling, JSON 1.1 (docs: DescribeScalingActivities, Response Syntax)."""
        wanted = json.loads(body or b"{}").get("ResourceId")
        found = [a for a in self.scaling_activities if wanted in (None, a["ResourceId"])]
        return 200, "application/x-amz-json-1.1", json.dumps({"ScalingActivities": found}).encode()

    def replay_GetServiceGraph(self, body: bytes):
        """X-Ray, REST-JSON (docs: GetServiceGraph, Response Syntax)."""
        asked = json.loads(body or b"{}")
        answer = {
            "StartTime": asked.get("StartTime"),
            "EndTime": asked.get("EndTime"),
            "Services": self.service_graph,
            "ContainsOldGroupVersions": False,
        }
        return 200, "application/json", json.dumps(answer).encode()

    def replay_GetMetricData(self, body: bytes):
        """CloudWatch, JSON 1.0 (docs: GetMetricData, Response Syntax): only requests with a
        percentile statistic (moto fails on those); a datapoint per period, each as configured."""
        asked = json.loads(body or b"{}")
        queries = asked.get("MetricDataQueries", [])
        if not any(re.match(r"^p\d", q.get("MetricStat", {}).get("Stat", "")) for q in queries):
            return None  # moto answers
        start, end = float(asked["StartTime"]), float(asked["EndTime"])
        results = []
        plain = [q for q in queries if not re.match(r"^p\d", q.get("MetricStat", {}).get("Stat", ""))]
        if plain:  # a batch mixing percentiles with plain statistics: moto answers the plain ones
            results += self.ask_moto(self.local.headers, json.dumps({**asked, "MetricDataQueries": plain}).encode())[
                "MetricDataResults"
            ]
        for query in queries:
            if query in plain:
                continue
            stat = query["MetricStat"]
            value = self.percentiles.get((stat["Metric"]["MetricName"], stat["Stat"]))
            stamps = []
            if value is not None:
                when = end - stat["Period"]
                while when >= start:
                    stamps.append(when)
                    when -= stat["Period"]
            results.append(
                {
                    "Id": query["Id"],
                    "Label": stat["Metric"]["MetricName"],
                    "Timestamps": stamps,
                    "Values": [float(value)] * len(stamps) if value is not None else [],
                    "StatusCode": "Complete",
                }
            )
        answer = {"MetricDataResults": results, "Messages": []}
        return 200, "application/x-amz-json-1.0", json.dumps(answer).encode()


def epoch(ago: timedelta) -> float:
    return (datetime.now(UTC) - ago).timestamp()


def load_balancer(ec2, elb, name: str = "accunode-alb") -> tuple[str, list[str], dict]:
    """A VPC with two subnets (zones a and b) and an application load balancer across them:
    (the VPC's id, the subnets' ids, the load balancer)."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    return vpc, subnets, elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]


def seed_small_stack(url: str, key: str = "AKIDOPSCHECKBENCH", secret: str = "bench-Secret-1") -> None:
    """One ECS service (3 of 3 running), one target group with 3 healthy targets behind an ALB,
    one RDS instance with an hour of metrics, five alarms: the benchmark's stack."""
    import os

    import boto3

    def client(name):
        return boto3.client(
            name, endpoint_url=url, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret
        )

    ecs, ec2, elb, rds, cw = (client(n) for n in ("ecs", "ec2", "elbv2", "rds", "cloudwatch"))
    ecs.create_cluster(clusterName="accunode-prod")
    ecs.register_task_definition(
        family="accunode-api", containerDefinitions=[{"name": "api", "image": "x", "memory": 128}]
    )
    os.environ["MOTO_ECS_SERVICE_RUNNING"] = "3"
    try:
        ecs.create_service(
            cluster="accunode-prod", serviceName="accunode-api", taskDefinition="accunode-api", desiredCount=3
        )
    finally:
        del os.environ["MOTO_ECS_SERVICE_RUNNING"]
    vpc, _, lb = load_balancer(ec2, elb)
    group = elb.create_target_group(Name="accunode-api", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")
    arn = group["TargetGroups"][0]["TargetGroupArn"]
    elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}],
    )
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": f"10.0.1.{i}", "Port": 80} for i in (5, 6, 7)])
    rds.create_db_instance(
        DBInstanceIdentifier="accunode-prod",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=100,
        MasterUsername="opscheck",
        MasterUserPassword="not-used-Pw-1",
        BackupRetentionPeriod=7,
    )
    now = datetime.now(UTC)
    series = {
        ("AWS/RDS", (("DBInstanceIdentifier", "accunode-prod"),)): {
            "FreeStorageSpace": 60 * 1024**3,
            "CPUUtilization": 20.0,
            "ReadLatency": 0.002,
            "WriteLatency": 0.003,
        },
        (
            "AWS/ApplicationELB",
            (("LoadBalancer", lb["LoadBalancerArn"].split("loadbalancer/")[1]), ("TargetGroup", arn.rsplit(":", 1)[1])),
        ): {
            "RequestCount": 100.0,
            "HTTPCode_Target_5XX_Count": 0.0,
        },
    }
    for (namespace, dims), metrics in series.items():
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                "Timestamp": now - timedelta(minutes=m),
                "Value": value,
            }
            for name, value in metrics.items()
            for m in range(3, 58, 5)
        ]
        cw.put_metric_data(Namespace=namespace, MetricData=data)
    for name in ("cpu", "memory", "5xx", "latency", "storage"):
        cw.put_metric_alarm(
            AlarmName=f"accunode-{name}",
            MetricName="Errors",
            Namespace="AccuNode/Alarms",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
