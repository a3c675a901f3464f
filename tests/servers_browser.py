"""Headless Chromium (Debian's chromium) for looking at the report pages as a person does.

"No external request" is measured, not assumed, two ways:
- Chromium's own NetLog (--log-net-log) lists every URL request; those a document
  initiated (initiator "null" for a file:// page, an origin otherwise) are the page's
  requests, kept per call in `page_requests`. The browser's own background calls
  (update and account checks, initiator "not an origin") are not the page's;
- every request, the browser's included, goes to a recording proxy on loopback
  (--proxy-server, loopback not bypassed) that refuses it, so nothing leaves the machine.
"""

import json
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.servers import Service

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


class RecordingProxy(Service):
    """An HTTP proxy that answers 403 to everything and remembers what was asked."""

    def __init__(self):
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _refuse(self):
                proxy.requests.append(f"{self.command} {self.path}")
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_CONNECT = do_PUT = do_OPTIONS = _refuse

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Chromium(Service):
    """One chromium binary, a fresh empty profile per call, all traffic through the proxy."""

    def __init__(self):
        self.binary = shutil.which("chromium")
        self.proxy = RecordingProxy()
        self.page_requests: list[tuple[str, str]] = []  # (page, URL it requested)

    def start(self) -> None:
        if not self.binary:
            raise RuntimeError("chromium not found (apt-get install chromium)")
        self.proxy.start()

    def stop(self) -> None:
        self.proxy.stop()

    def _run(self, url: str, *args: str, timeout: float = 60) -> str:
        with tempfile.TemporaryDirectory(prefix="opscheck-chromium-") as profile:
            netlog = Path(profile) / "netlog.json"
            proc = subprocess.run(
                [
                    self.binary,
                    *FLAGS,
                    f"--user-data-dir={profile}/profile",
                    f"--proxy-server=http://127.0.0.1:{self.proxy.port}",
                    "--proxy-bypass-list=<-loopback>",  # loopback goes through the proxy too
                    f"--log-net-log={netlog}",
                    *args,
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
            self.page_requests += [(url, r) for r in document_requests(netlog)]
        return proc.stdout

    def dump_dom(self, url: str) -> str:
        """The DOM after the page's scripts ran (--dump-dom)."""
        return self._run(url, "--virtual-time-budget=3000", "--dump-dom")

    def screenshot(self, url: str, path: Path, width: int = 1280, height: int = 1600) -> Path:
        self._run(url, f"--window-size={width},{height}", f"--screenshot={path}", "--virtual-time-budget=3000")
        if not path.exists() or path.stat().st_size == 0:
            raise RuntimeError(f"chromium wrote no screenshot {path}")
        return path


def document_requests(netlog: Path) -> list[str]:
    """URLs that a document asked for, from a NetLog file (its URL_REQUEST_START_JOB events)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    found = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event.get("type") == start and "url" in params and params.get("initiator") != "not an origin":
            found.append(params["url"])
    return found
