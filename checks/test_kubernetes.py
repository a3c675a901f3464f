"""Kubernetes family: pods, rollouts, autoscalers, Jobs, Services, Ingresses, cert-manager
Certificates, Warning events, nodes, usage against limits, ConfigMap keys, NetworkPolicies and
opt-in in-pod probes, judged on lists read once per kind and namespace per run.

The runbook's `kubectl get pods | grep -v Running` misses pods that run but are not Ready
(0/1) and prints the header line; these checks read each container's readiness and state.
"""

import shlex
from datetime import UTC, datetime

import pytest

from opscheck.core.checking import expect, fmt, listed
from opscheck.core.redact import clip_line
from opscheck.core.times import since_last_run
from opscheck.families.docker import probe_script
from opscheck.families.kubernetes import (
    ESTABLISHED,
    RESOLVE,
    WORKLOAD_KINDS,
    certificate_expiry,
    certificate_not_ready,
    container_limits,
    container_restarts,
    cronjob_late,
    established_to,
    event_line,
    event_time,
    failed_jobs,
    failed_requests,
    fmt_quantity,
    grace,
    hpa_at_max,
    ingress_address,
    ingress_backends,
    judged_services,
    name_of,
    node_problems,
    oom_kills,
    pick_pod,
    pod_not_running_ready,
    pod_stuck,
    pod_view,
    quantity,
    ready_endpoints,
    recent_restart,
    resolved_addresses,
    rollout_problem,
    unschedulable_reason,
)

pytestmark = [pytest.mark.kubernetes]


def _now() -> datetime:
    return datetime.now(UTC)


def _where(kube, namespace) -> str:
    return f"{kube.shown}, namespace {namespace.name}"


# --- the API server ----------------------------------------------------------------------------


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "The Kubernetes API server does not answer (or the kubeconfig cannot be loaded). Try "
    "`kubectl --context CONTEXT version` and `kubectl cluster-info`: is the context right, the "
    "API endpoint reachable from here (VPN, firewall), the token or client certificate valid? "
    "Every check of this cluster is blocked."
)
def test_k8s_api_reachable(k8s_cluster, kube):
    version = kube.version()
    expect(bool(version.get("gitVersion")), f"{kube.shown}: /version returned no gitVersion")


