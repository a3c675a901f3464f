"""The morning report's pages: their sizes after ten runs, and what rendering them costs.

    .venv/bin/python benchmarks/report_pages.py [--endpoints 42] [--failing 28] [--runs 10]

Runs the suite ten times (each run as a user would: pytest in a subprocess, all reports
on) against a local HTTP server with --endpoints endpoints of four checks each (status,
latency, a JSON condition, a header: 168 checks by default), --failing of them failing,
a third of those changing from run to run. Then prints, side by side with pytest-html's
page of the same run (details.html, what a user had before): the size of the run page,
the history page and summary.json, and the time to render the run page and the history
page from the kept summaries (the median of 5 renders, in this process).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import _user_env  # noqa: F401 - first: the pytest runs started here are a user's
import yaml

HERE = Path(__file__).resolve().parent.parent


class Server:
    """Endpoints /e<n>; the set in `failing` answers 500."""

    def __init__(self):
        self.failing: set[int] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                n = int(self.path.strip("/e") or 0)
                bad = n in server.failing
                body = json.dumps({"status": "degraded" if bad else "ok"}).encode()
                self.send_response(500 if bad else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Version", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/e{n}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=42)
    parser.add_argument(
        "--failing", type=int, default=28, help="failing checks per run (status + JSON: 2 per endpoint)"
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    server = Server()
    severities = ["p0", "p1", "p2", "p3"]
    inventory = {
        "environment": "bench-pages",
        "http": [
            {
                "name": f"svc-{n:02d}",
                "url": server.url(n),
                "severity": severities[n % 4],
                "json": [{"path": "status", "op": "==", "value": "ok"}],
                "response_headers": {"X-Version": "\\d+"},
            }
            for n in range(args.endpoints)
        ],
    }
    bad_endpoints = args.failing // 2  # a failing endpoint fails its status and its JSON check
    steady = list(range(bad_endpoints - bad_endpoints // 3))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        path = tmp_path / "inventory.yml"
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        reports = tmp_path / "reports"
        walls = []
        for run in range(args.runs):
            rotating = [bad_endpoints + (run + k) % (args.endpoints - bad_endpoints) for k in range(bad_endpoints // 3)]
            server.failing = set(steady + rotating)
            started = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    f"--inventory={path}",
                    f"--reports-dir={reports}",
                    "-p",
                    "no:randomly",
                ],
                cwd=HERE,
                capture_output=True,
                text=True,
            )
            walls.append(time.perf_counter() - started)
            if proc.returncode not in (0, 1):
                sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
        env_dir = reports / "bench-pages"
        latest = env_dir / "latest"
        summary = json.loads((latest / "summary.json").read_text())

        from opscheck.report import history, pages

        runs = history.load_runs(env_dir)

        def render_ms(render) -> float:
            times = []
            for _ in range(5):
                t = time.perf_counter()
                render()
                times.append((time.perf_counter() - t) * 1000)
            return statistics.median(times)

        out = tmp_path / "out"
        out.mkdir()
        run_ms = render_ms(lambda: pages.run_page(summary, out / "report.html", "details.html"))
        history_ms = render_ms(lambda: pages.history_page("bench-pages", runs, out / "index.html"))

        def kib(p: Path) -> str:
            return f"{p.stat().st_size / 1024:.0f} KiB"

        counts = summary["counts"]
        print(
            f"command: .venv/bin/python benchmarks/report_pages.py --endpoints {args.endpoints} "
            f"--failing {args.failing} --runs {args.runs}"
        )
        print(
            f"{len(summary['checks'])} checks, {counts.get('failed', 0)} failing in the last of {args.runs} runs; "
            f"verdict: {summary['verdict']}"
        )
        print("| file | size | |")
        print("|---|---|---|")
        print(f"| run page (report.html) | {kib(latest / 'report.html')} | render {run_ms:.0f} ms |")
        print(f"| pytest-html's page of the same run (details.html) | {kib(latest / 'details.html')} | |")
        history_size = kib(env_dir / "index.html")
        print(f"| history page (index.html, {len(runs)} runs) | {history_size} | render {history_ms:.0f} ms |")
        print(f"| summary.json | {kib(latest / 'summary.json')} | |")
        print(f"| environments (reports/index.html) | {kib(reports / 'index.html')} | |")
        print(f"| median wall time of a run (pytest in a subprocess) | {statistics.median(walls):.2f} s | |")


if __name__ == "__main__":
    main()
