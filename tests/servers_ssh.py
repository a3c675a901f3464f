"""A real sshd on a random loopback port, with a throw-away host key and client key.

Lets the host family be tested over ssh:// exactly as a user's fleet is reached.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from tests.servers import Service, free_port


class SshServer(Service):
    """sshd -D on 127.0.0.1 that lets root in with a generated key (and nothing else)."""

    def __init__(self, extra_config: str = ""):
        self.extra_config = extra_config  # more sshd_config lines (SetEnv DOCKER_HOST=...)
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="opscheck-ssh-", dir="/tmp")
        self.proc: subprocess.Popen | None = None

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def start(self) -> None:
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(sshd):
            raise RuntimeError("sshd not found (apt-get install openssh-server)")
        for key in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self._path(key)], check=True, timeout=30
            )
        shutil.copy(self._path("client_key.pub"), self._path("authorized_keys"))
        with open(self._path("sshd_config"), "w") as f:
            f.write(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self._path("host_key")}
PidFile {self._path("sshd.pid")}
AuthorizedKeysFile {self._path("authorized_keys")}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
{self.extra_config}
""")
        with open(self._path("ssh_config"), "w") as f:
            f.write(f"""Host *
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  IdentityFile {self._path("client_key")}
  IdentitiesOnly yes
""")
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
        with open(self._path("log"), "w") as log:  # sshd keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", self._path("sshd_config")], stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        with open(self._path("log")) as log:
            raise RuntimeError(f"sshd did not start: {log.read()}")

    def spec(self, port: int | None = None) -> str:
        """The testinfra host spec a user would write in the inventory."""
        return (
            f"ssh://root@127.0.0.1:{port or self.port}?ssh_config={self._path('ssh_config')}&timeout=3&controlpersist=0"
        )

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