# --- pods ----------------------------------------------------------------------------------


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "A pod is not Running with every container Ready (or, for a Job's pod, Succeeded): the "
    "service runs below its capacity or not at all. Run `kubectl get pods -n NAMESPACE` and "
    "`kubectl describe pod POD -n NAMESPACE` (its Events say why), then `kubectl logs POD -n "
    "NAMESPACE --previous` for a container that crashed."
)
def test_k8s_pods_running_and_ready(k8s_pods, kube):
    namespace = k8s_pods.value
    pods = kube.objects("pods", namespace.name)
    expect(
        bool(pods) or namespace.may_be_empty,
        f"{_where(kube, namespace)}: no pods at all (a typo in the namespace, or it is gone? `kubectl get ns`; "
        "set may_be_empty: true for a namespace that may run nothing)",
    )
    bad = [why for why in (pod_not_running_ready(pod_view(p)) for p in pods) if why]
    expect(not bad, f"{_where(kube, namespace)}: {len(bad)} of {len(pods)} pod(s) not Running and Ready: {listed(bad)}")


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "A pod is stuck: CrashLoopBackOff (the container exits again and again), ImagePullBackOff/"
    "ErrImagePull (wrong image name or tag, or no pull secret), Pending beyond the grace (no "
    "node fits its requests, a volume cannot be attached), unready beyond the grace, or Unknown "
    "(its node stopped reporting). `kubectl describe pod POD -n NAMESPACE` shows the reason; "
    "`kubectl logs POD -n NAMESPACE --previous` the crash; `kubectl get events -n NAMESPACE`."
)
def test_k8s_pods_not_stuck(k8s_pods, kube):
    namespace, target = k8s_pods.value, k8s_pods.target
    now, limit = _now(), grace(target, "pending_grace")
    stuck = []
    for pod in kube.objects("pods", namespace.name):
        why = pod_stuck(pod_view(pod), now, limit)
        if why:
            unschedulable = unschedulable_reason(pod)
            stuck.append(why + (f" [unschedulable: {unschedulable}]" if unschedulable else ""))
    expect(not stuck, f"{_where(kube, namespace)}: {len(stuck)} stuck pod(s): {listed(stuck)}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Containers restarted since the last run (a crash, a failing liveness probe, an OOM kill). "
    "`kubectl get pods -n NAMESPACE` shows RESTARTS; `kubectl logs POD -c CONTAINER -n NAMESPACE "
    "--previous` the last lines of the instance that died, and `kubectl describe pod` its exit "
    "code (137: killed, often OOM)."
)
def test_k8s_pod_restarts_stable(k8s_pods, kube, state, remember):
    namespace, target = k8s_pods.value, k8s_pods.target
    key = f"kubernetes:{target.name}:{namespace.name}:restarts"
    previous = state.get(key)
    since = since_last_run(state)
    counts: dict[str, int] = {}
    restarted: list[tuple[int, str]] = []
    for pod in kube.objects("pods", namespace.name):
        current = container_restarts(pod)
        counts.update(current)
        if not isinstance(previous, dict):  # a first run: instances that ended in the default window
            restarted += [(1, line) for line in recent_restart(pod, since)]
            continue
        for container, count in current.items():
            before = previous.get(container)
            if before is not None and count > before:
                restarted.append(
                    (
                        count - before,
                        f"{name_of(pod)}/{container.split('/', 1)[1]} restarted {count - before} time(s) "
                        f"(restart count {before} -> {count})",
                    )
                )
    remember(key, counts)  # one key per namespace: pods that are gone drop out of the state
    total = sum(n for n, _ in restarted)
    window = "since the last run" if isinstance(previous, dict) else f"since {since:%Y-%m-%d %H:%M} UTC (first run)"
    expect(
        total <= target.restarts_max,
        f"{_where(kube, namespace)}: {total} container restart(s) {window} > limit {target.restarts_max}: "
        + listed([line for _, line in restarted]),
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A container was killed for exceeding its memory limit (lastState.terminated.reason "
    "OOMKilled). `kubectl describe pod POD -n NAMESPACE` shows the limit and the last state; "
    "`kubectl top pod POD -n NAMESPACE --containers` the usage now. Raise the limit or find the leak."
)
def test_k8s_no_oom_killed(k8s_pods, kube, state):
    namespace = k8s_pods.value
    since = since_last_run(state)
    killed = [line for pod in kube.objects("pods", namespace.name) for line in oom_kills(pod, since)]
    expect(
        not killed,
        f"{_where(kube, namespace)}: {len(killed)} OOM kill(s) since {since:%Y-%m-%d %H:%M} UTC: {listed(killed)}",
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Pods in some namespace are Pending beyond the grace, Failed or Unknown (runbook: `kubectl "
    "get pods -A --field-selector=status.phase!=Running`, which also lists finished Job pods: "
    "those are not failures). `kubectl describe pod POD -n NAMESPACE` says why; Failed pods of "
    "Deployments are often evictions (node pressure)."
)
def test_k8s_pods_healthy_in_all_namespaces(k8s_all_pods, kube):
    now, limit = _now(), grace(k8s_all_pods, "pending_grace")
    stuck = []
    for pod in kube.objects("stuckpods"):
        view = pod_view(pod)
        if view.phase not in ("Pending", "Failed", "Unknown"):
            continue  # the API server filters these out already (field selector)
        why = pod_stuck(view, now, limit)
        if why:
            stuck.append(f"{(pod.get('metadata') or {}).get('namespace')}/{why}")
    expect(not stuck, f"{kube.shown}: {len(stuck)} pod(s) Pending, Failed or Unknown: {listed(stuck)}")


# --- workloads ---------------------------------------------------------------------------------

ROLLOUT_HINT = (
    "A rollout is not complete: fewer updated or available replicas than desired, old replicas "
    "still running, or a spec change the controller has not observed. `kubectl rollout status "
    "deployment/NAME -n NAMESPACE` (or statefulset/, daemonset/), then `kubectl describe` it and "
    "its newest pods; `kubectl rollout history` shows what changed. A stuck rollout usually has "
    "a crashing or unschedulable new pod."
)


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(ROLLOUT_HINT)
def test_k8s_workloads_rolled_out(k8s_workloads, kube):
    namespace = k8s_workloads.value
    problems, count = [], 0
    for kind, plural in WORKLOAD_KINDS.items():
        for obj in kube.objects(plural, namespace.name):
            count += 1
            why = rollout_problem(kind, obj)
            if why:
                problems.append(why)
    expect(
        not problems,
        f"{_where(kube, namespace)}: {len(problems)} of {count} workload(s) not rolled out: {listed(problems)}",
    )


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "A workload the inventory names does not exist in the namespace: it was never deployed, "
    "was deleted, or lives elsewhere. `kubectl get deployments,statefulsets,daemonsets -n "
    "NAMESPACE`; check the deploy pipeline and the namespace the manifests target."
)
def test_k8s_workload_exists(k8s_workload, kube):
    namespace, kind, name = k8s_workload.value
    found = [o for o in kube.objects(WORKLOAD_KINDS[kind], namespace.name) if name_of(o) == name]
    present = sorted(name_of(o) for o in kube.objects(WORKLOAD_KINDS[kind], namespace.name))
    expect(
        bool(found), f"{_where(kube, namespace)}: {kind}/{name} does not exist ({kind}s: {listed(present) or 'none'})"
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A HorizontalPodAutoscaler runs at its maximum replicas: the load is above what it may "
    "scale to, so latency grows (runbook: scale horizontally). `kubectl describe hpa NAME -n "
    "NAMESPACE` shows the metrics and the ScalingLimited condition; raise maxReplicas, or find "
    "what drives the load."
)
def test_k8s_hpas_not_at_max(k8s_hpas, kube):
    namespace = k8s_hpas.value
    pinned = [why for why in (hpa_at_max(h) for h in kube.objects("hpas", namespace.name)) if why]
    expect(not pinned, f"{_where(kube, namespace)}: {len(pinned)} autoscaler(s) at max: {listed(pinned)}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A Job failed (backoffLimit reached, deadline exceeded), or a CronJob's newest run did. "
    "`kubectl get jobs -n NAMESPACE`, `kubectl describe job NAME -n NAMESPACE`, and the logs of "
    "its pods: `kubectl logs job/NAME -n NAMESPACE`."
)
def test_k8s_jobs_succeeded(k8s_jobs, kube):
    namespace = k8s_jobs.value
    failed = failed_jobs(kube.objects("jobs", namespace.name))
    expect(not failed, f"{_where(kube, namespace)}: {len(failed)} failed job(s): {listed(failed)}")


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A CronJob has not succeeded since a run was due: its runs fail, or are not started "
    "(suspended controller, concurrencyPolicy Forbid behind a hung run, startingDeadlineSeconds "
    "missed). `kubectl get cronjob NAME -n NAMESPACE -o wide` (LAST SCHEDULE), `kubectl get "
    "jobs -n NAMESPACE`, and `kubectl describe cronjob NAME` for its events."
)
def test_k8s_cronjobs_on_schedule(k8s_jobs, kube):
    namespace, target = k8s_jobs.value, k8s_jobs.target
    now, limit = _now(), grace(target, "cronjob_grace")
    late = [why for why in (cronjob_late(c, now, limit) for c in kube.objects("cronjobs", namespace.name)) if why]
    expect(not late, f"{_where(kube, namespace)}: {len(late)} cronjob(s) behind schedule: {listed(late)}")


