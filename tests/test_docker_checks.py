"""Containers family against a private Docker engine: healthy containers, and broken ones
(stopped, unhealthy, crash-looping, OOM-killed, CPU burner, memory hog, failed job, wrong
image, not redeployed, a Compose project with a service missing and one under-scaled)."""

import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import run_suite
from tests.servers import closed_port
from tests.servers_docker import IMAGE, docker_server  # noqa: F401 - the session's engine

# starting a private engine and a dozen containers is charged to the first test
pytestmark = pytest.mark.timeout(240)

OOM = "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived"
CONTAINERS = {
    "web": (
        "httpd -f -p 8080 -h /www",
        {"healthcheck": {"test": ["CMD", "true"], "interval": 1_000_000_000}, "mem_limit": "64m"},
    ),
    "client": ("sleep 100000", {"network_mode": "container:web"}),
    "sick": (
        "sleep 100000",
        {"healthcheck": {"test": ["CMD-SHELL", "echo db down; exit 1"], "interval": 1_000_000_000, "retries": 1}},
    ),
    "stopped": ("echo bye; exit 1", {}),
    "crashloop": ("echo crash; exit 3", {"restart_policy": {"Name": "always"}}),
    "oom": (OOM, {"mem_limit": "16m", "memswap_limit": "16m"}),
    # OOM-killed once, restarted by its policy: State.OOMKilled is cleared, the oom event stays
    "oom-restarted": (
        f"if [ ! -e /tmp/ran ]; then touch /tmp/ran; {OOM}; fi; sleep 100000",
        {"mem_limit": "16m", "memswap_limit": "16m", "restart_policy": {"Name": "on-failure"}},
    ),
    # SIGKILLed under a memory limit, no OOM recorded: what an OOM kill the engine missed looks like
    "sigkilled": ("sleep 100000", {"mem_limit": "32m"}),
    "burner": ("while :; do :; done", {}),
    "hog": (
        "head -c 24000000 /dev/zero > /dev/shm/fill; sleep 100000",
        {"mem_limit": "32m", "memswap_limit": "32m", "shm_size": "64m"},
    ),
    "job-ok": ("echo migrated", {}),
    "job-bad": ("echo 'relation missing' >&2; exit 2", {}),
    "shop-api-1": (
        "sleep 100000",
        {"labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "api"}},
    ),
    "shop-worker-1": (
        "sleep 100000",
        {"labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "worker"}},
    ),
}


@pytest.fixture(scope="module")
def containers(docker_server):  # noqa: F811
    server = docker_server
    server.run_many(CONTAINERS)
    # wait for the healthchecks' first verdicts and the crashes to happen
    server.wait("web", lambda a: a["State"]["Health"]["Status"] == "healthy", 30, "healthy")
    server.wait("sick", lambda a: a["State"]["Health"]["Status"] == "unhealthy", 30, "unhealthy")
    server.wait("oom", lambda a: a["State"]["Status"] == "exited", 30, "exited")
    server.wait("oom-restarted", lambda a: a["RestartCount"] >= 1 and a["State"]["Running"], 30, "restarted")
    # the engine records an OOM kill from containerd's event, which can land after the exit (or,
    # on Docker 20.10 with cgroup v2, be missed): settle what it says before the suite reads it
    server.client.containers.get("sigkilled").kill()
    server.wait("sigkilled", lambda a: a["State"]["Status"] == "exited", 30, "exited")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not server.client.api.inspect_container("oom")["State"]["OOMKilled"]:
        time.sleep(0.2)
    server.wait("crashloop", lambda a: a["RestartCount"] >= 2, 30, "a crash loop")
    server.wait("hog", lambda a: a["State"]["Running"], 30, "running")
    server.wait("job-bad", lambda a: a["State"]["Status"] == "exited", 30, "exited")
    server.wait("job-ok", lambda a: a["State"]["Status"] == "exited", 30, "exited")
    return server


def _compose_file(tmp_path) -> str:
    path = tmp_path / "compose.yml"
    path.write_text("services:\n  api: {image: shop-api}\n  worker: {image: shop-worker}\n  cache: {image: redis}\n")
    return str(path)


@pytest.fixture(scope="module")
def result(containers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("containers")
    image_id = containers.client.api.inspect_image(IMAGE)["Id"]
    long_ago = "2000-01-01T00:00:00Z"
    inventory = {
        "environment": "selftest-containers",
        "docker": [
            {
                "name": "good",
                "engine": containers.url,
                "containers": [
                    {
                        "name": "web",
                        "image": IMAGE,
                        "started_after": long_ago,
                        "processes": ["httpd"],
                        "ports": [8080],
                        "files": ["/www/index.html"],
                    },
                    {
                        "name": "client",
                        "image": image_id,
                        "connect": ["127.0.0.1:8080", "http://127.0.0.1:8080/index.html"],
                    },
                    {"name": "job-ok", "one_shot": True},
                ],
            },
            {
                "name": "bad",
                "engine": containers.url,
                "restarts_max": 1,
                "containers": [
                    {"name": "sick"},
                    {"name": "stopped", "files": ["/www/index.html"]},
                    {"name": "crashloop"},
                    {"name": "oom"},
                    {"name": "oom-restarted"},
                    {"name": "sigkilled"},
                    {"name": "missing"},
                    {"name": "burner", "cpu_max_pct": 20},
                    {"name": "hog", "memory_max_pct": 50},
                    {
                        "name": "web",
                        "image": "opscheck-busybox:2",
                        "started_after": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                        "processes": ["nginx"],
                        "ports": [9090],
                        "files": ["/etc/app.conf"],
                    },
                    {"name": "client", "connect": ["127.0.0.1:8081", "http://127.0.0.1:8080/nothing-here"]},
                    {"name": "job-bad", "one_shot": True},
                ],
            },
            {
                "name": "shop",
                "engine": containers.url,
                "compose_project": "shop",
                "compose_file": _compose_file(tmp),
                "containers": [{"name": "worker", "service": "worker", "replicas": 2}],
            },
            {"name": "gone", "engine": f"unix://{tmp}/no-such.sock", "containers": [{"name": "web"}]},
            # the same engine over tcp:// with TLS and a client certificate; and without one
            {"name": "tls", "engine": containers.tls_url, "tls": containers.tls_files, "containers": [{"name": "web"}]},
            {
                "name": "tls-no-cert",
                "engine": containers.tls_url,
                "tls": {"ca": containers.tls_files["ca"]},
                "containers": [{"name": "web"}],
            },
        ],
    }
    return run_suite(inventory, tmp / "run", "-m", "containers")


def test_healthy_containers_pass(result):
    for check in (
        "running",
        "healthy",
        "not_restarting",
        "restart_count_stable",
        "not_oom_killed",
        "cpu_below_limit",
        "memory_below_limit",
    ):
        result.assert_passed(f"test_container_{check}[good:web]", f"test_container_{check}[good:client]")
    result.assert_passed(
        "test_docker_engine_reachable[good]",
        "test_container_job_succeeded[good:job-ok]",
        "test_container_image_as_expected[good:web]",
        "test_container_image_as_expected[good:client]",
        "test_container_started_after_deploy[good:web]",
        "test_container_process_running[good:web:httpd]",
        "test_container_port_listening[good:web:8080]",
        "test_container_file_exists[good:web:/www/index.html]",
        "test_container_reaches[good:client->127.0.0.1:8080]",
        "test_container_reaches[good:client->http://127.0.0.1:8080/index.html]",
        "test_container_running[shop:api]",
        "test_container_healthy[shop:api]",
    )


def test_stopped_and_missing_containers_fail(result):
    result.assert_failed("test_container_running[bad:stopped]", "stopped is exited (exit code 1)")
    result.assert_failed("test_container_cpu_below_limit[bad:stopped]", "blocked:", "stopped is exited")
    result.assert_failed(
        "test_container_file_exists[bad:stopped:/www/index.html]", "blocked:", "stopped is exited", "nothing to read"
    )
    result.assert_failed("test_container_running[bad:missing]", "container missing does not exist")


def test_unhealthy_container_fails(result):
    result.assert_passed("test_container_running[bad:sick]")
    result.assert_failed("test_container_healthy[bad:sick]", "sick is unhealthy", "db down")


def test_crash_loop_fails(result):
    result.assert_failed("test_container_not_restarting[bad:crashloop]", "crashloop")
    result.assert_failed("test_container_restart_count_stable[bad:crashloop]", "restart count", "> limit 1")


def test_oom_killed_container_fails(result, containers):
    message = result.assert_failed("test_container_not_oom_killed[bad:oom]", "memory limit 16 MiB")
    state = containers.client.api.inspect_container("oom")["State"]
    if state["OOMKilled"]:
        assert "oom was OOM-killed" in message and "oom event(s) since" in message, message
    else:  # the engine did not flag it (Docker 20.10, cgroup v2): its oom event, or else the SIGKILL under the limit
        assert (
            "oom event(s) since" in message
            or "oom exited with code 137 (SIGKILL) under its memory limit: likely OOM-killed" in message
        ), message
    result.assert_failed(
        "test_container_not_oom_killed[bad:sigkilled]",
        "sigkilled exited with code 137 (SIGKILL) under its memory limit: likely OOM-killed",
        "memory limit 32 MiB",
    )
    # restarted after the kill: newer engines clear OOMKilled then; the engine's oom event stays
    now = int(time.time())
    events = containers.client.api.events(
        since=now - 600, until=now, decode=True, filters={"event": "oom", "container": "oom-restarted"}
    )
    if list(events):  # what the engine did not record, no check can read
        result.assert_failed("test_container_not_oom_killed[bad:oom-restarted]", "oom event(s) since")


def test_resource_hogs_fail(result):
    result.assert_failed("test_container_cpu_below_limit[bad:burner]", "burner CPU", ">= limit 20%")
    result.assert_failed("test_container_memory_below_limit[bad:hog]", "hog memory", "of 32 MiB", ">= limit 50%")


def test_failed_job_fails(result):
    result.assert_failed("test_container_job_succeeded[bad:job-bad]", "job-bad exited with code 2")


def test_wrong_image_and_old_start_fail(result):
    result.assert_failed(
        "test_container_image_as_expected[bad:web]", "runs opscheck-busybox:1", "expected opscheck-busybox:2"
    )
    result.assert_failed("test_container_started_after_deploy[bad:web]", "web started")


def test_in_container_state_fails(result):
    result.assert_failed("test_container_process_running[bad:web:nginx]", "no process 'nginx' inside web")
    result.assert_failed(
        "test_container_port_listening[bad:web:9090]", "nothing listens on TCP 9090", "listening: 8080"
    )
    result.assert_failed("test_container_file_exists[bad:web:/etc/app.conf]", "/etc/app.conf does not exist")


def test_unreachable_destination_fails(result):
    result.assert_failed(
        "test_container_reaches[bad:client->127.0.0.1:8081]", "cannot reach 127.0.0.1:8081", "Connection refused"
    )
    result.assert_failed("test_container_reaches[bad:client->http://127.0.0.1:8080/nothing-here]", "404")


def test_compose_service_missing_or_underscaled_fails(result):
    # the compose file lists cache; no container has its labels
    result.assert_failed("test_container_running[shop:cache]", "service cache in Compose project shop does not exist")
    result.assert_failed("test_container_running[shop:worker]", "1 running container(s) < expected 2")


def test_engine_over_tls(result):
    result.assert_passed(
        "test_docker_engine_reachable[tls]",
        "test_container_running[tls:web]",
        "test_container_cpu_below_limit[tls:web]",
    )
    # --tlsverify: without a client certificate the engine refuses the handshake
    result.assert_failed("test_docker_engine_reachable[tls-no-cert]", "cannot connect")
    result.assert_failed("test_container_running[tls-no-cert:web]", "blocked:")


def test_unreachable_engine_fails_once_then_blocks(result):
    result.assert_failed("test_docker_engine_reachable[gone]", "cannot connect")
    for check in ("running", "healthy", "not_restarting"):
        result.assert_failed(f"test_container_{check}[gone:web]", "blocked:")


def test_restart_counts_remembered_for_the_next_run(result):
    state = json.loads((result.reports_dir / "selftest-containers" / "state.json").read_text())
    assert state["docker:good:web:restarts"]["count"] == 0
    assert state["docker:bad:crashloop:restarts"]["count"] >= 2


def test_restart_since_the_last_run_fails(containers, tmp_path):
    """A restart count that grew between two runs fails, though it is under the limit."""
    containers.run("flaky", "exit 1", restart_policy={"Name": "always"})
    containers.wait("flaky", lambda a: a["RestartCount"] >= 1, 30, "a restart")
    inventory = {
        "environment": "selftest-restarts",
        "docker": [
            {
                "name": "loop",
                "engine": containers.url,
                "restarts_max": 1000,
                "containers": [{"name": "flaky"}, {"name": "web"}],
            }
        ],
    }
    first = run_suite(inventory, tmp_path, "-k", "restart_count_stable")
    first.assert_passed("test_container_restart_count_stable[loop:flaky]")
    seen = json.loads((first.reports_dir / "selftest-restarts" / "state.json").read_text())
    containers.wait(
        "flaky", lambda a: a["RestartCount"] > seen["docker:loop:flaky:restarts"]["count"], 30, "one more restart"
    )
    second = run_suite(inventory, tmp_path, "-k", "restart_count_stable")
    second.assert_passed("test_container_restart_count_stable[loop:web]")
    second.assert_failed("test_container_restart_count_stable[loop:flaky]", "since the last run")


def test_engine_over_ssh(containers, tmp_path):
    """ssh://: the SDK runs `ssh ... docker system dial-stdio` (as the docker CLI does), so the
    engine is whatever DOCKER_HOST the remote login gets: here a real sshd on loopback whose
    sessions point at the private engine. ssh finds its key and options through ~/.ssh/config
    on a real runner; here a wrapper in PATH adds `-F` with the test's config."""
    from tests.servers_ssh import SshServer

    with SshServer(extra_config=f"SetEnv DOCKER_HOST={containers.url}") as sshd:
        wrappers = tmp_path / "bin"
        wrappers.mkdir()
        (wrappers / "ssh").write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {sshd._path("ssh_config")} "$@"\n')
        (wrappers / "ssh").chmod(0o755)
        inventory = {
            "environment": "selftest-docker-ssh",
            "docker": [
                {"name": "remote", "engine": f"ssh://root@127.0.0.1:{sshd.port}", "containers": [{"name": "web"}]},
                {
                    "name": "remote-down",
                    "engine": f"ssh://root@127.0.0.1:{closed_port()}",
                    "timeout": 3,
                    "containers": [{"name": "web"}],
                },
            ],
        }
        result = run_suite(
            inventory,
            tmp_path / "run",
            "-m",
            "containers",
            "-k",
            "reachable or running",
            env={"PATH": f"{wrappers}:{os.environ['PATH']}"},
        )
    result.assert_passed("test_docker_engine_reachable[remote]", "test_container_running[remote:web]")
    result.assert_failed("test_docker_engine_reachable[remote-down]", "cannot connect")
    result.assert_failed("test_container_running[remote-down:web]", "blocked:")
