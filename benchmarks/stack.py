"""The daily run on a multi-service stack, against the same checks done one after another by
the tools operators use today (check_postgres, monitoring-plugins check_http, redis-cli,
curl, docker inspect/logs/stats --no-stream, openssl).

    .venv/bin/python benchmarks/stack.py [--runs 5]

Needs root (dockerd, PostgreSQL as the postgres user). The benchmark starts the stack itself:
two PostgreSQL servers, two Redis servers, five nginx TLS sites, a Docker engine with five
containers, Prometheus and Alertmanager. Measured side by side in one run, each figure the
median of --runs:
- start-up: `pytest --collect-only -m daily` on the stack's inventory;
- opscheck: `pytest -m daily` (every report written), and the slowest single target's
  gather as the run reports it ("opscheck: gathered ... slowest ...");
- serial peers: the peer tools' verdicts, one command after another.
Targets: opscheck <= start-up + slowest gather + 0.5 s, and <= 0.5 x the serial peers.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's
import yaml

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from tests.servers import PostgresServer, RedisServer  # noqa: E402
from tests.servers_docker import DockerEngineServer  # noqa: E402
from tests.servers_monitoring import AlertmanagerServer, PrometheusServer  # noqa: E402
from tests.servers_tls import Nginx, Site, selftest_pki  # noqa: E402

PLUGINS = "/usr/lib/nagios/plugins"


Peer = tuple[tuple[str, ...], list[str]]  # the checks a command decides, and the command


def peer_table(pgs, redises, sites, pki, engine, names, prom, am) -> list[Peer]:
    """The serial peers: for each opscheck check on the stack, the command an operator's cron
    script runs for the same verdict (one command may decide several checks, as
    check_postgres --action=backends decides both connection thresholds)."""
    table: list[Peer] = []
    for pg in pgs:
        conn = ["--host=127.0.0.1", f"--port={pg.port}", "--dbuser=opscheck", "--dbname=postgres"]
        for action, limits, checks in (  # opscheck's default limits where check_postgres needs them
            ("connection", [], ("select_1",)),
            ("backends", [], ("connections_below_warning", "connections_below_critical")),
            ("locks", [], ("lock_waits_below_warning", "lock_waits_below_critical")),
            (
                "query_time",
                ["--warning=60s", "--critical=300s"],
                ("long_queries_below_warning", "long_queries_below_critical"),
            ),
            ("txn_idle", ["--critical=300s"], ("no_idle_in_transaction",)),
            ("txn_time", ["--critical=900s"], ("no_old_transactions",)),
            ("txn_wraparound", [], ("wraparound_below_warning", "wraparound_below_critical")),
            ("sequence", [], ("sequences_below_critical",)),
            ("disabled_triggers", [], ("no_disabled_triggers",)),
        ):
            command = ["check_postgres", f"--action={action}", *conn, *limits]
            table.append((tuple(f"test_postgres_{c}" for c in checks), command))
        # check_postgres has no deadlock action: psql, as the runbooks query it
        psql = ["psql", "-XAt", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "opscheck", "-d", "postgres", "-c"]
        table.append((("test_postgres_no_new_deadlocks",), [*psql, "SELECT sum(deadlocks) FROM pg_stat_database"]))
        statements = "SELECT query, mean_exec_time FROM pg_stat_statements ORDER BY 2 DESC LIMIT 5"
        table.append((("test_postgres_no_slow_statements",), [*psql, statements]))
    for r in redises:
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(r.port)]
        for args, checks in (
            (["PING"], ("ping",)),
            (["INFO", "memory"], ("memory_below_limit",)),
            (["INFO", "clients"], ("clients_below_limit",)),
            (["INFO", "stats"], ("no_new_evictions", "no_new_rejected_connections")),
            (["INFO", "persistence"], ("persistence_ok",)),
            # as many PINGs as opscheck's check sends (-i 0.1: about 10 samples), not the 1 s default
            (["--latency", "--raw", "-i", "0.1"], ("latency_below_limit",)),
            (["LLEN", "jobs"], ("queue_depth_below_warning", "queue_depth_below_critical")),
        ):
            table.append((tuple(f"test_redis_{c}" for c in checks), [*cli, *args]))
    for site in sites:
        http = [f"{PLUGINS}/check_http", "-H", "localhost", "-I", "127.0.0.1", "-p", str(site.port), "-S"]
        table.append((("test_http_status", "test_http_latency_below_limit"), [*http, "-w", "1", "-c", "2"]))
        table.append(
            (("test_tls_certificates_expiry_warning", "test_tls_certificates_expiry_critical"), [*http, "-C", "30,14"])
        )
        s_client = ["openssl", "s_client", "-connect", f"127.0.0.1:{site.port}", "-servername", "localhost"]
        verify = ["-verify_return_error", "-verify_hostname", "localhost", "-CAfile", str(pki.ca_file), "-brief"]
        table.append(
            (("test_tls_handshake", "test_tls_chain_verifies", "test_tls_hostname_matches"), s_client + verify)
        )
        served = ("test_tls_served_chain_complete", "test_tls_key_strength", "test_tls_signatures_not_weak")
        pipeline = f"{' '.join(s_client)} -showcerts </dev/null | openssl x509 -noout -text"
        table.append(((*served, "test_tls_validity_period"), ["sh", "-c", pipeline]))
        # Debian's OpenSSL refuses TLS 1.0 and 1.1 itself unless asked for security level 0
        for flag in ("-tls1", "-tls1_1"):
            table.append((("test_tls_legacy_protocols_refused",), [*s_client, flag, "-cipher", "DEFAULT@SECLEVEL=0"]))
        for flag in ("-tls1_2", "-tls1_3"):
            table.append((("test_tls_modern_protocols_accepted",), [*s_client, flag]))
    docker = ["docker", "-H", engine.url]
    table.append((("test_docker_engine_reachable",), [*docker, "version"]))
    inspected = ("running", "healthy", "not_restarting", "restart_count_stable", "not_oom_killed")
    for name in names:
        table.append((tuple(f"test_container_{c}" for c in inspected), [*docker, "inspect", name]))
    stats = ("test_container_cpu_below_limit", "test_container_memory_below_limit")
    table.append((stats, [*docker, "stats", "--no-stream", *names]))
    for path, checks in (
        ("/-/ready", ("ready",)),
        ("/api/v1/targets", ("targets_up",)),
        ("/api/v1/rules", ("rules_healthy",)),
        ("/api/v1/alerts", ("no_firing_warning_alerts", "no_firing_critical_alerts")),
        ("/api/v1/alertmanagers", ("alertmanager_connected",)),
        ("/api/v1/status/runtimeinfo", ("config_reloaded",)),
    ):
        table.append(
            (tuple(f"test_prometheus_{c}" for c in checks), ["curl", "-fsS", "-o", "/dev/null", prom.url + path])
        )
    for path, checks in (
        ("/-/ready", ("ready",)),
        ("/api/v2/status", ("cluster_ready",)),
        ("/api/v2/alerts", ("active_alerts_within_budget", "no_recent_alerts")),
    ):
        table.append(
            (tuple(f"test_alertmanager_{c}" for c in checks), ["curl", "-fsS", "-o", "/dev/null", am.url + path])
        )
    return table


def peers_for(table: list[Peer], run_checks: set[str]) -> tuple[list[list[str]], set[str]]:
    """The peer commands for the checks the run selects, and the run's checks without a peer."""
    commands = [command for checks, command in table if run_checks & set(checks)]
    covered = {check for checks, _ in table for check in checks}
    return commands, run_checks - covered