# --- Services and Ingresses ------------------------------------------------------------------


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "A Service has no ready endpoint: traffic to it fails (502/503 through an ingress), and "
    "Prometheus finds no target (runbook: `kubectl get endpoints -n NAMESPACE`). Its selector "
    "matches no Ready pod: `kubectl get endpointslices -n NAMESPACE -l "
    "kubernetes.io/service-name=NAME`, compare `kubectl describe service NAME` with the pods' labels."
)
def test_k8s_services_have_endpoints(k8s_services, kube):
    namespace = k8s_services.value
    slices = kube.objects("endpointslices", namespace.name)
    services = judged_services(kube.objects("services", namespace.name), namespace.ignore_services)
    empty = []
    for service in services:
        ready, total = ready_endpoints(slices, name_of(service))
        if not ready:
            empty.append(f"service/{name_of(service)}: {ready} ready of {total} endpoint(s)")
    expect(
        not empty,
        f"{_where(kube, namespace)}: {len(empty)} of {len(services)} service(s) without a ready endpoint: "
        f"{listed(empty)}",
    )


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "An Ingress has no load-balancer address: the ingress controller has not admitted it (wrong "
    "ingressClassName, controller down) or the cloud load balancer is not provisioned. `kubectl "
    "get ingress -n NAMESPACE` (ADDRESS), `kubectl describe ingress NAME -n NAMESPACE`, and the "
    "ingress controller's logs."
)
def test_k8s_ingresses_have_address(k8s_ingresses, kube):
    namespace = k8s_ingresses.value
    ingresses = kube.objects("ingresses", namespace.name)
    missing = [f"ingress/{name_of(i)}" for i in ingresses if not ingress_address(i)]
    expect(
        not missing,
        f"{_where(kube, namespace)}: {len(missing)} of {len(ingresses)} ingress(es) without an address: "
        f"{listed(missing)}",
    )


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "An Ingress routes to a Service that does not exist or has no ready endpoint: those paths "
    "answer 502/503. `kubectl describe ingress NAME -n NAMESPACE` lists the backends; then "
    "`kubectl get endpointslices -n NAMESPACE -l kubernetes.io/service-name=SERVICE`."
)
def test_k8s_ingress_backends_ready(k8s_ingresses, kube):
    namespace = k8s_ingresses.value
    services = {name_of(s) for s in kube.objects("services", namespace.name)}
    slices = kube.objects("endpointslices", namespace.name)
    problems = []
    for ingress in kube.objects("ingresses", namespace.name):
        for backend in ingress_backends(ingress):
            if backend not in services:
                problems.append(f"ingress/{name_of(ingress)} -> service/{backend}, which does not exist")
            elif not ready_endpoints(slices, backend)[0]:
                problems.append(f"ingress/{name_of(ingress)} -> service/{backend}, which has no ready endpoint")
    expect(not problems, f"{_where(kube, namespace)}: {listed(problems)}")


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "An Ingress the inventory names is missing, or its TLS section does not cover the expected "
    "hosts (or names another secret): HTTPS for that host gets the controller's default "
    "certificate. `kubectl get ingress NAME -n NAMESPACE -o yaml` (spec.tls), and `kubectl "
    "describe certificate SECRET -n NAMESPACE` for the secret it names. The served certificate "
    "is checked by a `tls:` target on the host."
)
def test_k8s_ingress_tls_as_expected(k8s_ingress, kube):
    namespace, expected = k8s_ingress.value
    found = [i for i in kube.objects("ingresses", namespace.name) if name_of(i) == expected.name]
    expect(bool(found), f"{_where(kube, namespace)}: ingress/{expected.name} does not exist")
    tls = (found[0].get("spec") or {}).get("tls") or []
    covered = {host for entry in tls for host in entry.get("hosts") or []}
    secrets = {entry.get("secretName") for entry in tls}
    missing = [h for h in expected.tls_hosts if h not in covered]
    expect(
        not missing,
        f"{_where(kube, namespace)}: ingress/{expected.name} spec.tls does not cover {', '.join(missing)} "
        f"(covers: {', '.join(sorted(covered)) or 'nothing'})",
    )
    expect(
        expected.tls_secret is None or expected.tls_secret in secrets,
        f"{_where(kube, namespace)}: ingress/{expected.name} names TLS secret(s) "
        f"{', '.join(sorted(s for s in secrets if s)) or 'none'}, expected {expected.tls_secret}",
    )


