"""Ava Protocol AVS (runbook 000, inventories/ava.yml): the production server ap-prod1 with
Docker containers aggregator-base and operator-base, the aggregators' gRPC endpoints
(mainnet :2206, base :3206, sepolia) over TLS, and the aggregator's storage REPL.

Real parts: ap-prod1 is an sshd (tests/servers_ssh) reached as `ssh ap-prod1` through an
ssh_config with its host key pinned (StrictHostKeyChecking yes, as the inventory asks); its
own log lines (an operator's login among them) are written to a journal of ssh.service
before each run (systemd-journal-remote: this machine has no journald). The aggregators are
grpcio servers with grpcio's health servicer behind certificates for their public names
(tests/servers_grpc); the API explorers and telemetry pages are one nginx (replicas/parts.Front),
a site per public name with a certificate from the replica's CA, answering their paths
(/telemetry, the explorer's /) and 404 elsewhere; the storage REPL is
tests/servers_commands.ReplServer on a unix socket; the containers run on a private Docker
engine: aggregator-base listens on :2206 in its own network namespace and operator-base,
sharing it, holds a connection to aggregator-base:2206 (an ESTABLISHED socket its
/proc/net/tcp shows); both write the log lines the runbook greps for (CreateTask,
ExecuteTask ... ✅ completed, the cron scheduler, memory warnings when short of it).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from replicas.base import SEEDS, Drill, Replica
from replicas.parts import Front, FrontSite, reload
from tests.servers_commands import ReplServer
from tests.servers_docker import DockerEngineServer
from tests.servers_grpc import NOT_SERVING, SERVING, GrpcHealthServer
from tests.servers_ssh import SshServer
from tests.servers_tls import Pki

WORKFLOW = "01K336QJWNA3VFE29RR32N75WB"
AGGREGATORS = {  # tls target -> (grpc target or None, public name)
    "aggregator-mainnet": ("aggregator-public", "aggregator.avaprotocol.org"),
    "aggregator-base": ("aggregator-base", "aggregator-base.avaprotocol.org"),
    "aggregator-sepolia": (None, "aggregator-sepolia.avaprotocol.org"),
}
PAGES = {  # http target -> (variable, public name, path it answers)
    "api-explorer-mainnet": ("AVA_MAINNET_API_EXPLORER_URL", "api-explorer.avaprotocol.org", "/"),
    "api-explorer-sepolia": ("AVA_SEPOLIA_API_EXPLORER_URL", "api-explorer-sepolia.avaprotocol.org", "/"),
    "telemetry-mainnet": ("AVA_MAINNET_TELEMETRY_URL", "aggregator.avaprotocol.org", "/telemetry"),
    "telemetry-sepolia": ("AVA_SEPOLIA_TELEMETRY_URL", "aggregator-sepolia.avaprotocol.org", "/telemetry"),
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


def page_locations(target: str, answer: str = "") -> str:
    """nginx locations of a page: the explorer's / or the aggregator's /telemetry answers, 404 elsewhere."""
    path = PAGES[target][2]
    title = "Aggregator telemetry" if path == "/telemetry" else "Ava Protocol API Explorer"
    answer = answer or f'default_type text/html; return 200 "<!doctype html><title>{title}</title>\\n";'
    return f'location = {path} {{ {answer} }}\n  location / {{ return 404 "not found\\n"; }}'


def _adapted() -> dict[str, str]:
    """The fields no variable reaches: the names certificates must carry, literal ports, the ssh config."""
    found = {}
    for target, (grpc_target, public) in AGGREGATORS.items():
        found[f"tls[{target}].server_name"] = (
            f"the host variable is the stand-in's 127.0.0.1: SNI and the name the certificate must carry stay {public}"
        )
        if grpc_target:
            found[f"grpc[{grpc_target}].server_name"] = (
                f"the address variables are the stand-in's 127.0.0.1:<port>: the certificate's name stays {public}"
            )
    found["hosts[ap-prod1].ports"] = "ap-prod1's :2206 and :3206 are the stand-in aggregators' random ports here"
    found["hosts[ap-prod1].load_per_core_max"] = (
        "ap-prod1 is the machine the replica runs on: its load is not the system's"
    )
    found["logs[ap-prod1-sshd].journal_dir"] = (
        "ap-prod1 is the machine the replica runs on, which has no journald: the stand-in sshd's own log lines"
        " are written to a journal of ssh.service in a temp dir (journalctl -D)"
    )
    found["commands[ap-prod1].run[sshd-hardening].argv"] = (
        "ap-prod1 is the machine the replica runs on: `sshd -T` reads its /etc/ssh; `-f` names the stand-in's config"
    )
    found["commands[runner].run[ssh-reachable].argv"] = (
        "`ssh ap-prod1` reads the runner's own ~/.ssh/config: `-F` names the replica's, where ap-prod1 is its sshd"
    )
    return found


OPERATOR = [
    "INFO operator: starting operator-base (avs-target=base)",
    "INFO operator: connected to aggregator aggregator-base:2206",
    f"INFO operator: processing task for workflow={WORKFLOW}",
]


class Ava(Replica):
    name = "ava"
    runbook = "000_5c22c6a5c5dbd3d3.txt"
    title = "Ava Protocol AVS (aggregator / operator)"
    adapted = _adapted()

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
        self.pages = Front({target: self.page(target) for target in PAGES})
        self.services(self.ssh, self.engine, self.repl, self.pages, *self.grpc.values())
        self.containers()
        config = self.ssh_config()
        (self.dir / "sdk-examples").mkdir()  # examineWorkflow's folder (an adhoc check: not run daily)
        docs = self.dir / "ava-docs"  # the troubleshooting docs gitleaks scans (a weekly check)
        docs.mkdir()
        runbook = SEEDS / self.runbook
        (docs / "production-troubleshooting.md").write_text(runbook.read_text() if runbook.exists() else "# guide\n")

        self.trust(self.pki.ca_file)
        self.env.update(
            AVA_HOST_SPEC=f"ssh://root@ap-prod1?ssh_config={config}&timeout=10&controlpersist=0",
            AVA_SSH_DESTINATION="ap-prod1",  # an alias of the replica's ssh_config (see the argv override)
            AVA_DOCKER_HOST=self.engine.url,
            AVA_SSHD_UNIT="ssh.service",  # the unit of the journal entries sync_journal() writes
            AVA_STORAGE_SOCKET=str(self.repl.path),
            AVA_SDK_EXAMPLES=str(self.dir / "sdk-examples"),
            AVA_DOCS_DIR=str(docs),
        )
        for target, (grpc_target, public) in AGGREGATORS.items():
            self.point(target)
            self.adapt(f"tls[{target}].server_name", public)
            if grpc_target:
                self.adapt(f"grpc[{grpc_target}].server_name", public)
        for target, (variable, _, path) in PAGES.items():
            self.env[variable] = f"https://127.0.0.1:{self.pages.sites[target].port}{path}"
        self.adapt("hosts[ap-prod1].ports", [self.grpc["aggregator-mainnet"].port, self.grpc["aggregator-base"].port])
        self.adapt("hosts[ap-prod1].load_per_core_max", 1000)
        self.journal: list[tuple[int, str]] = []  # (microseconds, line) of the stand-in sshd's log
        # an operator's `ssh ap-prod1` before the first run: its login is in the journal the suite reads
        subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "ap-prod1", "true"], check=True, timeout=20)
        (self.dir / "journal").mkdir()
        self.adapt("logs[ap-prod1-sshd].journal_dir", str(self.dir / "journal"))
        self.adapt("commands[ap-prod1].run[sshd-hardening].argv", ["sshd", "-T", "-f", f"{self.ssh.dir}/sshd_config"])
        self.adapt(
            "commands[runner].run[ssh-reachable].argv",
            [
                "ssh",
                "-F",
                str(config),
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "StrictHostKeyChecking=yes",
                "ap-prod1",
                "true",
            ],
        )

    def point(self, target: str) -> None:
        """AVA_<NET>_AGGREGATOR_HOST/PORT at the stand-in aggregator (grpc and tls read the same pair)."""
        net = target.removeprefix("aggregator-").upper()
        self.env[f"AVA_{net}_AGGREGATOR_HOST"] = "127.0.0.1"
        self.env[f"AVA_{net}_AGGREGATOR_PORT"] = str(self.grpc[target].port)

    def page(self, target: str) -> FrontSite:
        """One public name's site (a certificate for it from the replica's CA, on a random port)."""
        public = PAGES[target][1]
        cert = self.pki.issue(target, hosts=(public, "localhost", "127.0.0.1"))
        chain = self.pki.chain_file(cert, self.pki.intermediate)
        return FrontSite(chain, cert.key_path, locations=page_locations(target))

    def run(self, *args, **kwargs):
        """The suite run, ap-prod1's ssh.service journal first brought up to the sshd's log."""
        self.sync_journal()
        return super().run(*args, **kwargs)

    def sync_journal(self) -> None:
        """The sshd's new log lines (its logins) as journal entries of ssh.service, stamped now.

        The journal file is written again whole by systemd-journal-remote (export format in).
        """
        lines = [line for line in Path(self.ssh.dir, "log").read_text().splitlines() if line.strip()]
        now = int(time.time() * 1e6)
        self.journal += [(now, line) for line in lines[len(self.journal) :]]
        export = []
        for i, (stamp, line) in enumerate(self.journal):
            export += [
                f"__CURSOR=s=ava-replica;i={i}",
                f"__REALTIME_TIMESTAMP={stamp}",
                f"__MONOTONIC_TIMESTAMP={1000 + i}",
                "_BOOT_ID=0123456789abcdef0123456789abcdef",
                f"_SYSTEMD_UNIT={self.env['AVA_SSHD_UNIT']}",
                "_HOSTNAME=ap-prod1",
                "SYSLOG_IDENTIFIER=sshd",
                "PRIORITY=6",
                f"MESSAGE={line}",
                "",
            ]
        journal = self.dir / "journal"
        (journal / "export").write_text("\n".join(export) + "\n")
        (journal / "ssh.journal").unlink(missing_ok=True)
        subprocess.run(
            ["/lib/systemd/systemd-journal-remote", f"--output={journal}/ssh.journal", str(journal / "export")],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def swap_sepolia(self, days: float) -> None:
        """aggregator-sepolia restarted with a certificate valid `days` (a new port: its variable follows)."""
        public = AGGREGATORS["aggregator-sepolia"][1]
        cert = self.pki.issue(f"aggregator-sepolia-{days}", hosts=(public,), days=days)
        chain = self.pki.chain_file(cert, self.pki.intermediate).read_bytes()
        old = self.grpc["aggregator-sepolia"]
        self.grpc["aggregator-sepolia"] = GrpcHealthServer(tls=(cert.key_pem, chain))
        self.services(self.grpc["aggregator-sepolia"])
        old.stop()
        self.point("aggregator-sepolia")

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
            with contextlib.suppress(Exception):  # not there yet
                api.remove_container(name, force=True)
        self.engine.run(
            "aggregator-base",
            script(aggregator_lines(scheduler), "sh -c 'nc -ll -p 2206 -e cat & exec sleep 1000000'"),
            hostname="aggregator-base",
            extra_hosts={"aggregator-base": "127.0.0.1"},
            mem_limit="64m",
            shm_size="64m",
        )
        self.engine.wait("aggregator-base", lambda a: a["State"]["Running"], 15, "running")
        time.sleep(0.2)  # the listener is up
        self.engine.run(
            "operator-base",
            script(operator_lines or OPERATOR, "sh -c 'nc aggregator-base 2206 -e sleep 1000000 & exec sleep 1000000'"),
            network_mode="container:aggregator-base",
        )


# --- drills: the runbook's troubleshooting scenarios ----------------------------------------


def _operator_cut(r: Ava) -> None:
    """The aggregator's :2206 stops accepting: the operator's connection drops, it retries."""
    r.engine.client.containers.get("aggregator-base").exec_run(["killall", "nc", "cat"])
    lines = [
        "ERROR operator: connection to aggregator aggregator-base:2206 lost: connection reset by peer (disconnect)"
    ]
    lines += [
        f"WARN operator: reconnect attempt {n} to aggregator-base:2206 failed: connection refused" for n in range(1, 6)
    ]
    log_to(r, "operator-base", lines)


def log_to(r: Ava, container: str, lines: list[str]) -> None:
    import shlex

    command = "".join(f"printf '%s\\n' {shlex.quote(line)} > /proc/1/fd/1; " for line in lines)
    result = r.engine.client.containers.get(container).exec_run(["sh", "-c", command])
    if result.exit_code != 0:
        raise RuntimeError(f"{container}: cannot write its log: {result.output!r}")


def _containers_back(r: Ava) -> None:
    r.containers()


def _aggregator_not_serving(r: Ava) -> None:
    r.grpc["aggregator-mainnet"].set("", NOT_SERVING)


def _aggregator_serving(r: Ava) -> None:
    r.grpc["aggregator-mainnet"].set("", SERVING)


def _storage_empty(r: Ava) -> None:
    r.saved_keys = dict(r.repl.keys)
    r.repl.keys = {k: v for k, v in r.repl.keys.items() if not k.startswith("t:a:")}


def _storage_back(r: Ava) -> None:
    r.repl.keys = r.saved_keys


def _sepolia_expiring(r: Ava) -> None:
    """aggregator-sepolia's certificate expires in 10 days (a restart with the renewed one is due)."""
    r.swap_sepolia(days=10)


