"""Ava Protocol AVS (runbook 000, inventories/ava.yml): the production server ap-prod1 with
Docker containers aggregator-base and operator-base, the aggregators' gRPC endpoints
(mainnet :2206, base :3206, sepolia) over TLS, and the aggregator's storage REPL.

Real parts: ap-prod1 is an sshd (tests/servers_ssh) reached as `ssh ap-prod1` through an
ssh_config with its host key pinned (StrictHostKeyChecking yes, as the inventory asks); the
aggregators are grpcio servers with grpcio's health servicer behind certificates for their
public names (tests/servers_grpc); the storage REPL is tests/servers_commands.ReplServer on
a unix socket; the containers run on a private Docker engine: aggregator-base listens on
:2206 in its own network namespace and operator-base, sharing it, holds a connection to
aggregator-base:2206 (an ESTABLISHED socket its /proc/net/tcp shows); both write the log
lines the runbook greps for (CreateTask, ExecuteTask ... ✅ completed, the cron scheduler).
"""

from __future__ import annotations

import time

from replicas.base import Override, Replica
from tests.servers_commands import ReplServer
from tests.servers_docker import DockerEngineServer
from tests.servers_grpc import GrpcHealthServer
from tests.servers_ssh import SshServer
from tests.servers_tls import Pki

WORKFLOW = "01K336QJWNA3VFE29RR32N75WB"
AGGREGATORS = {  # tls target -> (grpc target or None, public name)
    "aggregator-mainnet": ("aggregator-public", "aggregator.avaprotocol.org"),
    "aggregator-base": ("aggregator-base", "aggregator-base.avaprotocol.org"),
    "aggregator-sepolia": (None, "aggregator-sepolia.avaprotocol.org"),
}


def aggregator_lines(scheduler: bool = True) -> list[str]:
    """aggregator-base's log: workflow creation, task execution, and (when alive) the cron scheduler."""
    lines = [
        "INFO aggregator: starting Ava Protocol aggregator (avs-target=base)",
        "INFO aggregator: gRPC server listening on :2206",
        f"INFO CreateTask workflow={WORKFLOW} trigger=cron('*/15 * * * *')",
        f"INFO ✅ CreateTask workflow={WORKFLOW} completed successfully",
    ]
    if scheduler:
        lines += [
            "INFO cron scheduler started: 3 active workflows",
            f"INFO scheduler: cron trigger fired for workflow={WORKFLOW}",
        ]
    lines += [f"INFO ExecuteTask workflow={WORKFLOW} execution=exec-{i} ✅ completed in {90 + i} ms" for i in range(4)]
    return lines


OPERATOR = [
    "INFO operator: starting operator-base (avs-target=base)",
    "INFO operator: connected to aggregator aggregator-base:2206",
    f"INFO operator: processing task for workflow={WORKFLOW}",
]


class Ava(Replica):
    name = "ava"
    runbook = "000_5c22c6a5c5dbd3d3.txt"
    title = "Ava Protocol AVS (aggregator / operator)"

    def build(self) -> None:
        self.pki = Pki(self.dir / "pki")
        self.grpc: dict[str, GrpcHealthServer] = {}
        for target, (_, public) in AGGREGATORS.items():
            cert = self.pki.issue(target, hosts=(public,))
            chain = self.pki.chain_file(cert, self.pki.intermediate).read_bytes()
            self.grpc[target] = GrpcHealthServer(tls=(cert.key_pem, chain))
        self.ssh = SshServer()
        self.engine = DockerEngineServer()
        self.repl = ReplServer(
            {
                f"t:a:{WORKFLOW}": '{"trigger":{"cron":{"schedule":["*/15 * * * *"]}},"status":"active"}',
                "t:a:01K33A7BRQ4M6Y2V0ZC8XHJ1DE": '{"trigger":{"block":{"interval":100}},"status":"active"}',
                "t:c:01K2ZZ9WF3E5N1QH7T6V4B8YKM": '{"status":"completed"}',
            }
        )
        self.services(self.ssh, self.engine, self.repl, *self.grpc.values())
        self.containers()
        config = self.ssh_config()

        self.trust(self.pki.ca_file)
        self.env.update(
            AVA_HOST_SPEC=f"ssh://root@ap-prod1?ssh_config={config}&timeout=10&controlpersist=0",
            AVA_DOCKER_HOST=self.engine.url,
        )
        for target, (grpc_target, public) in AGGREGATORS.items():
            port = self.grpc[target].port
            why = f"{public} is the public name: the stand-in listens on 127.0.0.1:{port}, its certificate names it"
            self.overrides += [
                Override(f"tls[{target}].host", "127.0.0.1", why),
                Override(f"tls[{target}].port", port, "the seed's port is a literal"),
                Override(f"tls[{target}].server_name", public, "SNI and the name the certificate must carry"),
            ]
            if grpc_target:
                self.overrides += [
                    Override(f"grpc[{grpc_target}].address", f"127.0.0.1:{port}", why),
                    Override(f"grpc[{grpc_target}].server_name", public, "the name the certificate must carry"),
                ]
        self.overrides += [
            Override(
                "hosts[ap-prod1].ports",
                [self.grpc["aggregator-mainnet"].port, self.grpc["aggregator-base"].port],
                "ap-prod1's :2206 and :3206 are the stand-in aggregators' random ports on this machine",
            ),
            Override(
                "hosts[ap-prod1].load_per_core_max",
                1000,
                "ap-prod1 is the machine the replica runs on: its load is whatever else runs there",
            ),
            Override(
                "commands[runner].run[ssh-reachable].argv",
                ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                 "-o", "StrictHostKeyChecking=yes", "ap-prod1", "true"],
                "`ssh ap-prod1` reads the runner's ~/.ssh/config; the replica's ssh_config names ap-prod1",
            ),  # fmt: skip
            Override("commands[storage-repl].socket", self.repl.path, "/tmp/ap.sock is one path per machine"),
        ]

    def ssh_config(self):
        """ap-prod1 as an ssh_config alias of the stand-in sshd, its host key pinned."""
        known = self.dir / "known_hosts"
        with open(f"{self.ssh.dir}/host_key.pub") as f:
            host_key = f.read().strip()
        known.write_text(f"ap-prod1 {host_key}\n")
        config = self.dir / "ssh_config"
        config.write_text(
            "Host ap-prod1\n"
            f"  HostName 127.0.0.1\n  Port {self.ssh.port}\n  User root\n"
            f"  IdentityFile {self.ssh.dir}/client_key\n  IdentitiesOnly yes\n"
            f"  HostKeyAlias ap-prod1\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
            "  LogLevel ERROR\n"
        )
        return config

    # --- the containers ---

    def containers(self, scheduler: bool = True, operator_lines: list[str] | None = None) -> None:
        """aggregator-base (the network namespace, :2206) and operator-base connected to it."""
        from replicas.parts import script

        api = self.engine.client.api
        for name in ("operator-base", "aggregator-base"):
            try:
                api.remove_container(name, force=True)
            except Exception:  # noqa: BLE001 - not there yet
                pass
        self.engine.run(
            "aggregator-base",
            script(aggregator_lines(scheduler), "nc -ll -p 2206 -e cat"),
            hostname="aggregator-base",
            extra_hosts={"aggregator-base": "127.0.0.1"},
        )
        self.engine.wait("aggregator-base", lambda a: a["State"]["Running"], 15, "running")
        time.sleep(0.2)  # the listener is up
        self.engine.run(
            "operator-base",
            script(operator_lines or OPERATOR, "nc aggregator-base 2206 -e sleep 1000000"),
            network_mode="container:aggregator-base",
        )