# --- cert-manager Certificates ---------------------------------------------------------------

CERT_HINT = (
    "A cert-manager Certificate is not Ready, or its renewal is overdue: the secret it writes "
    "may hold an old or no certificate. `kubectl get certificates -n NAMESPACE`, `kubectl "
    "describe certificate NAME -n NAMESPACE` (its conditions and events), `kubectl get "
    "certificaterequests,orders,challenges -n NAMESPACE`, and the cert-manager pods' logs."
)


@pytest.mark.tls
@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(CERT_HINT)
def test_k8s_certificates_ready(k8s_certificates, kube):
    namespace = k8s_certificates.value
    certs = kube.objects("certificates", namespace.name)
    now = _now()
    bad = [why for why in (certificate_not_ready(c, now) for c in certs) if why]
    expect(not bad, f"{_where(kube, namespace)}: {len(bad)} of {len(certs)} certificate(s): {listed(bad)}")


EXPIRY_HINT = (
    "A cert-manager Certificate expires soon (status.notAfter): cert-manager should have renewed "
    "it by now (renewBefore). `kubectl describe certificate NAME -n NAMESPACE` says why it did "
    "not (issuer errors, failed ACME challenges); `cmctl renew NAME -n NAMESPACE` is the fix, "
    "not a check."
)