def serial(commands: list[list[str]], env: dict) -> float:
    start = time.perf_counter()
    for command in commands:
        subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
    return time.perf_counter() - start


def settle(prom_url: str, seconds: float = 30) -> None:
    """Wait until Prometheus has scraped its targets (all up) and connected its Alertmanager."""
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            targets = requests.get(f"{prom_url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            managers = requests.get(f"{prom_url}/api/v1/alertmanagers", timeout=2).json()["data"]
            if targets and all(t["health"] == "up" for t in targets) and managers["activeAlertmanagers"]:
                time.sleep(1)
                return
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(0.5)
    sys.exit(f"Prometheus at {prom_url} did not settle in {seconds:g} s")


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=HERE, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = str(HERE / ".venv" / "bin" / "python")
    pki = selftest_pki()
    sites = {f"site{i}": Site(pki.chain_file(pki.good, pki.intermediate), pki.good.key_path) for i in range(5)}
    pgs = [PostgresServer(), PostgresServer()]
    redises = [RedisServer(), RedisServer()]
    nginx = Nginx(sites)
    engine = DockerEngineServer()
    am = AlertmanagerServer()
    started = []
    try:
        for service in (*pgs, *redises, nginx, am):
            service.start()
            started.append(service)
        engine.start()
        started.append(engine)
        names = [f"app{i}" for i in range(5)]
        engine.run_many({n: ("while :; do echo tick; sleep 1; done", {}) for n in names})
        rules = [{"name": "bench", "rules": [{"alert": "TargetDown", "expr": "up == 0", "for": "1m"}]}]
        prom = PrometheusServer(
            {"alertmanager": [am.url.removeprefix("http://")]}, rules, [am.url.removeprefix("http://")]
        )
        prom.start()
        started.append(prom)
        for pg in pgs:
            pg.create_monitor_role("opscheck", "pw")
        for r in redises:
            r.client().rpush("jobs", *range(10))
        inventory = {
            "environment": "bench-stack",
            "postgres": [{"name": f"pg{i}", "dsn": pg.dsn("opscheck", "pw")} for i, pg in enumerate(pgs)],
            "redis": [
                {"name": f"redis{i}", "url": r.url(), "queues": [{"key": "jobs"}]} for i, r in enumerate(redises)
            ],
            "http": [
                {"name": n, "url": f"https://localhost:{s.port}/", "verify": str(pki.ca_file)} for n, s in sites.items()
            ],
            "tls": [
                {
                    "name": n,
                    "host": "127.0.0.1",
                    "port": s.port,
                    "server_name": "localhost",
                    "ca_file": str(pki.ca_file),
                }
                for n, s in sites.items()
            ],
            "docker": [{"name": "engine", "engine": engine.url, "containers": [{"name": n} for n in names]}],
            "prometheus": [{"name": "prom", "url": prom.url, "watchdog_alert": None}],
            "alertmanager": [{"name": "am", "url": am.url, "watchdog_alert": None}],
        }
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            path = folder / "stack.yml"
            path.write_text(yaml.safe_dump(inventory, sort_keys=False))
            base = [python, "-m", "pytest", "-p", "no:randomly", f"--inventory={path}"]
            base += [f"--reports-dir={folder / 'reports'}", "--keep-runs=1", "--no-state", "-m", "daily"]
            run_cmd = [*base, "-q"]
            collect_cmd = [*base, "-q", "--collect-only"]
            env = {**os.environ, "PGPASSWORD": "pw"}
            settle(prom.url)  # Prometheus has scraped and found its Alertmanager; containers log a few lines
            warm_up = timed([*run_cmd, "-rA"])[1]  # also lists the checks that ran, for their peers
            run_checks = set(re.findall(r"^(?:PASSED|FAILED|ERROR) \S+::(test_\w+)\[", warm_up, re.MULTILINE))
            table = peer_table(pgs, redises, sites.values(), pki, engine, names, prom, am)
            peers, unmatched = peers_for(table, run_checks)
            collects, opschecks, slowest, serials, checks, failures = [], [], [], [], "", []
            for _ in range(args.runs):
                collects.append(timed(collect_cmd)[0])
                elapsed, out = timed(run_cmd)
                opschecks.append(elapsed)
                found = re.search(r"gathered (\d+) target\(s\) in ([0-9.]+) s; slowest (.+?) ([0-9.]+) s", out)
                if found:
                    slowest.append((float(found.group(4)), found.group(3)))
                checks = out.strip().splitlines()[-1]
                failures = [line for line in out.splitlines() if line.startswith("FAILED")]
                if "warnings summary" in out:  # a healthy run has none
                    failures += out.split("warnings summary", 1)[1].split("-- Docs", 1)[0].strip().splitlines()
                serials.append(serial(peers, env))
    finally:
        for service in reversed(started):
            service.stop()
    median = statistics.median
    slow_s = median(s for s, _ in slowest) if slowest else float("nan")
    slow_name = slowest[-1][1] if slowest else "?"
    bound = median(collects) + slow_s + 0.5
    ratio = median(opschecks) / median(serials)
    print("stack: 2 PostgreSQL, 2 Redis, 5 nginx TLS sites, Docker engine with 5 containers, Prometheus, Alertmanager")
    print(f"opscheck run: {checks}; serial peers: {len(peers)} commands (median of {args.runs} runs)")
    print(
        f"the run's {len(run_checks)} kinds of check all have a peer command"
        if not unmatched
        else f"checks without a peer command: {', '.join(sorted(unmatched))}"
    )
    print("| figure | seconds |")
    print("|---|---|")
    print(f"| opscheck start-up (`--collect-only -m daily`) | {median(collects):.2f} |")
    print(f"| slowest single target's gather ({slow_name}) | {slow_s:.2f} |")
    print(f"| opscheck `pytest -m daily` | {median(opschecks):.2f} |")
    verdict = "met" if median(opschecks) <= bound else "NOT met"
    print(f"| bound: start-up + slowest gather + 0.5 s | {bound:.2f} ({verdict}) |")
    print(f"| serial peers (check_postgres, check_http, redis-cli, curl, docker, openssl) | {median(serials):.2f} |")
    print(f"| opscheck / serial peers | {ratio:.2f} x (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'}) |")
    print(f"command: {' '.join(run_cmd)}")
    for line in failures:  # of the last run: a healthy stack has none
        print(line[:300])


if __name__ == "__main__":
    main()
