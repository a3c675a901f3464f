"""AWS control plane, read-only: ECS services (the deploy gate), ALB/NLB target groups, RDS,
ElastiCache, CloudWatch alarms, dashboards, metrics and Logs, Application Auto Scaling,
security groups, X-Ray and ECR image scans.

Each check judges what its target's client read once per run (Describe/List/Get calls,
GetMetricData, FilterLogEvents); the IAM policy these calls need is in the README.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest

from opscheck.core.checking import expect, fmt, holds, listed, pct
from opscheck.core.redact import clip_line
from opscheck.core.times import ago, parse_duration, since_last_run
from opscheck.families.aws import alarm_allowed, alb_queries, ecs_of, metric_queries, rds_queries, scan_counts
from opscheck.families.aws import severity_at_or_above as at_or_above

pytestmark = [pytest.mark.cloud]


def _now() -> datetime:
    return datetime.now(UTC)


def _service(aws_api, spec) -> dict:
    return aws_api.ecs_service(spec)


def _newest_event(service: dict) -> str:
    events = service.get("events") or []
    return f"; newest event: {clip_line(events[0]['message'], 200)}" if events else ""


# --- ECS: the deploy gate -----------------------------------------------------------------

ECS_WHERE = (
    "Look next: `aws ecs describe-services --cluster CLUSTER --services SERVICE` (runbook), "
    "or the ECS console: Clusters > CLUSTER > Services > SERVICE, Deployments and Events tabs."
)


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "The ECS service is not ACTIVE: it is DRAINING or INACTIVE, i.e. being deleted or deleted, "
    "and serves nothing. Was it deleted or replaced by another stack? " + ECS_WHERE
)
def test_aws_ecs_service_active(aws_ecs, aws_api):
    spec = aws_ecs.value
    status = _service(aws_api, spec).get("status")
    expect(status == "ACTIVE", f"{aws_api.shown}: ECS service {spec.id} is {status}, not ACTIVE")


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "Fewer ECS tasks run than the service wants: tasks crash at start, fail their health checks, "
    "or cannot be placed (CPU/memory, subnets, image pull). The service events say which. "
    "Stopped tasks' reasons: `aws ecs list-tasks --cluster CLUSTER --desired-status STOPPED` then "
    "`aws ecs describe-tasks`. " + ECS_WHERE
)
def test_aws_ecs_running_equals_desired(aws_ecs, aws_api):
    spec = aws_ecs.value
    service = _service(aws_api, spec)
    running, desired, pending = service["runningCount"], service["desiredCount"], service.get("pendingCount", 0)
    expect(
        running == desired,
        f"{aws_api.shown}: ECS service {spec.id} runs {running} of {desired} desired tasks "
        f"({pending} pending){_newest_event(service)}",
    )


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "ECS tasks stay PENDING longer than a deployment needs: no capacity to place them (cluster "
    "CPU/memory, Fargate capacity, ENIs in the subnets) or the image cannot be pulled. " + ECS_WHERE
)
def test_aws_ecs_no_pending_tasks_beyond_grace(aws_ecs, aws_api):
    spec = aws_ecs.value
    service = _service(aws_api, spec)
    pending = service.get("pendingCount", 0)
    if not pending:
        return
    updated = max((d["updatedAt"] for d in service.get("deployments", []) if d.get("updatedAt")), default=None)
    grace = parse_duration(spec.pending_grace)
    expect(
        updated is not None and _now() - updated < grace,
        f"{aws_api.shown}: ECS service {spec.id} has {pending} pending task(s), last deployment update "
        f"{ago(updated)} (grace {spec.pending_grace}){_newest_event(service)}",
    )


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "The ECS rollout has not landed: a deploy is still IN_PROGRESS, FAILED (the circuit breaker "
    "rolled back), or an older deployment still runs beside the new one. This is the deploy gate: "
    "wait for the steady state or roll back. " + ECS_WHERE
)
def test_aws_ecs_deployment_completed(aws_ecs, aws_api):
    spec = aws_ecs.value
    deployments = _service(aws_api, spec).get("deployments", [])
    shown = [
        f"{d.get('status')} {d.get('rolloutState', 'no rolloutState')}"
        + (f" ({d['rolloutStateReason']})" if d.get("rolloutStateReason") else "")
        + f" {d.get('runningCount', 0)}/{d.get('desiredCount', 0)} running"
        for d in deployments
    ]
    done = (
        len(deployments) == 1
        and deployments[0].get("status") == "PRIMARY"
        and deployments[0].get("rolloutState") == "COMPLETED"
    )
    expect(
        done,
        f"{aws_api.shown}: ECS service {spec.id} has {len(deployments)} deployment(s), wanted one PRIMARY "
        f"COMPLETED: {listed(shown) or 'none'}",
    )


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "The ECS service logged trouble since the last run: tasks that cannot be placed, targets "
    "failing health checks, tasks that cannot start consistently (runbook: "
    "`aws ecs describe-services ... --query 'services[0].events[0:5]'`). " + ECS_WHERE
)
def test_aws_ecs_no_failure_events(aws_ecs, aws_api, state):
    spec = aws_ecs.value
    since = since_last_run(state)
    patterns = [p.lower() for p in spec.event_patterns]
    bad = [
        f"{e['createdAt']:%Y-%m-%d %H:%M:%S}: {clip_line(e['message'], 200)}"
        for e in _service(aws_api, spec).get("events", [])
        if e["createdAt"] >= since and any(p in e["message"].lower() for p in patterns)
    ]
    expect(
        not bad,
        f"{aws_api.shown}: ECS service {spec.id}: {len(bad)} event(s) since "
        f"{since:%Y-%m-%d %H:%M:%S} UTC match {spec.event_patterns}: {listed(bad, 5)}",
    )


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "The PRIMARY deployment runs another task definition than the one the deploy registered: the "
    "deploy did not reach ECS, or something rolled it back. Compare `aws ecs describe-services` "
    "(taskDefinition) with the pipeline's output; ECS console: Services > SERVICE > Deployments."
)
def test_aws_ecs_task_definition_as_expected(aws_ecs_task_definition, aws_api):
    spec = aws_ecs_task_definition.value
    service = _service(aws_api, spec)
    primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), {})
    running = (primary.get("taskDefinition") or service.get("taskDefinition") or "").rsplit("/", 1)[-1]
    expected = spec.task_definition or ""
    matches = running == expected if ":" in expected else running.rsplit(":", 1)[-1] == expected
    expect(matches, f"{aws_api.shown}: ECS service {spec.id} runs task definition {running}, expected {expected}")


# --- target groups ------------------------------------------------------------------------


def _target(health: dict) -> str:
    """'10.0.1.5:80 unhealthy (Target.Timeout: Request timed out)'."""
    state = health["TargetHealth"]
    text = f"{health['Target']['Id']}:{health['Target'].get('Port', '')} {state.get('State')}"
    if state.get("Reason"):
        text += f" ({state['Reason']}: {state.get('Description', '')})"
    return text


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.http
@pytest.mark.runbook(
    "Targets behind the load balancer fail their health checks or are not in service (runbook: "
    "'Verify load balancer target group health'). The reason code says why: "
    "Target.ResponseCodeMismatch / Target.Timeout (the app's health endpoint), "
    "Target.FailedHealthChecks, Target.NotInUse (AZ not enabled), Target.InvalidState (stopped). "
    "Look next: `aws elbv2 describe-target-health --target-group-arn ARN`, EC2 console: "
    "Target groups > GROUP > Targets."
)
def test_aws_target_group_healthy(aws_target_group, aws_api):
    spec = aws_target_group.value
    health = aws_api.target_health(spec)
    unhealthy = [_target(h) for h in health if h["TargetHealth"].get("State") != "healthy"]
    healthy = len(health) - len(unhealthy)
    where = f"{aws_api.shown}: target group {spec.name}"
    expect(not unhealthy, f"{where}: {len(unhealthy)} of {len(health)} target(s) not healthy: {listed(unhealthy)}")
    expect(healthy >= spec.min_healthy, f"{where}: {healthy} healthy target(s) < minimum {spec.min_healthy}")
    if spec.ecs_service:
        cluster, name = spec.ecs_service.split("/")
        service = aws_api.ecs_services(cluster).get(name)
        running = service["runningCount"] if service else None
        expect(
            running == healthy,
            f"{where}: {healthy} healthy target(s) but ECS service {spec.ecs_service} runs {running} task(s)",
        )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.http
@pytest.mark.runbook(
    "The application behind the ALB answers too many 5xx (runbook: '500 Internal Server Error | "
    "Application crash | Check logs'). Look at the service's logs (CloudWatch Logs group of the "
    "ECS service), recent deploys, and the CloudWatch console: Metrics > ApplicationELB > Per "
    "AppELB, per TG Metrics (HTTPCode_Target_5XX_Count)."
)
def test_aws_target_group_5xx_ratio_below_limit(aws_target_group_5xx, aws_api):
    spec = aws_target_group_5xx.value
    group = aws_api.target_group(spec)
    queries = alb_queries(spec, group)
    where = f"{aws_api.shown}: target group {spec.name}"
    expect(
        group.get("Protocol") in ("HTTP", "HTTPS", None),
        f"{where} is a {group.get('Protocol')} (NLB) group: no HTTP status metrics; set error_ratio_max_pct: null",
    )
    expect(bool(queries), f"{where} is not attached to a load balancer: no ALB 5xx metrics to judge")
    errors = sum(v for _, v in aws_api.series(queries[0]))
    requests = sum(v for _, v in aws_api.series(queries[1]))
    ratio = pct(errors, requests)
    limit = spec.error_ratio_max_pct or 0
    expect(
        ratio <= limit,
        f"{where}: {fmt(round(errors))} 5xx of {fmt(round(requests))} requests in the last {spec.window} = "
        f"{ratio:.2f}% > limit {limit:g}% (HTTPCode_Target_5XX_Count / RequestCount)",
    )


# --- RDS ----------------------------------------------------------------------------------

RDS_WHERE = (
    "Look next: `aws rds describe-db-instances --db-instance-identifier ID` (runbook), the RDS "
    "console: Databases > ID (Monitoring, Logs & events, Maintenance & backups tabs)."
)


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.database
@pytest.mark.runbook(
    "The RDS instance is not 'available' (runbook: 'Check RDS instance status'): storage-full "
    "stops writes, failed / incompatible-* need action, rebooting / modifying / backing-up are "
    "usually transient. " + RDS_WHERE
)
def test_aws_rds_available(aws_rds, aws_api):
    spec = aws_rds.value
    instance = aws_api.rds_instance(spec.id)
    status = instance.get("DBInstanceStatus")
    pending = instance.get("PendingModifiedValues") or {}
    expect(
        status == "available",
        f"{aws_api.shown}: RDS instance {spec.id} is {status}, not available"
        + (f"; pending modifications: {', '.join(sorted(pending))}" if pending else ""),
    )


def _rds_series(aws_api, spec, metric: str):
    query = next(q for q in rds_queries(spec) if q.metric == metric)
    values = [v for _, v in aws_api.series(query)]
    expect(
        bool(values),
        f"{aws_api.shown}: RDS instance {spec.id}: no {metric} datapoints in the last {spec.window} "
        "(is the instance reporting to CloudWatch? wrong identifier?)",
    )
    return values


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.database
@pytest.mark.runbook(
    "The RDS instance is running out of storage (runbook: 'Disk space full | Log files or data "
    "growth | Clean up logs, scale storage'). At 0 it turns storage-full and refuses writes. Look "
    "at table and WAL growth, old logs, and storage autoscaling (MaxAllocatedStorage). " + RDS_WHERE
)
def test_aws_rds_free_storage_above_limit(aws_rds_metrics, aws_api):
    spec = aws_rds_metrics.value
    allocated = aws_api.rds_instance(spec.id)["AllocatedStorage"] * 1024**3
    lowest = min(_rds_series(aws_api, spec, "FreeStorageSpace"))
    free = pct(lowest, allocated)
    expect(
        free > spec.free_storage_min_pct,
        f"{aws_api.shown}: RDS instance {spec.id}: FreeStorageSpace minimum {fmt(lowest / 1024**3)} GiB in the "
        f"last {spec.window} = {free:.1f}% of {fmt(allocated / 1024**3)} GiB allocated <= limit "
        f"{spec.free_storage_min_pct:g}%",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.database
@pytest.mark.runbook(
    "The RDS instance's CPU is high (runbook: 'Verify database performance'): slow or runaway "
    "queries, missing indexes, or a traffic spike. Performance Insights (top SQL) and "
    "pg_stat_statements say which queries. " + RDS_WHERE
)
def test_aws_rds_cpu_below_limit(aws_rds_metrics, aws_api):
    spec = aws_rds_metrics.value
    highest = max(_rds_series(aws_api, spec, "CPUUtilization"))
    expect(
        highest < spec.cpu_max_pct,
        f"{aws_api.shown}: RDS instance {spec.id}: CPUUtilization peaked at {highest:.1f}% (5 min average) in the "
        f"last {spec.window} >= limit {spec.cpu_max_pct:g}%",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.database
@pytest.mark.runbook(
    "RDS read or write latency is high: the volume is saturated (IOPS or throughput limit, burst "
    "credits spent), or queries read far more than they need. Look at ReadIOPS/WriteIOPS, "
    "DiskQueueDepth and BurstBalance in CloudWatch. " + RDS_WHERE
)
def test_aws_rds_latency_below_limit(aws_rds_metrics, aws_api):
    spec = aws_rds_metrics.value
    worst = {m: max(_rds_series(aws_api, spec, m)) * 1000 for m in ("ReadLatency", "WriteLatency")}
    over = [f"{m} peaked at {ms:.1f} ms" for m, ms in worst.items() if ms >= spec.latency_max_ms]
    expect(
        not over,
        f"{aws_api.shown}: RDS instance {spec.id}: {'; '.join(over)} (5 min averages, last {spec.window}) "
        f">= limit {spec.latency_max_ms:g} ms",
    )


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.database
@pytest.mark.security
@pytest.mark.runbook(
    "A maintenance action (an engine or OS security update, a certificate rotation) has waited "
    "longer than the limit: AWS applies it by force at its ForcedApplyDate, at a time you did not "
    "choose. Schedule it: `aws rds describe-pending-maintenance-actions`; RDS console: Databases > "
    "ID > Maintenance & backups."
)
def test_aws_rds_no_overdue_maintenance(aws_rds_maintenance, aws_api, state, remember):
    spec = aws_rds_maintenance.value
    actions = aws_api.pending_maintenance().get(spec.id, [])
    now = _now()
    overdue = []
    for action in actions:
        key = f"aws:{aws_api.target.name}:rds:{spec.id}:maintenance:{action.get('Action')}"
        first = _parsed(state.get(key)) or now
        remember(key, first.isoformat())
        forced = action.get("ForcedApplyDate") or action.get("AutoAppliedAfterDate")
        if now - first > timedelta(days=spec.maintenance_max_age_days):
            overdue.append(
                f"{action.get('Action')} pending since {first:%Y-%m-%d} ({ago(first)})"
                + (f", forced from {forced:%Y-%m-%d}" if forced else "")
                + (f": {action['Description']}" if action.get("Description") else "")
            )
    expect(
        not overdue,
        f"{aws_api.shown}: RDS instance {spec.id}: {len(overdue)} maintenance action(s) pending longer than "
        f"{spec.maintenance_max_age_days:g} days: {listed(overdue)}",
    )


def _parsed(text):
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.database
@pytest.mark.backup
@pytest.mark.runbook(
    "The RDS instance has no recent automated snapshot (AccuNode daily checklist: 'Verify backup "
    "completion status'): automated backups are off (BackupRetentionPeriod 0) or the last ones "
    "failed. `aws rds describe-db-snapshots --db-instance-identifier ID --snapshot-type "
    "automated`; RDS console: Databases > ID > Maintenance & backups, and Events."
)
def test_aws_rds_automated_snapshot_recent(aws_rds_snapshot, aws_api):
    spec = aws_rds_snapshot.value
    where = f"{aws_api.shown}: RDS instance {spec.id}"
    retention = aws_api.rds_instance(spec.id).get("BackupRetentionPeriod", 0)
    expect(retention >= 1, f"{where}: automated backups are off (BackupRetentionPeriod {retention})")
    done = [s for s in aws_api.automated_snapshots(spec.id) if s.get("Status") == "available"]
    newest = max(done, key=lambda s: s["SnapshotCreateTime"], default=None)
    expect(newest is not None, f"{where}: no available automated snapshot")
    made = newest["SnapshotCreateTime"]
    expect(
        _now() - made <= timedelta(hours=spec.snapshot_max_age_hours),
        f"{where}: newest automated snapshot {newest['DBSnapshotIdentifier']} is from {made:%Y-%m-%d %H:%M} UTC "
        f"({ago(made)}) > limit {spec.snapshot_max_age_hours:g} h",
    )


# --- ElastiCache --------------------------------------------------------------------------


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.redis
@pytest.mark.runbook(
    "The ElastiCache cluster or replication group is not 'available' (modifying, snapshotting "
    "and rebooting are usually transient; create-failed, incompatible-network need action). "
    "`aws elasticache describe-replication-groups` / `describe-cache-clusters`; ElastiCache "
    "console: Redis OSS caches > ID > Events."
)
def test_aws_elasticache_available(aws_cache, aws_api):
    spec = aws_cache.value
    found = aws_api.cache(spec)
    status = found.get("Status") if spec.replication_group else found.get("CacheClusterStatus")
    kind = "replication group" if spec.replication_group else "cache cluster"
    expect(status == "available", f"{aws_api.shown}: ElastiCache {kind} {spec.id} is {status}, not available")


# --- CloudWatch ---------------------------------------------------------------------------


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.monitoring
@pytest.mark.runbook(
    "CloudWatch alarms are firing (AccuNode daily checklist: 'Check service health dashboards'). "
    "Each alarm names its metric and threshold; follow it to the resource. `aws cloudwatch "
    "describe-alarms --state-value ALARM`; CloudWatch console: Alarms > In alarm. An expected "
    "alarm goes on the inventory's allow list, with a reason."
)
def test_aws_no_alarm_in_alarm(aws_alarms, aws_api):
    spec = aws_alarms.alarms
    firing = [a for a in aws_api.alarms_in_alarm() if not alarm_allowed(a["AlarmName"], spec.allow)]
    shown = [
        f"{a['AlarmName']} (since {ago(a.get('StateUpdatedTimestamp'))}: {clip_line(a.get('StateReason', ''), 150)})"
        for a in sorted(firing, key=lambda a: a["AlarmName"])
    ]
    prefix = f" with prefix {spec.prefix!r}" if spec.prefix else ""
    expect(not firing, f"{aws_api.shown}: {len(firing)} alarm(s){prefix} in ALARM: {listed(shown)}")


@pytest.mark.p3
@pytest.mark.weekly
@pytest.mark.monitoring
@pytest.mark.runbook(
    "The CloudWatch dashboard the runbook links is gone or empty: on-call loses its first view. "
    "`aws cloudwatch get-dashboard --dashboard-name NAME`; CloudWatch console: Dashboards."
)
def test_aws_dashboard_exists(aws_dashboard, aws_api):
    name = aws_dashboard.value
    body = aws_api.dashboard(name).get("DashboardBody") or "{}"
    try:
        widgets = json.loads(body).get("widgets", [])
    except ValueError:
        widgets = []
    expect(bool(widgets), f"{aws_api.shown}: dashboard {name} has no widgets")


@pytest.mark.runbook(
    "A CloudWatch metric of the inventory is outside its limit (the runbook's `aws cloudwatch "
    "get-metric-statistics` commands). Open the metric in the CloudWatch console (Metrics > All "
    "metrics > NAMESPACE) over the same window, and look at what changed: traffic, a deploy, a "
    "noisy neighbour."
)
def test_aws_metric_holds(aws_metric, aws_api):
    """A CloudWatch metric assertion of the inventory: its severity, schedule and hint come from there."""
    spec = aws_metric.value
    queries = metric_queries(spec)
    points = aws_api.series(queries[0])
    where = f"{aws_api.shown}: {spec.name}: {queries[0].shown}"
    if not points:
        expect(spec.missing == "pass", f"{where}: no datapoints in the last {spec.window}")
        return
    failing = [(ts, v) for ts, v in points if not holds(v, spec.op, spec.value)]
    if failing:
        pick = max if spec.op in ("<", "<=") else min
        when, worst = pick(failing, key=lambda p: p[1])
        expect(
            False,
            f"{where}: {len(failing)} of {len(points)} datapoints in the last {spec.window} break {spec.op} "
            f"{spec.value:g}; worst {worst:.2f} at {when:%Y-%m-%d %H:%M} UTC",
        )
    if spec.growth_max_pct is not None:
        before = [v for _, v in aws_api.series(queries[1])]
        now_mean = sum(v for _, v in points) / len(points)
        if before and sum(before):
            before_mean = sum(before) / len(before)
            growth = pct(now_mean - before_mean, before_mean)
            expect(
                growth <= spec.growth_max_pct,
                f"{where}: mean {now_mean:.2f} over the last {spec.window} grew {growth:.1f}% from "
                f"{before_mean:.2f} the {spec.window} before > limit {spec.growth_max_pct:g}%",
            )


@pytest.mark.runbook(
    "More log events match than the limit allows (runbook: `aws logs filter-log-events "
    "--log-group-name GROUP --filter-pattern 'ERROR'`). Read the newest matches here, then the "
    "group in CloudWatch Logs Insights for the whole window; correlate with deploys."
)
def test_aws_log_pattern_below_limit(aws_log_pattern, aws_api):
    """A CloudWatch Logs pattern of the inventory: its severity, schedule and hint come from there."""
    spec = aws_log_pattern.value
    count = aws_api.log_count(spec)
    what = f"filter {spec.filter_pattern!r}" if spec.filter_pattern else "every event"
    what += f" and /{spec.regex}/" if spec.regex else ""
    where = f"{aws_api.shown}: {spec.log_group} {what}, {count.start:%Y-%m-%d %H:%M}-{count.end:%H:%M} UTC" + (
        f" [truncated: {count.truncated}]" if count.truncated else ""
    )
    last = f"; newest: {listed(list(reversed(count.last)), 3)}" if count.last else ""
    expect(count.matched <= spec.max_events, f"{where}: {count.matched:,} events > limit {spec.max_events:,}{last}")
    if spec.max_ratio_pct is not None:
        total = aws_api.log_count(spec, ratio=True)
        ratio = pct(count.matched, total.matched)
        expect(
            ratio <= spec.max_ratio_pct,
            f"{where}: {count.matched:,} of {total.matched:,} events matching {spec.ratio_filter_pattern!r} = "
            f"{ratio:.2f}% > limit {spec.max_ratio_pct:g}%{last}",
        )


# --- Application Auto Scaling, security groups, X-Ray, ECR --------------------------------


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The service runs at its auto scaling maximum: another traffic spike cannot be absorbed "
    "(runbook: 'Monitor auto-scaling metrics'). Raise MaxCapacity or find what drives the load. "
    "`aws application-autoscaling describe-scalable-targets --service-namespace ecs`; ECS console: "
    "Services > SERVICE > Auto Scaling (Service auto scaling)."
)
def test_aws_autoscaling_headroom(aws_scalable, aws_api):
    spec = aws_scalable.value
    scalable = aws_api.scalable_target(spec)
    where = f"{aws_api.shown}: scalable target {spec.resource_id}"
    ecs = ecs_of(spec)
    expect(ecs is not None, f"{where}: only ECS services (service/CLUSTER/SERVICE) have a known desired count")
    cluster, name = ecs or ("", "")
    service = aws_api.ecs_services(cluster).get(name)
    expect(service is not None, f"{where}: ECS service {cluster}/{name} not found")
    desired, maximum = service["desiredCount"], scalable["MaxCapacity"]
    expect(desired < maximum, f"{where}: desired {desired} tasks = maximum {maximum} (no headroom left)")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "Auto scaling tried to scale and failed (a Failed scaling activity): the service cannot "
    "grow or shrink as its policy says; the activity's StatusMessage says why (capacity, "
    "permissions, a suspended target). `aws application-autoscaling describe-scaling-activities "
    "--service-namespace ecs --resource-id ID`."
)
def test_aws_autoscaling_no_failed_activity(aws_scalable, aws_api):
    spec = aws_scalable.value
    since = _now() - parse_duration(spec.activity_window)
    failed = [
        f"{a['StartTime']:%Y-%m-%d %H:%M}: {clip_line(a.get('StatusMessage') or a.get('Cause', ''), 200)}"
        for a in aws_api.scaling_activities(spec)
        if a.get("StatusCode") == "Failed" and a["StartTime"] >= since
    ]
    expect(
        not failed,
        f"{aws_api.shown}: scalable target {spec.resource_id}: {len(failed)} failed scaling activit(ies) in the "
        f"last {spec.activity_window}: {listed(failed, 5)}",
    )


def _covers(permission: dict, port: int) -> bool:
    if permission.get("IpProtocol") == "-1":
        return True
    low, high = permission.get("FromPort"), permission.get("ToPort")
    return low is not None and high is not None and low <= port <= high


@pytest.mark.p1
@pytest.mark.weekly
@pytest.mark.security
@pytest.mark.runbook(
    "A security group opens a database or cache port to the world (0.0.0.0/0 or ::/0), or to a "
    "source the inventory does not allow (runbook: 'Verify security group rules'). Only the "
    "ECS service's security group should reach RDS and ElastiCache. `aws ec2 "
    "describe-security-groups --group-ids ID`; EC2 console: Security Groups > ID > Inbound rules."
)
def test_aws_security_group_ports_closed(aws_security_group, aws_api):
    spec = aws_security_group.value
    group = aws_api.security_group(spec.id)
    found = []
    for permission in group.get("IpPermissions", []):
        ports = [p for p in spec.ports if _covers(permission, p)]
        if not ports:
            continue
        sources = [r["CidrIp"] for r in permission.get("IpRanges", [])]
        sources += [r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])]
        sources += [g["GroupId"] for g in permission.get("UserIdGroupPairs", [])]
        sources += [p["PrefixListId"] for p in permission.get("PrefixListIds", [])]
        for source in sources:
            world = source in ("0.0.0.0/0", "::/0")
            if world or (spec.allowed_sources is not None and source not in spec.allowed_sources):
                found.append(f"{'/'.join(map(str, ports))} from {source}{' (the world)' if world else ''}")
    expect(
        not found,
        f"{aws_api.shown}: security group {spec.id} ({group.get('GroupName', '')}) allows ingress on "
        f"{listed(sorted(set(found)))}",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.monitoring
@pytest.mark.runbook(
    "The X-Ray service map shows a service with faults (5xx) above the limit, or an expected "
    "service sends no traces at all (tracing is off or the daemon/collector is down). X-Ray "
    "console: Service map (runbook link), or `aws xray get-service-graph --start-time ... "
    "--end-time ...`."
)
def test_aws_xray_no_faulting_service(aws_xray, aws_api):
    spec = aws_xray.xray
    nodes = aws_api.service_graph()
    names = {n.get("Name") for n in nodes}
    missing = [s for s in spec.services if s not in names]
    expect(
        not missing,
        f"{aws_api.shown}: X-Ray service graph of the last {spec.window} has no node for {', '.join(missing)} "
        f"({len(nodes)} node(s) seen)",
    )
    faulting = []
    for node in nodes:
        total = (node.get("SummaryStatistics") or {}).get("TotalCount", 0)
        faults = ((node.get("SummaryStatistics") or {}).get("FaultStatistics") or {}).get("TotalCount", 0)
        if total and pct(faults, total) > spec.fault_max_pct:
            faulting.append(
                f"{node.get('Name')} ({node.get('Type')}): {faults} faults of {total} = {pct(faults, total):.1f}%"
            )
    expect(
        not faulting,
        f"{aws_api.shown}: X-Ray: {len(faulting)} service(s) over {spec.fault_max_pct:g}% faults in the last "
        f"{spec.window}: {listed(faulting)}",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.security
@pytest.mark.runbook(
    "The image's latest scan (ECR basic scanning, or Amazon Inspector enhanced scanning) has "
    "findings at or above the severity limit, or the scan is missing or stale (AccuNode daily "
    "checklist: 'Check security scan results'). Rebuild on patched base images. `aws ecr "
    "describe-image-scan-findings --repository-name REPO --image-id imageTag=TAG`; ECR console: "
    "Repositories > REPO > image > Vulnerabilities; Inspector console: Findings > By container image."
)
def test_aws_ecr_no_findings_at_severity(aws_ecr, aws_api):
    spec = aws_ecr.value
    where = f"{aws_api.shown}: image {spec.id}"
    findings = aws_api.scan_findings(spec)
    status = (findings.get("imageScanStatus") or {}).get("status")
    expect(status in ("COMPLETE", "ACTIVE"), f"{where}: scan status {status}, not COMPLETE")
    completed = (findings.get("imageScanFindings") or {}).get("imageScanCompletedAt")
    expect(
        completed is not None and _now() - completed <= timedelta(days=spec.scan_max_age_days),
        f"{where}: last scan completed {ago(completed)} > limit {spec.scan_max_age_days:g} days",
    )
    bad = at_or_above(scan_counts(findings), spec.severity)
    expect(
        not bad,
        f"{where}: {sum(bad.values())} finding(s) at or above {spec.severity}: "
        + ", ".join(f"{k} {v}" for k, v in bad.items()),
    )


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.security
@pytest.mark.runbook(
    "The running image is older than the limit: it misses base-image security updates (AccuNode "
    "weekly checklist: 'Check for security updates'). Rebuild and deploy. `aws ecr describe-images "
    "--repository-name REPO --image-ids imageTag=TAG` (imagePushedAt)."
)
def test_aws_ecr_image_recently_pushed(aws_ecr_push, aws_api):
    spec = aws_ecr_push.value
    pushed = aws_api.image(spec)["imagePushedAt"]
    limit = spec.push_max_age_days or 0
    expect(
        _now() - pushed <= timedelta(days=limit),
        f"{aws_api.shown}: image {spec.id} was pushed {pushed:%Y-%m-%d} ({ago(pushed)}) > limit {limit:g} days",
    )
