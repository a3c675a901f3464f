"""Containers family: expected containers running and healthy, restarts, OOM kills, one-shot
jobs, CPU/memory from one stats sweep per engine, image and start time, in-container state and
container-to-container connectivity (opt-in exec).

The runbooks' `docker ps | grep -E '(aggregator|operator)'` matches any name that merely
contains the word; these checks match exact names or Compose labels.
"""

import contextlib
from datetime import UTC, datetime

import pytest

from opscheck.core.checking import expect, fmt
from opscheck.core.redact import clip
from opscheck.core.settings import keep_secret, verdict
from opscheck.core.times import parse_time, since_last_run
from opscheck.families.docker import environment_value, probe_script

pytestmark = [pytest.mark.containers]

RUNNING_HINT = (
    "An expected container is missing, exited or restarting (runbook: `docker ps`, "
    "`docker compose ps`). Read its logs (`docker logs --tail 100 NAME 2>&1`) and "
    "`docker inspect NAME --format '{{json .State}}'` for the exit code and error; a missing "
    "service was never started or was removed."
)


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "The Docker engine does not answer (runbook: `docker ps`). Is dockerd running "
    "(`systemctl status docker`), is the socket or tcp:// endpoint reachable from here, and "
    "are the TLS client files valid? Every container check of this engine is blocked."
)
def test_docker_engine_reachable(docker_engine, engine):
    version = engine.client().version()
    expect(bool(version.get("Version")), f"{engine.shown}: the engine returned no version")


def _names(containers) -> str:
    return ", ".join(c["Name"].lstrip("/") for c in containers)


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(RUNNING_HINT)
def test_container_running(container, engine):
    spec = container.value
    found = engine.require(spec)
    running = [c for c in found if c["State"]["Running"] and not c["State"]["Restarting"]]
    bad = [
        f"{c['Name'].lstrip('/')} is {c['State']['Status']}"
        + (f" (exit code {c['State']['ExitCode']})" if c["State"]["Status"] == "exited" else "")
        for c in found
        if c not in running
    ]
    expect(not bad and running, f"{engine.shown}: {spec.shown()}: " + "; ".join(bad))
    if spec.replicas:
        expect(
            len(running) >= spec.replicas,
            f"{engine.shown}: {spec.shown()}: {len(running)} running container(s) < expected "
            f"{spec.replicas} ({_names(running)})",
        )


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "The container's healthcheck reports it unhealthy (or still starting): it runs but does "
    "not serve. `docker inspect NAME --format '{{json .State.Health}}'` shows the last probe "
    "outputs; look at the application's logs and its dependencies."
)
def test_container_healthy(container, engine):
    spec = container.value
    problems = []
    for c in engine.require(spec):
        health = c["State"].get("Health")
        if health and health.get("Status") != "healthy":
            log = (health.get("Log") or [{}])[-1]
            output = clip(" ".join(str(log.get("Output", "")).split()), 200)
            problems.append(
                f"{c['Name'].lstrip('/')} is {health.get('Status')} "
                f"({health.get('FailingStreak', 0)} failing probes; last: exit "
                f"{log.get('ExitCode')} {output!r})"
            )
    expect(not problems, f"{engine.shown}: {spec.shown()}: " + "; ".join(problems))


