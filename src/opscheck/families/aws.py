"""AWS control plane, read-only: ECS, ALB/NLB target groups, RDS, ElastiCache, CloudWatch
(alarms, dashboards, metrics, Logs), Application Auto Scaling, security groups, X-Ray and
ECR image scans, with boto3.

One `aws:` target is one account and region, reached through boto3's credential chain
(environment, shared config and `profile`, the task or instance role) and optionally a
role to assume. Every call is a Describe/List/Get (GetMetricData, FilterLogEvents,
GetServiceGraph included) and is made once per run: reads are shared by the checks that
judge them (`TargetReader.once`), metric queries of one window go out in one
GetMetricData, the ECS services of a cluster in one DescribeServices. Throttling is retried
with jittered backoff while the target's timeout lasts; a connection or credential error
fails the first check with its reason and blocks the rest of the target ("blocked: ...");
an action the policy denies blocks only the checks that need it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import random
import re
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from pydantic import Field, SecretStr, field_validator, model_validator

from opscheck.core import redact
from opscheck.core.cache import SelectedReads
from opscheck.core.errors import OpscheckError, TargetUnreachable, blocked, one_line
from opscheck.core.model import InventoryCheck, Item, Model, Name, Param, Severity, Target, check_marks
from opscheck.core.redact import clip_line
from opscheck.core.times import Duration, parse_duration, since_last_run
from opscheck.core.web import proxies_for

if TYPE_CHECKING:
    import boto3
    from botocore import config as botocore_config
    from botocore import exceptions as botocore_exceptions
else:
    from opscheck.core.lazy import optional

    boto3 = optional("boto3", "aws")
    botocore_config = optional("botocore.config", "aws")
    botocore_exceptions = optional("botocore.exceptions", "aws")

# --- the inventory section ----------------------------------------------------------------

# the boto3 service names the family calls (per-service `endpoints` take these keys)
SERVICES = (
    "ecs",
    "elbv2",
    "rds",
    "elasticache",
    "cloudwatch",
    "logs",
    "application-autoscaling",
    "ec2",
    "xray",
    "ecr",
    "sts",
)
EVENT_PATTERNS = ["unable to place", "unhealthy", "is unable to consistently start tasks", "failed"]
STATISTIC = re.compile(r"^(Average|Sum|Minimum|Maximum|SampleCount|(p|tm|wm|tc|ts)\d{1,2}(\.\d{1,2})?)$")
SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"]


def _duration(value: str) -> str:
    parse_duration(value)
    return value


class EcsService(Model):
    """An ECS service: ACTIVE, running = desired, one PRIMARY deployment COMPLETED."""

    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    pending_grace: Duration = Field(
        default="10m", description="pending tasks are accepted this long after the last deployment update"
    )
    task_definition: str | None = Field(
        default=None,
        pattern=r"^([A-Za-z0-9_-]+:)?\d+$",
        description="expected task definition 'family:revision' (or revision) of the PRIMARY deployment",
    )
    event_patterns: list[str] = Field(
        default_factory=lambda: list(EVENT_PATTERNS), description="service event texts that fail (case-insensitive)"
    )

    @field_validator("task_definition", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return None if value == "" else value  # ${VAR:-} left empty: not checked

    @property
    def id(self) -> str:
        return f"{self.cluster}/{self.service}"


class TargetGroup(Model):
    """An ALB/NLB target group: every registered target healthy; the ALB's 5xx ratio."""

    name: str = Field(min_length=1, max_length=32, description="target group name")
    min_healthy: int = Field(default=1, ge=0, description="at least this many healthy targets")
    ecs_service: str | None = Field(
        default=None,
        pattern=r"^[^/]+/[^/]+$",
        description="cluster/service whose runningCount the healthy count must equal",
    )
    error_ratio_max_pct: float | None = Field(
        default=1.0, ge=0, le=100, description="HTTPCode_Target_5XX_Count / RequestCount limit (ALB); null for NLB"
    )
    window: Duration = Field(default="1h", description="the 5xx ratio's window")


class RdsInstance(Model):
    """An RDS instance: available, storage, CPU, latency, maintenance, automated snapshots."""

    id: str = Field(min_length=1, description="DB instance identifier")
    window: Duration = Field(default="1h", description="the CloudWatch window of storage, CPU and latency")
    free_storage_min_pct: float = Field(default=20, gt=0, lt=100, description="FreeStorageSpace minimum, % allocated")
    cpu_max_pct: float = Field(default=80, gt=0, le=100, description="every 5 min CPUUtilization average below")
    latency_max_ms: float = Field(default=20, gt=0, description="ReadLatency and WriteLatency averages below")
    maintenance_max_age_days: float = Field(default=7, gt=0, description="a pending maintenance action older fails")
    snapshot_max_age_hours: float = Field(default=26, gt=0, description="the newest automated snapshot younger")


class Cache(Model):
    """An ElastiCache replication group or cache cluster that must be 'available'."""

    replication_group: str | None = None
    cache_cluster: str | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.replication_group is None) == (self.cache_cluster is None):
            raise ValueError("give either replication_group or cache_cluster")
        return self

    @property
    def id(self) -> str:
        return self.replication_group or self.cache_cluster or ""


class Alarms(Model):
    """CloudWatch alarms that must not be in ALARM."""

    prefix: str = Field(default="", description="only alarms whose name starts with it (AlarmNamePrefix)")
    allow: list[str] = Field(default_factory=list, description="alarm names (globs) allowed to be in ALARM")


