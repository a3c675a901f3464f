"""A JSON-RPC 2.0 chain node on loopback for the comparisons self-tests: `eth_blockNumber`
answers the head of the chain its path names, as a hex quantity, like an Ethereum RPC
provider; `eth_getBlockByNumber` ["latest", false] answers that head block with its
timestamp (now, or `block_age_s` ago); a rate-limited chain answers the provider's error object."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers import Service, send_json


class JsonRpcChains(Service):
    """POST /<chain> with {"jsonrpc": "2.0", "method": "eth_blockNumber", "id": N}."""

    def __init__(self, heads: dict[str, int], rate_limited: tuple[str, ...] = ()):
        self.heads = heads
        self.rate_limited = rate_limited
        self.block_age_s: dict[str, int] = {}  # chain -> how old its latest block is (default 0)
        self.calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                server.calls += 1
                chain = self.path.strip("/")
                try:
                    request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                except ValueError:
                    return self._send(
                        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
                    )
                answer = {"jsonrpc": "2.0", "id": request.get("id")}
                if chain in server.rate_limited:
                    answer["error"] = {"code": -32005, "message": "rate limit exceeded"}
                elif request.get("method") not in ("eth_blockNumber", "eth_getBlockByNumber"):
                    answer["error"] = {"code": -32601, "message": "method not found"}
                elif chain not in server.heads:
                    return self._send({"error": "unknown chain"}, status=404)
                elif request["method"] == "eth_getBlockByNumber":
                    stamp = int(time.time()) - server.block_age_s.get(chain, 0)
                    answer["result"] = {"number": hex(server.heads[chain]), "timestamp": hex(stamp)}
                else:
                    answer["result"] = hex(server.heads[chain])
                self._send(answer)

            def _send(self, body: dict, status: int = 200):
                send_json(self, status, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, chain: str) -> str:
        return f"http://127.0.0.1:{self.port}/{chain}"
