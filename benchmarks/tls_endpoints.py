"""What TLS checks cost: one check on one loopback nginx endpoint, and all checks on 20
endpoints (20 nginx server blocks), serially and with xdist (-n 2 / -n 4).

    .venv/bin/python benchmarks/tls_endpoints.py

Wall time is the whole pytest process (start-up included); "checks" is the sum of the
checks' durations from summary.json.
"""

import sys
import tempfile
import time
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import run_suite  # noqa: E402
from tests.servers_tls import Nginx, Pki, Site  # noqa: E402


def run(inventory, tmp: Path, *args: str) -> tuple[float, float, int, int]:
    start = time.perf_counter()
    result = run_suite(inventory, tmp, "-m", "tls", *args)
    wall = time.perf_counter() - start
    checks = result.summary.get("checks", [])
    failed = sum(c["outcome"] != "passed" for c in checks)
    return wall, sum(c["duration"] for c in checks), len(checks), failed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="opscheck-tls-bench-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        pki = Pki(tmp / "pki")
        leaf = pki.issue("bench")
        chain = pki.chain_file(leaf, pki.intermediate)
        sites = {f"site{i:02d}": Site(chain, leaf.key_path) for i in range(20)}
        with Nginx(sites):
            targets = [
                {
                    "name": n,
                    "host": "127.0.0.1",
                    "port": s.port,
                    "server_name": "localhost",
                    "ca_file": str(pki.ca_file),
                }
                for n, s in sites.items()
            ]
            print(f"{'case':<44} {'wall s':>7} {'checks s':>9} {'n':>4} {'failed':>6}")
            cases = [
                ("1 endpoint, test_tls_handshake only", targets[:1], ["-k", "test_tls_handshake"]),
                ("1 endpoint, test_tls_chain_verifies only", targets[:1], ["-k", "test_tls_chain_verifies"]),
                ("1 endpoint, all tls checks", targets[:1], []),
                ("20 endpoints, all tls checks, serial", targets, []),
                ("20 endpoints, all tls checks, -n 2", targets, ["-n", "2"]),
                ("20 endpoints, all tls checks, -n 4", targets, ["-n", "4"]),
            ]
            for i, (label, tls, args) in enumerate(cases):
                inventory = {"environment": "bench-tls", "tls": tls}
                wall, checks, n, failed = run(inventory, tmp / f"run{i}", *args)
                print(f"{label:<44} {wall:7.2f} {checks:9.3f} {n:4d} {failed:6d}")


if __name__ == "__main__":
    main()