class MetricAssertion(InventoryCheck):
    """A CloudWatch metric that every datapoint of a window must satisfy (GetMetricData)."""

    name: str = Name
    namespace: str = Field(min_length=1, description="e.g. AWS/ECS")
    metric: str = Field(min_length=1, description="e.g. CPUUtilization")
    dimensions: dict[str, str] = Field(default_factory=dict, description="e.g. {ClusterName: prod}")
    statistic: str = Field(default="Average", description="Average, Sum, Minimum, Maximum, SampleCount or p95, ...")
    period: int = Field(default=300, ge=60, le=86400, description="seconds per datapoint, a multiple of 60")
    window: Duration = "1h"
    op: Literal["<", "<=", ">", ">="] = "<"
    value: float
    missing: Literal["fail", "pass"] = Field(default="fail", description="no datapoint in the window")
    growth_max_pct: float | None = Field(
        default=None, gt=0, description="the window's mean may exceed the previous window's by at most this %"
    )

    @field_validator("statistic")
    @classmethod
    def _statistic(cls, value: str) -> str:
        if not STATISTIC.match(value):
            raise ValueError("statistic: Average, Sum, Minimum, Maximum, SampleCount or a percentile like p95")
        return value

    @field_validator("period")
    @classmethod
    def _period(cls, value: int) -> int:
        if value % 60:
            raise ValueError("period must be a multiple of 60 seconds")
        return value


class LogPattern(InventoryCheck):
    """Events of a CloudWatch Logs group in a window (FilterLogEvents), counted against a limit."""

    name: str = Name
    log_group: str = Field(min_length=1, description="e.g. /aws/ecs/accunode-prod")
    filter_pattern: str = Field(default="", description="CloudWatch filter pattern, applied by the service (ERROR)")
    regex: str | None = Field(default=None, description="Python regex the event message must also match")
    ignore_case: bool = False
    window: str = Field(default="1h", description="last_run or a duration (1h, 24h)")
    max_events: int = Field(default=10, ge=0, description="more matching events fail")
    ratio_filter_pattern: str | None = Field(
        default=None, description="count the events of this pattern too, and judge matches / them in %"
    )
    max_ratio_pct: float | None = Field(default=None, ge=0, le=100)
    scan_max_events: int = Field(default=10_000, gt=0, description="stop reading after this many events")
    scan_max_bytes: int = Field(default=5 * 1024**2, gt=0, description="stop reading after this many message bytes")
    severity: Severity = "p1"

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return value if value == "last_run" else _duration(value)

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _ratio(self):
        if (self.ratio_filter_pattern is None) != (self.max_ratio_pct is None):
            raise ValueError("ratio_filter_pattern and max_ratio_pct go together")
        return self

    def matches(self, message: str) -> bool:
        if self.regex is None:
            return True
        return re.search(self.regex, message, re.IGNORECASE if self.ignore_case else 0) is not None


class ScalableTarget(Model):
    """An Application Auto Scaling target: headroom below its maximum, no failed activity."""

    resource_id: str = Field(min_length=1, description="e.g. service/accunode-prod/accunode-api")
    namespace: str = Field(default="ecs", description="ServiceNamespace")
    dimension: str = Field(default="ecs:service:DesiredCount", description="ScalableDimension")
    activity_window: Duration = Field(default="24h", description="a Failed scaling activity this recent fails")


class SecurityGroup(Model):
    """A security group that must not open the named ports to the world (or to others)."""

    id: str = Field(pattern=r"^sg-[0-9a-f]+$")
    ports: list[int] = Field(default_factory=lambda: [5432, 6379], description="ports that must not be open")
    allowed_sources: list[str] | None = Field(
        default=None, description="if given, the only sources (sg-... or CIDR) allowed on those ports"
    )


class XRay(Model):
    """The X-Ray service graph: expected services present, none faulting."""

    window: Duration = "1h"
    services: list[str] = Field(default_factory=list, description="service names that must appear in the graph")
    fault_max_pct: float = Field(default=1.0, ge=0, le=100, description="faults / requests per service node")


class EcrImage(Model):
    """An ECR image tag: its latest scan (basic, or Inspector enhanced) has no finding at or above a severity."""

    repository: str = Field(min_length=2)
    tag: str = "latest"
    severity: Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"] = Field(
        default="CRITICAL", description="findings at or above it fail"
    )
    scan_max_age_days: float = Field(default=7, gt=0, description="the scan must be this recent")
    push_max_age_days: float | None = Field(default=None, gt=0, description="the image must be pushed this recently")

    @property
    def id(self) -> str:
        return f"{self.repository}:{self.tag}"


