"""API calls and wall time of an AWS run: one ECS service, one target group, one RDS
instance and five alarms, against moto on loopback (through the self-tests' front, which
counts every call and answers DescribePendingMaintenanceActions, which moto lacks).

    python benchmarks/aws_calls.py [--runs 5]

Side by side: the same reads with the AWS CLI, one `aws` command per call as the runbook
writes them (describe-services, describe-target-health, describe-db-instances,
get-metric-statistics per metric, describe-alarms, ...), one after another. The CLI only
fetches; opscheck also judges 14 checks and writes its reports. Wall time is the whole
process (start-up included), the median of --runs.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import run_suite  # noqa: E402
from tests.servers_aws import AwsFront, MotoServer, seed_small_stack  # noqa: E402

KEY, SECRET = "AKIDOPSCHECKBENCH", "bench-Secret-1"


def inventory(url: str) -> dict:
    return {
        "environment": "bench-aws",
        "aws": [
            {
                "name": "accunode",
                "region": "us-east-1",
                "endpoint_url": url,
                "ecs_services": [{"cluster": "accunode-prod", "service": "accunode-api"}],
                "target_groups": [{"name": "accunode-api", "ecs_service": "accunode-prod/accunode-api"}],
                "rds_instances": [{"id": "accunode-prod"}],
                "alarms": {"prefix": "accunode-"},
            }
        ],
    }


def cli_commands(url: str) -> list[list[str]]:
    """The runbook's AWS CLI reads for the same checks, one process each."""
    end = datetime.now(UTC).replace(microsecond=0)
    window = ["--start-time", (end - timedelta(hours=1)).isoformat(), "--end-time", end.isoformat()]
    rds = ["Name=DBInstanceIdentifier,Value=accunode-prod"]
    commands = [
        ["ecs", "describe-services", "--cluster", "accunode-prod", "--services", "accunode-api"],
        ["elbv2", "describe-target-groups", "--names", "accunode-api"],
        ["elbv2", "describe-target-health", "--target-group-arn", "TG_ARN"],
        ["rds", "describe-db-instances", "--db-instance-identifier", "accunode-prod"],
        ["rds", "describe-db-snapshots", "--db-instance-identifier", "accunode-prod", "--snapshot-type", "automated"],
        ["rds", "describe-pending-maintenance-actions"],
        ["cloudwatch", "describe-alarms", "--state-value", "ALARM", "--alarm-name-prefix", "accunode-"],
    ]
    for metric, stat in (
        ("FreeStorageSpace", "Minimum"),
        ("CPUUtilization", "Average"),
        ("ReadLatency", "Average"),
        ("WriteLatency", "Average"),
    ):
        commands.append(
            [
                "cloudwatch",
                "get-metric-statistics",
                "--namespace",
                "AWS/RDS",
                "--metric-name",
                metric,
                "--dimensions",
                *rds,
                "--period",
                "300",
                "--statistics",
                stat,
                *window,
            ]
        )
    for metric in ("HTTPCode_Target_5XX_Count", "RequestCount"):
        commands.append(
            [
                "cloudwatch",
                "get-metric-statistics",
                "--namespace",
                "AWS/ApplicationELB",
                "--metric-name",
                metric,
                "--dimensions",
                "Name=LoadBalancer,Value=LB_DIM",
                "Name=TargetGroup,Value=TG_DIM",
                "--period",
                "3600",
                "--statistics",
                "Sum",
                *window,
            ]
        )
    return [["aws", "--endpoint-url", url, "--region", "us-east-1", "--output", "json", *c] for c in commands]


def run_cli(url: str, env: dict) -> tuple[float, int]:
    start = time.perf_counter()
    arn = lb_dim = tg_dim = ""
    commands = cli_commands(url)
    for command in commands:
        command = [a.replace("TG_ARN", arn).replace("LB_DIM", lb_dim).replace("TG_DIM", tg_dim) for a in command]
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
        if "describe-target-groups" in command:
            group = json.loads(out)["TargetGroups"][0]
            arn = group["TargetGroupArn"]
            lb_dim = group["LoadBalancerArns"][0].split("loadbalancer/")[1]
            tg_dim = arn.rsplit(":", 1)[1]
    return time.perf_counter() - start, len(commands)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    with MotoServer() as moto, AwsFront(moto.url) as front:
        seed_small_stack(moto.url, KEY, SECRET)
        walls, calls, checks, durations = [], None, 0, []
        for _ in range(args.runs):
            front.reset_calls()
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = run_suite(inventory(front.url), Path(tmp), env=env)
                walls.append(time.perf_counter() - start)
            assert result.rc == 0, result.output
            checks = len(result.checks)
            calls = dict(front.calls)
            durations.append(sum(c["duration"] for c in result.checks.values()))
        print("command: python benchmarks/aws_calls.py --runs", args.runs)
        print(f"stack: 1 ECS service, 1 target group (3 targets), 1 RDS instance, 5 alarms; moto {moto.url}")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")
        print(f"opscheck: {checks} checks passed, {sum(calls.values())} API calls per run:")
        for action, count in sorted(calls.items()):
            print(f"  {action:40} {count}")
        print(
            f"  wall time (pytest process, median of {args.runs}): {statistics.median(walls):.2f} s "
            f"(min {min(walls):.2f}, max {max(walls):.2f})"
        )
        print(f"  the checks' own time (summary.json, gathering included): {statistics.median(durations):.2f} s")
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_suite({"environment": "bench-empty", "hosts": [{"name": "h"}]}, Path(tmp), "-k", "memory_available")
            print(f"  baseline: a run of one trivial host check takes {time.perf_counter() - start:.2f} s (start-up)")
        if shutil.which("aws"):
            cli = [run_cli(front.url, env) for _ in range(args.runs)]
            print(
                f"\nAWS CLI, the same reads one command after another: {cli[0][1]} commands, "
                f"{statistics.median(w for w, _ in cli):.2f} s (median of {args.runs}); it fetches, a person judges"
            )
        else:
            print("\nAWS CLI not installed (pip install awscli): no side-by-side figure")


if __name__ == "__main__":
    main()