RESTART_HINT = (
    "The container keeps restarting (crash loop) or restarted since the last run (runbook: "
    "RestartCount grows by <= 3). Read the logs of the previous run (`docker logs --tail 200 "
    "NAME 2>&1`) and the exit code; an OOM kill shows as exit code 137."
)


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(RESTART_HINT)
def test_container_not_restarting(container, engine):
    spec = container.value
    now = datetime.now(UTC)
    looping = []
    for c in engine.require(spec):
        name, st = c["Name"].lstrip("/"), c["State"]
        started = parse_time(st.get("StartedAt", ""))
        uptime = (now - started).total_seconds() if started else None
        if st["Restarting"]:
            looping.append(f"{name} is restarting (restart count {c['RestartCount']}, last exit code {st['ExitCode']})")
        elif c["RestartCount"] and uptime is not None and uptime < engine.target.restart_min_uptime_s:
            # between two crashes a looping container is briefly "running": up for seconds only
            looping.append(
                f"{name} restarted {uptime:.0f} s ago (restart count {c['RestartCount']}, up less "
                f"than {engine.target.restart_min_uptime_s:g} s)"
            )
    expect(not looping, f"{engine.shown}: {spec.shown()}: " + "; ".join(looping))


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(RESTART_HINT)
def test_container_restart_count_stable(container, engine, state, remember):
    spec = container.value
    limit = spec.restarts_max if spec.restarts_max is not None else engine.target.restarts_max
    problems = []
    for c in engine.require(spec):
        name, count = c["Name"].lstrip("/"), c["RestartCount"]
        key = f"docker:{engine.target.name}:{name}:restarts"
        previous = state.get(key)
        remember(key, {"id": c["Id"], "count": count})
        if count > limit:
            problems.append(f"{name} restart count {count} > limit {limit}")
        elif isinstance(previous, dict) and previous.get("id") == c["Id"] and count > previous.get("count", 0):
            problems.append(
                f"{name} restarted {count - previous['count']} time(s) since the last run "
                f"(restart count {previous['count']} -> {count})"
            )
    expect(not problems, f"{engine.shown}: {spec.shown()}: " + "; ".join(problems))


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "The container was killed for exceeding its memory limit (OOM). OOMKilled is cleared when "
    "the container restarts, so the engine's `oom` events since the last run are read too. "
    "Raise the memory limit or find the leak (`docker stats`, the application's memory metrics)."
)
def test_container_not_oom_killed(container, engine, state):
    spec = container.value
    since = since_last_run(state)
    problems = []
    limit = engine.inspect(engine.require(spec)[0]["Id"])["HostConfig"].get("Memory") or 0
    for c in engine.require(spec):
        name = c["Name"].lstrip("/")
        events = engine.oom_events(c["Id"], since)
        found = []
        if c["State"].get("OOMKilled"):
            found.append(
                f"{name} was OOM-killed (State.OOMKilled"
                + (")" if c["State"]["Running"] else f", exit code {c['State']['ExitCode']})")
            )
        elif limit and not c["State"]["Running"] and c["State"].get("ExitCode") == 137 and not events:
            # Docker 20.10 on cgroup v2 can miss the kernel's OOM kill (no flag, no event): a
            # SIGKILL under a memory limit is then the only trace it leaves
            found.append(f"{name} exited with code 137 (SIGKILL) under its memory limit: likely OOM-killed")
        if events:
            found.append(f"{name}: {events} oom event(s) since {since:%Y-%m-%d %H:%M:%S} UTC")
        problems += found
    expect(
        not problems,
        f"{engine.shown}: {spec.shown()}: "
        + "; ".join(problems)
        + (f" (memory limit {fmt(limit / 1048576)} MiB)" if limit else ""),
    )


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(
    "A one-shot job (migration, seed, backup) did not exit successfully. Its logs say why "
    "(`docker logs NAME 2>&1`); dependants of the job may run on a half-done state."
)
def test_container_job_succeeded(container_job, engine):
    spec = container_job.value
    problems = []
    for c in engine.require(spec):
        st, name = c["State"], c["Name"].lstrip("/")
        if st["Status"] != "exited":
            problems.append(f"{name} is {st['Status']}, not exited")
        elif st["ExitCode"] != 0:
            problems.append(
                f"{name} exited with code {st['ExitCode']}"
                + (" (OOM-killed)" if st.get("OOMKilled") else "")
                + (f": {st['Error']}" if st.get("Error") else "")
            )
    expect(not problems, f"{engine.shown}: job {spec.shown()}: " + "; ".join(problems))


RESOURCES_HINT = (
    "A container uses more CPU or memory than its threshold (runbook: `docker stats --no-stream`; "
    "CPU is per core as docker stats shows it, memory is usage minus inactive page cache of "
    "the limit, as the CLI computes it). A busy loop, a leak, or a limit set too low; near "
    "100 % of the memory limit the kernel OOM-kills it."
)


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(RESOURCES_HINT)
def test_container_cpu_below_limit(container, engine):
    spec = container.value
    limit = spec.cpu_max_pct or engine.target.cpu_max_pct
    over = []
    for c in engine.require(spec):
        stats = engine.stats(c["Id"])
        if stats.cpu_pct >= limit:
            over.append(
                f"{c['Name'].lstrip('/')} CPU {stats.cpu_pct:.1f}% (of {stats.online_cpus} cores "
                f"= {stats.online_cpus * 100}%)"
            )
    expect(not over, f"{engine.shown}: {spec.shown()}: " + "; ".join(over) + f" >= limit {limit:g}%")


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(RESOURCES_HINT)
def test_container_memory_below_limit(container, engine):
    spec = container.value
    limit = spec.memory_max_pct or engine.target.memory_max_pct
    over = []
    for c in engine.require(spec):
        stats = engine.stats(c["Id"])
        if stats.memory_pct >= limit:
            over.append(
                f"{c['Name'].lstrip('/')} memory {stats.memory_pct:.1f}% "
                f"({fmt(stats.memory_used / 1048576)} of {fmt(stats.memory_limit / 1048576)} MiB)"
            )
    expect(not over, f"{engine.shown}: {spec.shown()}: " + "; ".join(over) + f" >= limit {limit:g}%")


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "The container runs another image than the inventory pins: the deploy did not roll out, "
    "or rolled back, or a tag moved. Compare `docker inspect NAME --format '{{.Config.Image}} "
    "{{.Image}}'` with the release."
)
def test_container_image_as_expected(container_image, engine):
    spec = container_image.value
    wrong = []
    for c in engine.require(spec):
        configured, image_id = c["Config"]["Image"], c["Image"]
        if spec.image.startswith("sha256:"):
            digests = {image_id}
            with contextlib.suppress(Exception):  # the id alone is enough to compare
                image = engine.client().inspect_image(image_id)
                digests |= {d.rpartition("@")[2] for d in image.get("RepoDigests", [])}
            ok = spec.image in digests
        else:
            ok = configured == spec.image or (
                ":" not in spec.image.rpartition("/")[2] and configured == f"{spec.image}:latest"
            )
        if not ok:
            wrong.append(f"{c['Name'].lstrip('/')} runs {configured} ({image_id[:19]})")
    expect(not wrong, f"{engine.shown}: {spec.shown()}: " + "; ".join(wrong) + f", expected {spec.image}")


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(
    "The container started before the deploy time: it was not recreated by the deploy (the "
    "old version still runs). Check the deploy pipeline's logs and `docker compose up -d` output."
)
def test_container_started_after_deploy(container_started, engine):
    spec = container_started.value
    after = spec.started_after if spec.started_after.tzinfo else spec.started_after.replace(tzinfo=UTC)
    old = []
    for c in engine.require(spec):
        started = parse_time(c["State"].get("StartedAt", ""))
        if started is None or started < after:
            old.append(f"{c['Name'].lstrip('/')} started {started or 'never'}")
    expect(not old, f"{engine.shown}: {spec.shown()}: " + "; ".join(old) + f", before {after.isoformat()}")