class Aws(Target):
    """An AWS account and region, read with boto3 through the credential chain (read-only)."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="e.g. us-east-1")
    profile: str | None = Field(default=None, description="a profile of ~/.aws/config (default: the chain)")
    role_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$", description="a read-only role to assume"
    )
    external_id: SecretStr | None = Field(default=None, description="sts:ExternalId of the role, use ${VAR}")
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://", description="one endpoint for every service")
    endpoints: dict[str, str] = Field(
        default_factory=dict, description="per-service endpoints (VPC endpoints): {ecs: https://...}"
    )
    ecs_services: list[EcsService] = Field(default_factory=list)
    target_groups: list[TargetGroup] = Field(default_factory=list)
    rds_instances: list[RdsInstance] = Field(default_factory=list)
    elasticache: list[Cache] = Field(default_factory=list)
    alarms: Alarms | None = None
    dashboards: list[str] = Field(default_factory=list, description="CloudWatch dashboards that must exist")
    metrics: list[MetricAssertion] = Field(default_factory=list)
    log_patterns: list[LogPattern] = Field(default_factory=list)
    scalable_targets: list[ScalableTarget] = Field(default_factory=list)
    security_groups: list[SecurityGroup] = Field(default_factory=list)
    xray: XRay | None = None
    ecr_images: list[EcrImage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self):
        services = {s.id for s in self.ecs_services}
        for group in self.target_groups:
            if group.ecs_service and group.ecs_service not in services:
                raise ValueError(f"target group {group.name}: ecs_service {group.ecs_service} is not in ecs_services")
        for kind, names in (
            ("metrics", [m.name for m in self.metrics]),
            ("log_patterns", [p.name for p in self.log_patterns]),
        ):
            if len(names) != len(set(names)):
                raise ValueError(f"{kind}: duplicate names")
        return self

    @field_validator("endpoints")
    @classmethod
    def _known_services(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SERVICES))
        if unknown:
            raise ValueError(f"endpoints: unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
        bad = sorted(k for k, v in value.items() if not re.match(r"^https?://", v))
        if bad:
            raise ValueError(f"endpoints: {', '.join(bad)}: an http:// or https:// URL")
        return value

    def secrets(self) -> list[str]:
        return [self.external_id.get_secret_value()] if self.external_id else []


# --- reading ------------------------------------------------------------------------------

THROTTLING = frozenset(
    [
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
    ]
)
CREDENTIALS_REFUSED = frozenset(
    [
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidAccessKeyId",
    ]
)
DENIED = frozenset(["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"])
BACKOFF_BASE, BACKOFF_CAP = 0.1, 2.0
LOG_PAGES_MAX = 50  # FilterLogEvents may answer empty pages while it searches: bounded too
READ_ONLY_PREFIXES = ("describe_", "list_", "get_", "filter_", "assume_role")  # assume_role: sts, for the role


class Denied(TargetUnreachable):
    """The policy denies one action: checks that need it are blocked, the others run."""


def last_part(arn: str, marker: str) -> str:
    """'app/alb/123' from a load balancer ARN (marker 'loadbalancer/'); CloudWatch's dimension."""
    return arn.split(marker, 1)[1] if marker in arn else arn


@dataclass(frozen=True)
class MetricQuery:
    """One CloudWatch series: what GetMetricData is asked for."""

    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period: int
    window_s: int
    offset_s: int = 0  # the window ends this long before now (the previous window of a trend)

    def request(self, id_: str) -> dict:
        metric = {
            "Namespace": self.namespace,
            "MetricName": self.metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
        }
        return {"Id": id_, "MetricStat": {"Metric": metric, "Period": self.period, "Stat": self.stat}}

    @property
    def shown(self) -> str:
        dims = ",".join(f"{k}={v}" for k, v in self.dimensions)
        return f"{self.namespace} {self.metric} {self.stat} ({dims}, {self.period} s periods)"


def window_seconds(text: str) -> int:
    return int(parse_duration(text).total_seconds())