def _expiry(k8s_certificates, kube, limit: float, level: str) -> None:
    namespace = k8s_certificates.value
    now = _now()
    short = [certificate_expiry(c, now, limit, level) for c in kube.objects("certificates", namespace.name)]
    expect(not any(short), f"{_where(kube, namespace)}: " + listed([s for s in short if s]))


@pytest.mark.tls
@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(EXPIRY_HINT)
def test_k8s_certificates_expiry_warning(k8s_certificates, kube):
    _expiry(k8s_certificates, kube, k8s_certificates.target.warn_days, "warning")


@pytest.mark.tls
@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(EXPIRY_HINT)
def test_k8s_certificates_expiry_critical(k8s_certificates, kube):
    _expiry(k8s_certificates, kube, k8s_certificates.target.crit_days, "critical")


@pytest.mark.tls
@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(CERT_HINT)
def test_k8s_certificate_as_expected(k8s_certificate, kube):
    namespace, expected = k8s_certificate.value
    found = [c for c in kube.objects("certificates", namespace.name) if name_of(c) == expected.name]
    expect(bool(found), f"{_where(kube, namespace)}: certificate/{expected.name} does not exist")
    cert = found[0]
    problems = [why for why in [certificate_not_ready(cert, _now())] if why]
    names = (cert.get("spec") or {}).get("dnsNames") or []
    missing = [n for n in expected.dns_names if n not in names]
    if missing:
        problems.append(f"spec.dnsNames {names} lacks {', '.join(missing)}")
    problems += failed_requests(kube.objects("certificaterequests", namespace.name), expected.name)
    expect(not problems, f"{_where(kube, namespace)}: certificate/{expected.name}: {listed(problems)}")


# --- events -----------------------------------------------------------------------------------


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "Warning events in the namespace since the last run (BackOff, FailedScheduling, Unhealthy, "
    "FailedMount, Evicted, ...): something keeps failing even if the pods look fine now. "
    "`kubectl get events -n NAMESPACE --field-selector type=Warning --sort-by=.lastTimestamp`, "
    "then `kubectl describe` the object each one names. Events expire after about an hour."
)
def test_k8s_no_warning_events(k8s_events, kube, state):
    namespace = k8s_events.value
    since = since_last_run(state)
    reasons = namespace.event_reasons
    found = []
    for event in kube.objects("events", namespace.name):
        when = event_time(event)
        if event.get("type") != "Warning" or (when is not None and when < since):
            continue
        if reasons is None or event.get("reason") in reasons:
            found.append((when or since, event_line(event)))
    lines = [line for _, line in sorted(found, reverse=True)]
    which = "Warning events" if reasons is None else f"Warning events ({', '.join(reasons)})"
    expect(
        len(lines) <= namespace.events_max,
        f"{_where(kube, namespace)}: {len(lines)} {which} since {since:%Y-%m-%d %H:%M} UTC > limit "
        f"{namespace.events_max}; newest: {listed(lines)}",
    )


# --- nodes -------------------------------------------------------------------------------------


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A node is NotReady (kubelet down, network lost, out of resources): its pods are evicted "
    "after a while and nothing new is scheduled there. `kubectl get nodes`, `kubectl describe "
    "node NAME` (Conditions, Events); on the node `systemctl status kubelet`."
)
def test_k8s_nodes_ready(k8s_nodes, kube):
    nodes = kube.objects("nodes")
    not_ready = [why for why in (node_problems(n)[0] for n in nodes) if why]
    expect(bool(nodes), f"{kube.shown}: the cluster lists no nodes")
    expect(not not_ready, f"{kube.shown}: {len(not_ready)} of {len(nodes)} node(s) not Ready: {listed(not_ready)}")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "A node reports memory, disk or PID pressure (or no network): the kubelet starts evicting "
    "pods. `kubectl describe node NAME` shows the condition's message; `kubectl top node NAME` "
    "and the node's disk (images, logs, emptyDir volumes)."
)
def test_k8s_nodes_without_pressure(k8s_nodes, kube):
    pressure = [line for node in kube.objects("nodes") for line in node_problems(node)[1]]
    expect(not pressure, f"{kube.shown}: {listed(pressure)}")


# --- usage (metrics-server) ----------------------------------------------------------------------