INSIDE_HINT = (
    "Inside the container a required process, listening socket or file is missing (runbook: "
    "`docker exec NAME netstat -an | grep :2206`). The service may have crashed inside a "
    "container that stays up, or listens on another address or port."
)


def _inside(item, engine):
    spec, what = item.value
    container = engine.require(spec)[0]
    return spec, what, container["Name"].lstrip("/"), engine.inside(container, spec)


@pytest.mark.p1
@pytest.mark.daily
@pytest.mark.runbook(INSIDE_HINT)
def test_container_process_running(container_process, engine):
    spec, name, cname, facts = _inside(container_process, engine)
    expect(
        facts.process_running(name),
        f"{engine.shown}: no process {name!r} inside {cname} ({len(facts.processes)} processes)",
    )


@pytest.mark.p1
@pytest.mark.smoke
@pytest.mark.runbook(INSIDE_HINT)
def test_container_port_listening(container_port, engine):
    spec, port, cname, facts = _inside(container_port, engine)
    listening = sorted({p for _, p in facts.listening})
    expect(
        facts.port_listening(port),
        f"{engine.shown}: nothing listens on TCP {port} inside {cname} "
        f"(listening: {', '.join(map(str, listening)) or 'none'})",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(INSIDE_HINT)
def test_container_file_exists(container_file, engine):
    spec, path, cname, facts = _inside(container_file, engine)
    expect(path in facts.files, f"{engine.shown}: {path} does not exist inside {cname}")


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.runbook(
    "One container cannot reach another (runbook: `docker exec operator-base curl -f "
    "http://aggregator-base:2206/health`). Is the destination up and listening, on the same "
    "Docker network, and does its name resolve? The probe is read-only: a TCP connect or GET."
)
def test_container_reaches(container_connect, engine):
    spec, destination = container_connect.value
    container = engine.require(spec)[0]
    seconds = max(1, round(engine.target.exec_timeout) - 1)
    code, output = engine.exec(container, probe_script(destination, seconds))
    detail = clip(" ".join(output.split()), 300)
    expect(
        code == 0,
        f"{engine.shown}: {container['Name'].lstrip('/')} cannot reach {destination}: "
        + (f"timed out after {seconds} s" if code in (124, 143) else f"exit {code}")
        + (f": {detail}" if detail else ""),
    )


@pytest.mark.runbook(
    "A container's environment variable does not meet its condition (runbook: `ENABLE_HSTS=true` on "
    "api-gateway, or the Strict-Transport-Security header is missing). The value is never shown: compare "
    "the compose file and .env on the host (`docker compose config SERVICE`), then recreate the "
    "container (`docker compose up -d SERVICE`): a changed environment needs a new container, not a restart."
)
def test_container_env_as_expected(container_env, engine):
    spec, setting = container_env.value
    problems = []
    for c in engine.require(spec):
        found, value = environment_value(c, setting.key)
        keep_secret(value)
        problem = verdict(setting, found, value, f"in {c['Name'].lstrip('/')}")
        if problem:
            problems.append(problem)
    expect(not problems, f"{engine.shown}: {spec.shown()}: " + "; ".join(problems))