def _sepolia_renewed(r: Ava) -> None:
    r.swap_sepolia(days=90)


def _tasks_stuck(r: Ava) -> None:
    log_to(
        r,
        "aggregator-base",
        [f"INFO ExecuteTask workflow={WORKFLOW} execution=exec-{n} still running after 300s" for n in range(10, 16)],
    )


def _scheduler_silent(r: Ava) -> None:
    r.containers(scheduler=False)


def _aggregator_panic(r: Ava) -> None:
    log_to(
        r,
        "aggregator-base",
        [
            "panic: runtime error: invalid memory address or nil pointer dereference",
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x10c4b2a]",
            *[f"ERROR aggregator: task {WORKFLOW} exec-{n}: RPC call failed: exception in handler" for n in range(11)],
        ],
    )


def _memory_full(r: Ava) -> None:
    """62 MB held in aggregator-base's tmpfs: 92 % of its 64 MiB limit, and it cannot be reclaimed."""
    r.engine.client.containers.get("aggregator-base").exec_run(
        ["sh", "-c", "head -c 62000000 /dev/zero > /dev/shm/hold"]
    )


def _memory_warned(r: Ava) -> None:
    """As _memory_full, and the aggregator warns about it (what `grep -i memory` in its log finds)."""
    _memory_full(r)
    log_to(r, "aggregator-base", ["WARN aggregator: memory usage 59 MiB of 64 MiB limit (92%), task queue throttled"])


