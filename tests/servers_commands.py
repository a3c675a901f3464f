"""A unix-socket REPL like Ava's aggregator storage REPL (aggregator/repl.go), for the
commands family: a banner, a `> ` prompt before each line, `list <prefix>*`, `get <key>`,
`exit`, and the write commands (set, rm, gc, backup) that a check must never send. Every
line received is recorded, so a self-test can prove which commands reached the server.
"""

import os
import socket
import tempfile
import threading

from tests.servers import Service

BANNER = "AP CLI REPL\nUse `list <prefix>*` to list key, `get <key>` to inspect content \n-------------------------\n"


class ReplServer(Service):
    """A thread serving the REPL protocol on a socket in /tmp, over an in-memory key store."""

    def __init__(self, keys: dict[str, str]):
        self.keys = dict(keys)
        self.dir = tempfile.mkdtemp(prefix="opscheck-repl-", dir="/tmp")
        self.path = os.path.join(self.dir, "ap.sock")
        self.received: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def start(self) -> None:
        self.sock.bind(self.path)
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("r", newline="\n") as lines:

            def say(text: str) -> None:
                conn.sendall(text.encode())

            try:
                say(BANNER)
                while True:
                    say("> ")
                    line = lines.readline()
                    if not line:
                        say("\nExiting...\n")
                        return
                    line = line.strip()
                    self.received.append(line)
                    verb, _, arg = line.partition(" ")
                    if verb == "exit":
                        say("Exiting...\n")
                        return
                    if verb == "list":
                        prefix = arg.rstrip("*")
                        say("".join(f"{k}\n" for k in sorted(self.keys) if k.startswith(prefix)))
                    elif verb == "get":
                        if arg in self.keys:
                            say(self.keys[arg] + "\n")
                    elif verb in ("rm", "set", "gc", "backup"):
                        say(f"{verb} would change the store\n")
                    else:
                        say(f"Unknown command: {verb}\n")
            except OSError:  # the client went away
                return

    def stop(self) -> None:
        self.sock.close()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)