USAGE_HINT = (
    "Usage above the threshold (runbook: `kubectl top nodes`, `kubectl top pods -n NAMESPACE`): "
    "a node near its allocatable CPU or memory throttles and evicts; a container near its memory "
    "limit is OOM-killed, near its CPU limit throttled. `kubectl top pod POD --containers`, "
    "`kubectl describe node NAME` (Allocated resources)."
)


def _node_usage(k8s_node_usage, kube, resource: str, limit: float) -> None:
    usage = {name_of(m): (m.get("usage") or {}) for m in kube.objects("nodemetrics")}
    over, missing = [], []
    for node in kube.objects("nodes"):
        name = name_of(node)
        allocatable = ((node.get("status") or {}).get("allocatable") or {}).get(resource)
        used = usage.get(name, {}).get(resource)
        if used is None or allocatable is None:
            missing.append(f"node/{name} has no {resource} metrics (NotReady, or metrics-server cannot reach it)")
            continue
        pct = float(100 * quantity(used) / quantity(allocatable))
        if pct >= limit:
            over.append(
                f"node/{name} {resource} {pct:.1f}% ({fmt_quantity(resource, quantity(used))} of "
                f"{fmt_quantity(resource, quantity(allocatable))} allocatable) >= limit {limit:g}%"
            )
    expect(not over and not missing, f"{kube.shown}: {listed(over + missing)}")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(USAGE_HINT)
def test_k8s_node_cpu_below_limit(k8s_node_usage, kube):
    _node_usage(k8s_node_usage, kube, "cpu", k8s_node_usage.node_cpu_max_pct)


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(USAGE_HINT)
def test_k8s_node_memory_below_limit(k8s_node_usage, kube):
    _node_usage(k8s_node_usage, kube, "memory", k8s_node_usage.node_memory_max_pct)


def _pod_usage(k8s_pod_usage, kube, resource: str, limit: float) -> None:
    namespace = k8s_pod_usage.value
    metrics = {name_of(m): m for m in kube.objects("podmetrics", namespace.name)}
    over = []
    for pod in kube.objects("pods", namespace.name):
        limits = container_limits(pod)
        for container in (metrics.get(name_of(pod)) or {}).get("containers") or []:
            cap = limits.get(container.get("name"), {}).get(resource)
            used = (container.get("usage") or {}).get(resource)
            if not cap or used is None:
                continue
            pct = float(100 * quantity(used) / cap)
            if pct >= limit:
                over.append(
                    f"{name_of(pod)}/{container.get('name')} {resource} {pct:.1f}% "
                    f"({fmt_quantity(resource, quantity(used))} of limit {fmt_quantity(resource, cap)})"
                )
    expect(not over, f"{_where(kube, namespace)}: {listed(over)}; each >= limit {limit:g}%")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(USAGE_HINT)
def test_k8s_pod_cpu_below_limit(k8s_pod_usage, kube):
    _pod_usage(k8s_pod_usage, kube, "cpu", k8s_pod_usage.target.pod_cpu_max_pct)


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(USAGE_HINT)
def test_k8s_pod_memory_below_limit(k8s_pod_usage, kube):
    _pod_usage(k8s_pod_usage, kube, "memory", k8s_pod_usage.target.pod_memory_max_pct)


@pytest.mark.p3
@pytest.mark.daily
@pytest.mark.runbook(
    "A container has no CPU or memory limit: its usage cannot be judged against one, and it can "
    "starve its neighbours on the node. `kubectl get pod POD -n NAMESPACE -o "
    "jsonpath='{.spec.containers[*].resources}'`; set limits in the manifest (or a LimitRange)."
)
def test_k8s_containers_have_limits(k8s_pods, kube):
    namespace = k8s_pods.value
    missing = []
    for pod in kube.objects("pods", namespace.name):
        if pod_view(pod).job:
            continue
        for container, limits in container_limits(pod).items():
            absent = [r for r in ("cpu", "memory") if r not in limits]
            if absent:
                missing.append(f"{name_of(pod)}/{container} has no {' or '.join(absent)} limit")
    expect(not missing, f"{_where(kube, namespace)}: {len(missing)} container(s): {listed(missing)}")