def _operator_churn(r: Ava) -> None:
    """operator-base's stream to the aggregator drops and is re-established 8 times in the hour."""
    lines = []
    for n in range(1, 9):
        lines += [
            "WARN operator: connection closed by aggregator aggregator-base:2206 (stream reset)",
            f"INFO operator: connecting to aggregator aggregator-base:2206 (attempt {n})",
            "INFO operator: connected to aggregator aggregator-base:2206",
        ]
    log_to(r, "operator-base", lines)


def _telemetry_down(r: Ava) -> None:
    """The mainnet telemetry page answers 502: nginx up, the aggregator's telemetry behind it gone."""
    r.pages.sites["telemetry-mainnet"].locations = page_locations(
        "telemetry-mainnet", 'return 502 "502 Bad Gateway\\n";'
    )
    reload(r.pages)


def _telemetry_back(r: Ava) -> None:
    r.pages.sites["telemetry-mainnet"].locations = page_locations("telemetry-mainnet")
    reload(r.pages)


def _host_key_changed(r: Ava) -> None:
    known = r.dir / "known_hosts"
    r.saved_known = known.read_text()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(r.dir / "other_key")], check=True)
    known.write_text(f"ap-prod1 {(r.dir / 'other_key.pub').read_text().strip()}\n")


def _host_key_back(r: Ava) -> None:
    (r.dir / "known_hosts").write_text(r.saved_known)
    for name in ("other_key", "other_key.pub"):
        (r.dir / name).unlink(missing_ok=True)