class AwsClient(SelectedReads):
    """One boto3 session per target; each service's client made on first use (thread-safe)."""

    thread_name = "opscheck-aws"

    def __init__(self, target: Aws, timeout: float, state: dict | None = None):
        super().__init__()
        self.target = target
        self.timeout = timeout
        self.state = state or {}
        self.now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.calls: dict[str, int] = {}  # operation -> calls made (each page, each retry)
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._unreported: dict[Hashable, OpscheckError] = {}

    @property
    def shown(self) -> str:
        via = f" via {self.target.endpoint_url}" if self.target.endpoint_url else ""
        return f'aws "{self.target.name}" ({self.target.region}{via})'

    # --- sessions, clients and calls ---

    def _make_session(self) -> Any:
        session = boto3.session.Session(profile_name=self.target.profile, region_name=self.target.region)
        if self.target.role_arn:
            sts = self._new_client(session, "sts")
            extra = {"ExternalId": self.target.external_id.get_secret_value()} if self.target.external_id else {}
            try:
                creds = self._call_with(
                    sts, "sts", "assume_role", RoleArn=self.target.role_arn, RoleSessionName="opscheck", **extra
                )["Credentials"]
            except TargetUnreachable:
                raise
            except OpscheckError as exc:
                self._unreachable(f"{self.shown}: cannot assume {self.target.role_arn}: {exc}")
            session = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=self.target.region,
            )
        credentials = session.get_credentials()  # the chain's (or the role's): an error body may echo them
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            for value in (frozen.access_key, frozen.secret_key, frozen.token):
                redact.register(value)
        return session

    def _new_client(self, session: Any, service: str) -> Any:
        endpoint = self.target.endpoints.get(service, self.target.endpoint_url)
        config = botocore_config.Config(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"total_max_attempts": 1},  # throttling is retried here, within the timeout
            user_agent_extra="opscheck",
            # the run's snapshot: botocore walks os.environ for them otherwise, in a gather thread
            proxies=proxies_for(endpoint or f"https://{service}.{self.target.region}.amazonaws.com"),
        )
        return session.client(service, endpoint_url=endpoint, config=config)

    def client(self, service: str) -> Any:
        with self.lock:
            self.unreachable.check()  # a reader that waited here while the session failed
            if self._session is None:
                try:
                    self._session = self._make_session()
                except botocore_exceptions.BotoCoreError as exc:
                    self.unreachable.fail(f"{self.shown}: no usable AWS credentials: {one_line(exc, 300)}")
            if service not in self._clients:
                self._clients[service] = self._new_client(self._session, service)
            return self._clients[service]

    def close(self) -> None:
        with self.lock:  # a gather read still running past the session's end may add one
            clients = list(self._clients.values())
        for client in clients:
            client.close()

    def call(self, service: str, operation: str, **params: Any) -> dict:
        """One read-only API call, throttling retried with backoff until the timeout runs out."""
        with self.lock:
            self.unreachable.check()
        return self._call_with(self.client(service), service, operation, **params)

    def _call_with(self, client: Any, service: str, operation: str, **params: Any) -> dict:
        if not operation.startswith(READ_ONLY_PREFIXES):
            raise OpscheckError(f"{self.shown}: {operation} is not a read-only call")  # never sent
        name = client.meta.method_to_api_mapping.get(operation, operation)
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            with self.lock:
                self.calls[name] = self.calls.get(name, 0) + 1
            try:
                return getattr(client, operation)(**params)
            except botocore_exceptions.ClientError as exc:
                error = exc.response.get("Error", {})
                code, message = str(error.get("Code", "")), clip_line(error.get("Message") or "", 300)
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1)
                if code in THROTTLING and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    continue
                self._client_error(service, name, code, message, attempt)
            except botocore_exceptions.ParamValidationError as exc:  # a request opscheck built wrong: not the target
                raise OpscheckError(f"{self.shown}: {name}: invalid request: {one_line(exc, 300)}") from None
            except (botocore_exceptions.NoCredentialsError, botocore_exceptions.PartialCredentialsError) as exc:
                self._unreachable(f"{self.shown}: no usable AWS credentials: {one_line(exc, 300)}")
            except botocore_exceptions.BotoCoreError as exc:
                self._unreachable(f"{self.shown}: cannot reach {service}: {one_line(exc, 300)}")

    def _unreachable(self, message: str) -> NoReturn:
        """The target's first connection or credential error (concurrent reads: the first wins)."""
        with self.lock:
            if self.unreachable.error is not None:
                raise TargetUnreachable(blocked(self.unreachable.error))
            self.unreachable.fail(message)

    def _client_error(self, service: str, name: str, code: str, message: str, attempts: int) -> None:
        said = f"{code}: {message}".rstrip(": ")
        if code in THROTTLING:
            raise OpscheckError(
                f"{self.shown}: {name} still throttled after {attempts} attempts within the {self.timeout:g} s "
                f"timeout ({said})"
            )
        if code in CREDENTIALS_REFUSED:
            self._unreachable(f"{self.shown}: credentials refused by {service} {name}: {said}")
        if code in DENIED:
            raise Denied(f"{self.shown}: {service}:{name} is denied ({said}): add it to opscheck's read-only policy")
        raise OpscheckError(f"{self.shown}: {name} failed: {said}")

    def pages(self, service: str, operation: str, token: str, key: str, limit: int = 50, **params: Any) -> list:
        """Every page of a listing (NextToken/Marker), at most `limit` pages."""
        items: list = []
        for _ in range(limit):
            answer = self.call(service, operation, **params)
            items += answer.get(key, [])
            following = answer.get(token)
            if not following:
                break
            params = {**params, token: following}
        return items

    def once(self, key: Hashable, read: Callable[[], Any]) -> Any:
        """TargetReader.once; a failure met while gathering is shown to the first check as it was."""
        with self.lock:
            first = self._unreported.pop(key, None)
        if first is not None:
            raise first
        return super().once(key, read)

    # --- gathering: every read the selected checks need, at once ---

    def reads(self, argname: str, value: Any) -> list[Callable[[], Any]]:
        """The reads a check argument needs (what gather() performs before the checks judge)."""
        item = value.value if isinstance(value, Item) else value
        reads: list[Callable[[], Any]]
        if argname in ("aws_ecs", "aws_ecs_task_definition"):
            return [lambda: self.ecs_service(item)]
        if argname == "aws_target_group":
            reads = [lambda: self.target_health(item)]
            if item.ecs_service:
                reads.append(lambda: self.ecs_services(item.ecs_service.split("/")[0]))
            return reads
        if argname == "aws_target_group_5xx":
            return [lambda: self.metric_batch(window_seconds(item.window), 0)]
        if argname in ("aws_rds", "aws_rds_metrics", "aws_rds_snapshot"):
            reads = [lambda: self.rds_instance(item.id)]
            if argname == "aws_rds_metrics":
                reads.append(lambda: self.metric_batch(window_seconds(item.window), 0))
            if argname == "aws_rds_snapshot":
                reads.append(lambda: self.automated_snapshots(item.id))
            return reads
        if argname == "aws_rds_maintenance":
            return [self.pending_maintenance]
        if argname == "aws_cache":
            return [lambda: self.cache(item)]
        if argname == "aws_alarms":
            return [self.alarms_in_alarm]
        if argname == "aws_dashboard":
            return [lambda: self.dashboard(item)]
        if argname == "aws_metric":
            return [self._batch_of(q) for q in metric_queries(item)]
        if argname == "aws_log_pattern":
            reads = [lambda: self.log_count(item)]
            if item.ratio_filter_pattern:
                reads.append(lambda: self.log_count(item, ratio=True))
            return reads
        if argname == "aws_scalable":
            reads = [lambda: self.scalable_target(item), lambda: self.scaling_activities(item)]
            ecs = ecs_of(item)
            if ecs:
                reads.append(lambda: self.ecs_services(ecs[0]))
            return reads
        if argname == "aws_security_group":
            return [lambda: self.security_group(item.id)]
        if argname == "aws_xray":
            return [self.service_graph]
        if argname == "aws_ecr":
            return [lambda: self.scan_findings(item)]
        if argname == "aws_ecr_push":
            return [lambda: self.image(item)]
        return []

    def _batch_of(self, query: MetricQuery) -> Callable[[], Any]:
        return lambda: self.metric_batch(query.window_s, query.offset_s)

    def all_needs(self) -> list[tuple[str, Any]]:
        return [(argname, p.value) for argname, rows in rows_of(self.target, marked=False).items() for p in rows]

    def _memo_once(self, key: Hashable, read: Callable[[], Any]) -> Any:
        """once(), remembering a Denied met while gathering so that the first check shows it plainly."""
        try:
            return self.once(key, read)
        except Denied as exc:
            if getattr(self._gathering, "active", False):
                with self.lock:
                    self._unreported[key] = Denied(str(exc).removeprefix("blocked: "))
            raise

    # --- ECS ---

    def ecs_services(self, cluster: str) -> dict[str, dict]:
        """Every inventory service of a cluster, in DescribeServices calls of up to 10."""

        def read() -> dict[str, dict]:
            scaled = [ecs_of(t) for t in self.target.scalable_targets]
            names = sorted(
                {s.service for s in self.target.ecs_services if s.cluster == cluster}
                | {pair[1] for pair in scaled if pair and pair[0] == cluster}
            )
            found: dict[str, dict] = {}
            for start in range(0, len(names), 10):
                answer = self.call("ecs", "describe_services", cluster=cluster, services=names[start : start + 10])
                found.update({s["serviceName"]: s for s in answer.get("services", [])})
            return found

        return self._memo_once(("ecs", cluster), read)

    def ecs_service(self, spec: EcsService) -> dict:
        found = self.ecs_services(spec.cluster).get(spec.service)
        if found is None:
            raise OpscheckError(
                f"{self.shown}: ECS service {spec.id} not found (MISSING): check the cluster and service names "
                f"(`aws ecs list-services --cluster {spec.cluster}`)"
            )
        return found

    # --- target groups ---

    def target_groups(self) -> dict[str, dict]:
        def read() -> dict[str, dict]:
            names = [t.name for t in self.target.target_groups]
            try:
                groups = self.call("elbv2", "describe_target_groups", Names=names)["TargetGroups"]
            except OpscheckError as exc:
                if "TargetGroupNotFound" not in str(exc) or len(names) == 1:
                    if "TargetGroupNotFound" in str(exc):
                        return {}
                    raise
                groups = []
                for name in names:  # one is missing: find which, one by one
                    try:
                        groups += self.call("elbv2", "describe_target_groups", Names=[name])["TargetGroups"]
                    except OpscheckError as inner:
                        if "TargetGroupNotFound" not in str(inner):
                            raise
            return {g["TargetGroupName"]: g for g in groups}

        return self._memo_once("target-groups", read)

    def target_group(self, spec: TargetGroup) -> dict:
        found = self.target_groups().get(spec.name)
        if found is None:
            raise OpscheckError(
                f"{self.shown}: target group {spec.name} not found "
                f"(`aws elbv2 describe-target-groups --names {spec.name}`)"
            )
        return found

    def target_health(self, spec: TargetGroup) -> list[dict]:
        arn = self.target_group(spec)["TargetGroupArn"]
        return self._memo_once(
            ("target-health", arn),
            lambda: self.call("elbv2", "describe_target_health", TargetGroupArn=arn)["TargetHealthDescriptions"],
        )

    # --- RDS ---

    def rds_instances(self) -> dict[str, dict]:
        def read() -> dict[str, dict]:
            ids = [i.id for i in self.target.rds_instances]
            found = self.pages(
                "rds",
                "describe_db_instances",
                "Marker",
                "DBInstances",
                Filters=[{"Name": "db-instance-id", "Values": ids}],
            )
            return {i["DBInstanceIdentifier"]: i for i in found}

        return self._memo_once("rds", read)

    def rds_instance(self, instance_id: str) -> dict:
        found = self.rds_instances().get(instance_id)
        if found is None:
            raise OpscheckError(
                f"{self.shown}: RDS instance {instance_id} not found "
                f"(`aws rds describe-db-instances --db-instance-identifier {instance_id}`)"
            )
        return found

    def pending_maintenance(self) -> dict[str, list[dict]]:
        """Pending maintenance actions per instance id (one call for every instance)."""

        def read() -> dict[str, list[dict]]:
            ids = [i.id for i in self.target.rds_instances]
            found = self.pages(
                "rds",
                "describe_pending_maintenance_actions",
                "Marker",
                "PendingMaintenanceActions",
                Filters=[{"Name": "db-instance-id", "Values": ids}],
            )
            by_id: dict[str, list[dict]] = {}
            for entry in found:
                by_id.setdefault(entry["ResourceIdentifier"].rsplit(":", 1)[-1], []).extend(
                    entry.get("PendingMaintenanceActionDetails", [])
                )
            return by_id

        return self._memo_once("rds-maintenance", read)

    def automated_snapshots(self, instance_id: str) -> list[dict]:
        return self._memo_once(
            ("rds-snapshots", instance_id),
            lambda: self.pages(
                "rds",
                "describe_db_snapshots",
                "Marker",
                "DBSnapshots",
                DBInstanceIdentifier=instance_id,
                SnapshotType="automated",
            ),
        )

    # --- ElastiCache ---

    def cache(self, spec: Cache) -> dict:
        def read() -> dict:
            if spec.replication_group:
                answer = self.call("elasticache", "describe_replication_groups", ReplicationGroupId=spec.id)
                return answer["ReplicationGroups"][0]
            return self.call("elasticache", "describe_cache_clusters", CacheClusterId=spec.id)["CacheClusters"][0]

        return self._memo_once(("cache", spec.id), read)

    # --- CloudWatch: alarms, dashboards, metrics ---

    def alarms_in_alarm(self) -> list[dict]:
        spec = self.target.alarms or Alarms()
        prefix = {"AlarmNamePrefix": spec.prefix} if spec.prefix else {}

        def read() -> list[dict]:
            answers, params = [], {"StateValue": "ALARM", "AlarmTypes": ["MetricAlarm", "CompositeAlarm"], **prefix}
            for _ in range(20):
                answer = self.call("cloudwatch", "describe_alarms", **params)
                found = answer.get("MetricAlarms", []) + answer.get("CompositeAlarms", [])
                answers += [a for a in found if a.get("StateValue") == "ALARM"]  # even where a filter is ignored
                if not answer.get("NextToken"):
                    break
                params["NextToken"] = answer["NextToken"]
            return answers

        return self._memo_once("alarms", read)

    def dashboard(self, name: str) -> dict:
        return self._memo_once(
            ("dashboard", name), lambda: self.call("cloudwatch", "get_dashboard", DashboardName=name)
        )

    def queries(self) -> list[MetricQuery]:
        """Every metric series the selected checks judge (all of the target's, by default)."""
        pairs = self.needs if self.needs is not None else self.all_needs()
        found: list[MetricQuery] = []
        for argname, value in pairs:
            item = value.value if isinstance(value, Item) else value
            if argname == "aws_rds_metrics":
                found += rds_queries(item)
            elif argname == "aws_metric":
                found += metric_queries(item)
            elif argname == "aws_target_group_5xx":
                with contextlib.suppress(OpscheckError):  # the 5xx check meets it when it reads its group
                    found += alb_queries(item, self.target_group(item))
        return list(dict.fromkeys(found))

    def metric_batch(self, window_s: int, offset_s: int) -> dict[MetricQuery, list[tuple[datetime, float]]]:
        """ONE GetMetricData (paged, 500 queries a call) for every series of a window."""

        def read() -> dict[MetricQuery, list[tuple[datetime, float]]]:
            wanted = [q for q in self.queries() if (q.window_s, q.offset_s) == (window_s, offset_s)]
            return self._metric_data(wanted, window_s, offset_s)

        return self._memo_once(("metrics", window_s, offset_s), read)

    def _metric_data(self, wanted: list[MetricQuery], window_s: int, offset_s: int) -> dict:
        end = self.now - timedelta(seconds=offset_s)
        start = end - timedelta(seconds=window_s)
        series: dict[MetricQuery, list[tuple[datetime, float]]] = {q: [] for q in wanted}
        for first in range(0, len(wanted), 500):
            chunk = wanted[first : first + 500]
            ids = {f"m{first + i}": q for i, q in enumerate(chunk)}
            params: dict[str, Any] = {
                "MetricDataQueries": [q.request(i) for i, q in ids.items()],
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampAscending",
            }
            for _ in range(50):
                answer = self.call("cloudwatch", "get_metric_data", **params)
                for result in answer.get("MetricDataResults", []):
                    query = ids.get(result["Id"])
                    if query is not None:
                        series[query] += list(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
                if not answer.get("NextToken"):
                    break
                params["NextToken"] = answer["NextToken"]
        return {q: sorted(points) for q, points in series.items()}

    def series(self, query: MetricQuery) -> list[tuple[datetime, float]]:
        batch = self.metric_batch(query.window_s, query.offset_s)
        if query in batch:
            return batch[query]
        return self._memo_once(
            ("metric", query), lambda: self._metric_data([query], query.window_s, query.offset_s)[query]
        )

    # --- CloudWatch Logs ---

    def log_count(self, pattern: LogPattern, ratio: bool = False) -> LogCount:
        """Events of a pattern in its window, read page by page up to the scan caps."""

        def read() -> LogCount:
            end = self.now
            start = since_last_run(self.state) if pattern.window == "last_run" else end - parse_duration(pattern.window)
            filter_pattern = pattern.ratio_filter_pattern if ratio else pattern.filter_pattern
            params: dict[str, Any] = {
                "logGroupName": pattern.log_group,
                "startTime": int(start.timestamp() * 1000),
                "endTime": int(end.timestamp() * 1000),
                "limit": 10_000,
            }
            if filter_pattern:
                params["filterPattern"] = filter_pattern
            count = LogCount(start=start, end=end)
            for _ in range(LOG_PAGES_MAX):
                answer = self.call("logs", "filter_log_events", **params)
                for event in answer.get("events", []):
                    count.scanned += 1
                    count.bytes += len(event.get("message", ""))
                    if ratio or pattern.matches(event.get("message", "")):
                        count.matched += 1
                        count.last.append(clip_line(event.get("message", ""), 200))
                        del count.last[:-3]
                    if count.scanned >= pattern.scan_max_events or count.bytes >= pattern.scan_max_bytes:
                        count.truncated = (
                            f"stopped at {count.scanned:,} events / {count.bytes:,} bytes (scan_max_events "
                            f"{pattern.scan_max_events:,}, scan_max_bytes {pattern.scan_max_bytes:,})"
                        )
                        return count
                if not answer.get("nextToken"):
                    return count
                params["nextToken"] = answer["nextToken"]
            count.truncated = f"stopped after {LOG_PAGES_MAX} pages ({count.scanned:,} events)"
            return count

        return self._memo_once(("logs", pattern.name, ratio), read)

    # --- Application Auto Scaling ---

    def scalable_targets(self, namespace: str) -> dict[tuple[str, str], dict]:
        def read() -> dict[tuple[str, str], dict]:
            ids = [t.resource_id for t in self.target.scalable_targets if t.namespace == namespace]
            found = self.pages(
                "application-autoscaling",
                "describe_scalable_targets",
                "NextToken",
                "ScalableTargets",
                ServiceNamespace=namespace,
                ResourceIds=ids,
            )
            return {(t["ResourceId"], t["ScalableDimension"]): t for t in found}

        return self._memo_once(("scalable", namespace), read)

    def scalable_target(self, spec: ScalableTarget) -> dict:
        found = self.scalable_targets(spec.namespace).get((spec.resource_id, spec.dimension))
        if found is None:
            raise OpscheckError(
                f"{self.shown}: no scalable target {spec.resource_id} ({spec.dimension}): auto scaling is not set up "
                f"(`aws application-autoscaling describe-scalable-targets --service-namespace {spec.namespace}`)"
            )
        return found

    def scaling_activities(self, spec: ScalableTarget) -> list[dict]:
        """The newest scaling activities of a target (one page: newest first)."""
        return self._memo_once(
            ("scaling-activities", spec.namespace, spec.resource_id),
            lambda: self.call(
                "application-autoscaling",
                "describe_scaling_activities",
                ServiceNamespace=spec.namespace,
                ResourceId=spec.resource_id,
                ScalableDimension=spec.dimension,
                MaxResults=50,
            ).get("ScalingActivities", []),
        )

    # --- EC2 security groups ---

    def security_groups(self) -> dict[str, dict]:
        def read() -> dict[str, dict]:
            ids = [g.id for g in self.target.security_groups]
            try:
                groups = self.call("ec2", "describe_security_groups", GroupIds=ids)["SecurityGroups"]
            except OpscheckError as exc:
                if "InvalidGroup.NotFound" not in str(exc):
                    raise
                groups = []
                for group_id in ids:
                    try:
                        groups += self.call("ec2", "describe_security_groups", GroupIds=[group_id])["SecurityGroups"]
                    except OpscheckError as inner:
                        if "InvalidGroup.NotFound" not in str(inner):
                            raise
            return {g["GroupId"]: g for g in groups}

        return self._memo_once("security-groups", read)

    def security_group(self, group_id: str) -> dict:
        found = self.security_groups().get(group_id)
        if found is None:
            raise OpscheckError(
                f"{self.shown}: security group {group_id} not found (`aws ec2 describe-security-groups`)"
            )
        return found

    # --- X-Ray ---

    def service_graph(self) -> list[dict]:
        spec = self.target.xray or XRay()

        def read() -> list[dict]:
            end = self.now
            return self.pages(
                "xray",
                "get_service_graph",
                "NextToken",
                "Services",
                StartTime=end - parse_duration(spec.window),
                EndTime=end,
            )

        return self._memo_once("xray", read)

    # --- ECR ---

    def scan_findings(self, spec: EcrImage) -> dict:
        """The image's latest scan: status, completion time and findings by severity."""
        return self._memo_once(
            ("ecr-scan", spec.id),
            lambda: self.call(
                "ecr",
                "describe_image_scan_findings",
                repositoryName=spec.repository,
                imageId={"imageTag": spec.tag},
                maxResults=1000,
            ),
        )

    def images(self, repository: str) -> dict[str, dict]:
        def read() -> dict[str, dict]:
            tags = sorted({i.tag for i in self.target.ecr_images if i.repository == repository})
            answer = self.call(
                "ecr", "describe_images", repositoryName=repository, imageIds=[{"imageTag": t} for t in tags]
            )
            return {tag: image for image in answer.get("imageDetails", []) for tag in image.get("imageTags", [])}

        return self._memo_once(("ecr-images", repository), read)

    def image(self, spec: EcrImage) -> dict:
        found = self.images(spec.repository).get(spec.tag)
        if found is None:
            raise OpscheckError(
                f"{self.shown}: no image {spec.id} in ECR "
                f"(`aws ecr describe-images --repository-name {spec.repository}`)"
            )
        return found


@dataclass
class LogCount:
    """What a log pattern's window held: matches, what was scanned, the newest matches."""

    start: datetime
    end: datetime
    matched: int = 0
    scanned: int = 0
    bytes: int = 0
    truncated: str = ""
    last: list[str] = field(default_factory=list)


def ecs_of(spec: ScalableTarget) -> tuple[str, str] | None:
    """(cluster, service) of an ECS scalable target (service/<cluster>/<service>)."""
    parts = spec.resource_id.split("/")
    return (parts[1], parts[2]) if spec.namespace == "ecs" and len(parts) == 3 and parts[0] == "service" else None


def rds_queries(spec: RdsInstance) -> list[MetricQuery]:
    dims = (("DBInstanceIdentifier", spec.id),)
    window = window_seconds(spec.window)
    return [
        MetricQuery("AWS/RDS", "FreeStorageSpace", dims, "Minimum", 300, window),
        MetricQuery("AWS/RDS", "CPUUtilization", dims, "Average", 300, window),
        MetricQuery("AWS/RDS", "ReadLatency", dims, "Average", 300, window),
        MetricQuery("AWS/RDS", "WriteLatency", dims, "Average", 300, window),
    ]


def metric_queries(spec: MetricAssertion) -> list[MetricQuery]:
    dims = tuple(sorted(spec.dimensions.items()))
    window = window_seconds(spec.window)
    current = MetricQuery(spec.namespace, spec.metric, dims, spec.statistic, spec.period, window)
    if spec.growth_max_pct is None:
        return [current]
    return [current, MetricQuery(spec.namespace, spec.metric, dims, spec.statistic, spec.period, window, window)]


def alb_queries(spec: TargetGroup, group: dict) -> list[MetricQuery]:
    """HTTPCode_Target_5XX_Count and RequestCount of a target group behind its (first) ALB."""
    balancers = group.get("LoadBalancerArns") or []
    if not balancers:
        return []
    dims = (
        ("LoadBalancer", last_part(balancers[0], "loadbalancer/")),
        ("TargetGroup", group["TargetGroupArn"].rsplit(":", 1)[-1]),
    )
    window = window_seconds(spec.window)
    return [
        MetricQuery("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims, "Sum", window, window),
        MetricQuery("AWS/ApplicationELB", "RequestCount", dims, "Sum", window, window),
    ]


ARGNAMES = (
    "aws_ecs",
    "aws_ecs_task_definition",
    "aws_target_group",
    "aws_target_group_5xx",
    "aws_rds",
    "aws_rds_metrics",
    "aws_rds_maintenance",
    "aws_rds_snapshot",
    "aws_cache",
    "aws_alarms",
    "aws_dashboard",
    "aws_metric",
    "aws_log_pattern",
    "aws_scalable",
    "aws_security_group",
    "aws_xray",
    "aws_ecr",
    "aws_ecr_push",
)


def rows_of(target: Aws, marked: bool = True) -> dict[str, list[Param]]:
    """The check arguments of one AWS target: one row per resource, named target:resource
    (`marked`: with the inventory's markers on metric and log checks, as pytest needs them)."""

    def items(values: Iterable, ident: Callable[[Any], str], marks: Callable[[Any], list] | None = None) -> list:
        marks = marks if marked else None
        return [Param(Item(target, v), f"{target.name}:{ident(v)}", target, marks(v) if marks else []) for v in values]

    whole = [Param(target, target.name, target)]
    return {
        "aws_ecs": items(target.ecs_services, lambda s: s.id),
        "aws_ecs_task_definition": items([s for s in target.ecs_services if s.task_definition], lambda s: s.id),
        "aws_target_group": items(target.target_groups, lambda g: g.name),
        "aws_target_group_5xx": items(
            [g for g in target.target_groups if g.error_ratio_max_pct is not None], lambda g: g.name
        ),
        "aws_rds": items(target.rds_instances, lambda i: i.id),
        "aws_rds_metrics": items(target.rds_instances, lambda i: i.id),
        "aws_rds_maintenance": items(target.rds_instances, lambda i: i.id),
        "aws_rds_snapshot": items(target.rds_instances, lambda i: i.id),
        "aws_cache": items(target.elasticache, lambda c: c.id),
        "aws_alarms": whole if target.alarms else [],
        "aws_dashboard": items(target.dashboards, str),
        "aws_metric": items(target.metrics, lambda m: m.name, check_marks),
        "aws_log_pattern": items(target.log_patterns, lambda p: p.name, check_marks),
        "aws_scalable": items(target.scalable_targets, lambda t: t.resource_id),
        "aws_security_group": items(target.security_groups, lambda g: g.id),
        "aws_xray": whole if target.xray else [],
        "aws_ecr": items(target.ecr_images, lambda i: i.id),
        "aws_ecr_push": items([i for i in target.ecr_images if i.push_max_age_days], lambda i: i.id),
    }


SECTION = list[Aws]  # the inventory's `aws:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the aws family."""
    found: dict[str, list[Param]] = {argname: [] for argname in ARGNAMES}
    for target in inventory.aws:
        for argname, rows in rows_of(target).items():
            found[argname].extend(rows)
    return found


def severity_at_or_above(counts: dict[str, int], severity: str) -> dict[str, int]:
    """The finding counts at or above a severity (CRITICAL > HIGH > MEDIUM > LOW)."""
    keep = SEVERITIES[: SEVERITIES.index(severity) + 1]
    return {s: int(counts.get(s, 0)) for s in keep if counts.get(s)}


def scan_counts(findings: dict) -> dict[str, int]:
    """Findings by severity: ECR's counts, else counted from the (basic or enhanced) lists."""
    scan = findings.get("imageScanFindings") or {}
    if scan.get("findingSeverityCounts"):
        return {k.upper(): int(v) for k, v in scan["findingSeverityCounts"].items()}
    counts: dict[str, int] = {}
    for finding in scan.get("findings", []) + scan.get("enhancedFindings", []):
        severity = str(finding.get("severity", "UNDEFINED")).upper()
        counts[severity] = counts.get(severity, 0) + 1
    return counts


def alarm_allowed(name: str, allow: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in allow)