# --- ConfigMaps and NetworkPolicies --------------------------------------------------------------


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "A ConfigMap the service reads is missing, or lacks a key, or the key is empty (runbook: "
    "validate environment variables). `kubectl describe configmap NAME -n NAMESPACE` lists its "
    "keys; the deploy that writes it may have failed. Values are never shown here."
)
def test_k8s_configmap_has_keys(k8s_configmap, kube):
    namespace, expected = k8s_configmap.value
    configmap = kube.get_configmap(namespace.name, expected.name)
    expect(configmap is not None, f"{_where(kube, namespace)}: configmap/{expected.name} does not exist")
    data = {**(configmap.get("binaryData") or {}), **(configmap.get("data") or {})}
    missing = [k for k in expected.keys if k not in data]
    empty = [k for k in expected.keys if k in data and not str(data[k]).strip()]
    expect(
        not missing and not empty,
        f"{_where(kube, namespace)}: configmap/{expected.name}"
        + (f" lacks key(s) {', '.join(missing)}" if missing else "")
        + (f"{';' if missing else ''} has empty key(s) {', '.join(empty)}" if empty else "")
        + f" ({len(data)} key(s) present)",
    )


@pytest.mark.p2
@pytest.mark.weekly
@pytest.mark.security
@pytest.mark.runbook(
    "A NetworkPolicy the inventory names does not exist: traffic it should allow is blocked by "
    "a default deny, or traffic it should restrict flows freely. `kubectl get networkpolicies -n "
    "NAMESPACE`, `kubectl describe networkpolicy NAME -n NAMESPACE`; re-apply the manifests."
)
def test_k8s_network_policy_exists(k8s_network_policy, kube):
    namespace, name = k8s_network_policy.value
    present = sorted(name_of(p) for p in kube.objects("networkpolicies", namespace.name))
    expect(
        name in present,
        f"{_where(kube, namespace)}: networkpolicy/{name} does not exist (present: {', '.join(present) or 'none'})",
    )


# --- opt-in in-pod probes (exec) --------------------------------------------------------------------


@pytest.mark.runbook(
    "A probe run inside an existing pod failed (runbook: `wget http://api-gateway:8080/health` "
    "and `nslookup api-gateway.arch-separation.svc.cluster.local` from a pod; never `kubectl run`). "
    "Reproduce with `kubectl exec -n NAMESPACE POD -- wget -qO- URL`; look at the destination's "
    "endpoints, NetworkPolicies that may block it, and CoreDNS for name lookups."
)
def test_k8s_probe(k8s_probe, kube):
    namespace, probe = k8s_probe.value
    pod, container = pick_pod(kube, namespace.name, probe)
    where = f"{_where(kube, namespace)}: from {name_of(pod)}/{container}"
    seconds = max(1, round(kube.target.exec_timeout) - 1)
    if probe.http or probe.tcp:
        code, output = kube.exec(
            namespace.name, name_of(pod), container, probe_script(probe.http or probe.tcp, seconds)
        )
        detail = clip_line(output, 300)
        expect(
            code == 0,
            f"{where}: {probe.what()} failed: "
            + (f"timed out after {seconds} s" if code in (124, 143) else f"exit {code}")
            + (f": {detail}" if detail else ""),
        )
    elif probe.resolve:
        code, output = kube.exec(
            namespace.name, name_of(pod), container, RESOLVE.format(name=shlex.quote(probe.resolve))
        )
        addresses = resolved_addresses(output)
        expect(
            code == 0 and bool(addresses),
            f"{where}: {probe.resolve} does not resolve (exit {code}: {clip_line(output, 300)})",
        )
        wanted = probe.expect_address
        if probe.expect_service:
            services = {name_of(s): s for s in kube.objects("services", namespace.name)}
            service = services.get(probe.expect_service)
            expect(service is not None, f"{where}: service/{probe.expect_service} does not exist")
            wanted = (service.get("spec") or {}).get("clusterIP")
        expect(
            wanted is None or wanted in addresses,
            f"{where}: {probe.resolve} resolves to {', '.join(addresses)}, expected {wanted}"
            + (f" (ClusterIP of service/{probe.expect_service})" if probe.expect_service else ""),
        )
    else:
        code, output = kube.exec(namespace.name, name_of(pod), container, ESTABLISHED)
        count = established_to(output, probe.established)
        expect(code == 0 and "sl" in output, f"{where}: cannot read /proc/net/tcp (exit {code})")
        seen = f"{where}: {fmt(count)} ESTABLISHED connection(s) to port {probe.established}"
        expect(count >= probe.min_connections, f"{seen} < minimum {probe.min_connections}")
        expect(
            probe.max_connections is None or count <= probe.max_connections, f"{seen} > maximum {probe.max_connections}"
        )