Ava.drills = [
    Drill(
        "operator-cannot-reach-aggregator",
        "Workflow Failed to Trigger > Operator-Aggregator Connection Issues",
        "aggregator-base stops accepting on :2206; operator-base logs the disconnect and 5 reconnect attempts",
        (
            "test_command_output[aggregator-base:operator-connected]",
            "test_container_port_listening[ap-prod1-docker:aggregator-base:2206]",
            "test_container_reaches[ap-prod1-docker:operator-base->aggregator-base:2206]",
            "test_log_forbidden_pattern_absent[operator-base:disconnect]",
            "test_log_forbidden_pattern_absent[operator-base:reconnects]",
            "test_log_error_rate_below_limit[operator-base:errors]",
        ),
        _operator_cut,
        _containers_back,
        group=0,
    ),
    Drill(
        "aggregator-not-serving",
        "Connection and Communication Issues > Test aggregator endpoint",
        "the mainnet aggregator's gRPC health answers NOT_SERVING",
        ("test_grpc_health_serving[aggregator-public]",),
        _aggregator_not_serving,
        _aggregator_serving,
        group=0,
    ),
    Drill(
        "storage-no-active-workflows",
        "Database and Storage Issues > Check Storage Health",
        "the storage REPL lists no t:a:* key",
        ("test_command_output[storage-repl:active-workflows]",),
        _storage_empty,
        _storage_back,
        group=0,
    ),
    Drill(
        "testnet-certificate-expiring",
        "Network Endpoints (aggregator-sepolia.avaprotocol.org:2206)",
        "aggregator-sepolia serves a certificate that expires in 10 days",
        (
            "test_tls_certificates_expiry_warning[aggregator-sepolia]",
            "test_tls_certificates_expiry_critical[aggregator-sepolia]",
        ),
        _sepolia_expiring,
        _sepolia_renewed,
        group=0,
    ),
    Drill(
        "tasks-not-completing",
        "Preventive Monitoring > Log Monitoring (ExecuteTask / completed)",
        "6 ExecuteTask lines without a completion",
        ("test_log_ratio_within_limit[aggregator-base:tasks_completed]",),
        _tasks_stuck,
        _containers_back,
        group=0,
    ),
    Drill(
        "cron-scheduler-silent",
        "Workflow Failed to Trigger > Cron Scheduler Not Running",
        "aggregator-base restarted and logs no scheduler activity",
        ("test_log_required_pattern_present[aggregator-base:scheduler_active]",),
        _scheduler_silent,
        _containers_back,
        group=1,
    ),
    Drill(
        "aggregator-panic",
        "Log Analysis > Pattern Matching (error|fail|exception)",
        "aggregator-base logs a Go panic and 11 failed RPC calls",
        (
            "test_log_forbidden_pattern_absent[aggregator-base:panic]",
            "test_log_error_rate_below_limit[aggregator-base:errors]",
        ),
        _aggregator_panic,
        _containers_back,
        group=1,
    ),
    Drill(
        "resource-exhaustion",
        "Workflow Failed to Trigger > Resource Exhaustion",
        "aggregator-base holds 92 % of its 64 MiB memory limit and logs a memory warning",
        (
            "test_container_memory_below_limit[ap-prod1-docker:aggregator-base]",
            "test_log_forbidden_pattern_absent[aggregator-base:resource_warnings]",
        ),
        _memory_warned,
        _containers_back,
        group=1,
    ),
    Drill(
        "operator-connect-churn",
        "Performance Monitoring > Connection Health (docker logs operator-base | grep -i connect)",
        "operator-base's connection drops and is re-established 8 times in the hour",
        ("test_log_forbidden_pattern_absent[operator-base:connect_attempts]",),
        _operator_churn,
        _containers_back,
        group=1,
    ),
    Drill(
        "telemetry-page-down",
        "Production Infrastructure > Network Endpoints (Telemetry)",
        "the mainnet telemetry page answers 502 Bad Gateway",
        ("test_http_status[telemetry-mainnet]",),
        _telemetry_down,
        _telemetry_back,
        group=1,
    ),
    Drill(
        "host-key-changed",
        "Production Servers (ssh ap-prod1)",
        "ap-prod1 answers with a host key other than the pinned one",
        (
            "test_command_exit_code[runner:ssh-reachable]",
            "test_log_window_complete[ap-prod1-sshd]",
            "test_filesystem_usage_below_warning[ap-prod1]",
            "test_filesystem_usage_below_critical[ap-prod1]",
            "test_inode_usage_below_warning[ap-prod1]",
            "test_inode_usage_below_critical[ap-prod1]",
            "test_memory_available[ap-prod1]",
            "test_load_per_core_below_limit[ap-prod1]",
            "test_process_running[ap-prod1:dockerd]",
            "test_port_listening[ap-prod1:*]",
            "test_command_exit_code[storage-repl:active-workflows]",
            "test_command_output[storage-repl:active-workflows]",
        ),
        _host_key_changed,
        _host_key_back,
        group=1,
    ),
]
