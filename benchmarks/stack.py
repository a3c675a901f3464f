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


def peer_commands(pgs, redises, sites, pki, engine, names, prom, am) -> list[list[str]]:
    """The serial peers: one command per verdict, as an operator's cron script runs them."""
    commands = []
    for pg in pgs:
        conn = ["--host=127.0.0.1", f"--port={pg.port}", "--dbuser=opscheck", "--dbname=postgres"]
        for action in ("connection", "backends", "query_time", "txn_idle", "locks"):
            commands.append(["check_postgres", f"--action={action}", *conn])
    for r in redises:
        for args in (["PING"], ["INFO", "memory"], ["INFO", "clients"], ["LLEN", "jobs"]):
            commands.append(["redis-cli", "-h", "127.0.0.1", "-p", str(r.port), *args])
    for site in sites:
        http = [f"{PLUGINS}/check_http", "-H", "localhost", "-I", "127.0.0.1", "-p", str(site.port), "-S"]
        commands.append(http)
        commands.append([*http, "-C", "30,14"])
        commands.append(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{site.port}", "-servername", "localhost"]
            + ["-verify_return_error", "-CAfile", str(pki.ca_file), "-brief"]
        )
    docker = ["docker", "-H", engine.url]
    for name in names:
        commands.append([*docker, "inspect", name])
        commands.append([*docker, "logs", "--since", "1h", name])
    commands.append([*docker, "stats", "--no-stream", *names])
    for url in (f"{prom.url}/-/ready", f"{prom.url}/api/v1/targets", f"{prom.url}/api/v1/rules"):
        commands.append(["curl", "-fsS", "-o", "/dev/null", url])
    commands.append(["curl", "-fsS", "-o", "/dev/null", f"{prom.url}/api/v1/alerts"])
    for url in (f"{am.url}/-/ready", f"{am.url}/api/v2/alerts", f"{am.url}/api/v2/silences"):
        commands.append(["curl", "-fsS", "-o", "/dev/null", url])
    return commands


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
            peers = peer_commands(pgs, redises, sites.values(), pki, engine, names, prom, am)
            env = {**os.environ, "PGPASSWORD": "pw"}
            settle(prom.url)  # Prometheus has scraped and found its Alertmanager; containers log a few lines
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
    print(f"opscheck run: {checks}; serial peers: {len(peers)} verdicts (median of {args.runs} runs)")
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
