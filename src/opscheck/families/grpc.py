"""gRPC health (grpcio): `grpc.health.v1.Health/Check`, once per target per run.

A gRPC port speaks HTTP/2 with protobuf bodies, so `curl -X POST https://host:2206/health`
cannot judge it (Ava's aggregator: the runbook's probe fails on a healthy server). The
standard health protocol can: one Check call per target, plaintext or TLS (a CA file,
an optional client certificate), with the target's timeout as its deadline. SERVING
passes; a server that answers anything else is reachable and fails on its own merits; a
server that cannot be reached (UNAVAILABLE, or no answer before the deadline) costs one
timeout, and its later checks say "blocked:".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from opscheck.core.cache import TargetReader
from opscheck.core.errors import OpscheckError
from opscheck.core.lazy import optional
from opscheck.core.model import Param, Target
from opscheck.core.redact import clip_line

if TYPE_CHECKING:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
else:
    grpc = optional("grpc", "grpc")
    health_pb2 = optional("grpc_health.v1.health_pb2", "grpc")
    health_pb2_grpc = optional("grpc_health.v1.health_pb2_grpc", "grpc")


class GrpcHealth(Target):
    """A gRPC server asked `grpc.health.v1.Health/Check` for one service."""

    address: str = Field(pattern=r"^[^\s/]+:\d{1,5}$", description="host:port, e.g. aggregator-base:2206")
    service: str = Field(default="", description="the service asked about ('' = the server as a whole)")
    tls: bool = Field(default=False, description="TLS (verified against ca_file, else the system store)")
    ca_file: str | None = Field(default=None, description="CA certificate file (PEM) that signs the server's")
    client_cert: str | None = Field(default=None, description="client certificate file (PEM), for mTLS")
    client_key: str | None = Field(default=None, description="the client certificate's key file (PEM)")
    server_name: str | None = Field(default=None, description="name the certificate must carry (default: the host)")
    max_latency_ms: float = Field(default=1000, gt=0, description="the Check call's round trip")

    @model_validator(mode="after")
    def _tls_settings_need_tls(self):
        given = [n for n in ("ca_file", "client_cert", "client_key", "server_name") if getattr(self, n)]
        if given and not self.tls:
            raise ValueError(f"{given[0]} needs tls: true")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("client_cert and client_key go together")
        return self

    @property
    def shown(self) -> str:
        service = f", service {self.service!r}" if self.service else ""
        return f'grpc "{self.name}" ({self.address}, {"TLS" if self.tls else "plaintext"}{service})'


@dataclass
class HealthAnswer:
    """What Check answered: a serving status, or the gRPC error of a server that answered."""

    latency_ms: float
    status: str | None = None  # SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN
    error: str | None = None  # e.g. NOT_FOUND: unknown service (a reachable server's refusal)


# Channel settings: one attempt, no retries, no reconnect loop within a check.
CHANNEL_OPTIONS = [("grpc.enable_retries", 0), ("grpc.initial_reconnect_backoff_ms", 1000)]


class GrpcHealthClient(TargetReader):
    """One channel per target; Check is called once per run and its answer shared."""

    def __init__(self, target: GrpcHealth, timeout: float):
        super().__init__()
        self.target = target
        self.timeout = timeout
        self._channel: Any = None

    @property
    def shown(self) -> str:
        return self.target.shown

    def check(self) -> HealthAnswer:
        return self.once("check", self._check)

    def _channel_for(self) -> Any:
        if self._channel is None:
            t = self.target
            options: list[tuple[str, Any]] = list(CHANNEL_OPTIONS)
            if not t.tls:
                self._channel = grpc.insecure_channel(t.address, options=options)
            else:
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=self._read(t.ca_file, "ca_file"),
                    private_key=self._read(t.client_key, "client_key"),
                    certificate_chain=self._read(t.client_cert, "client_cert"),
                )
                if t.server_name:
                    options.append(("grpc.ssl_target_name_override", t.server_name))
                self._channel = grpc.secure_channel(t.address, credentials, options=options)
        return self._channel

    def _read(self, path: str | None, field: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise OpscheckError(f"{self.shown}: cannot read {field} {path}: {exc.strerror}") from None

    def _check(self) -> HealthAnswer:
        stub = health_pb2_grpc.HealthStub(self._channel_for())
        request = health_pb2.HealthCheckRequest(service=self.target.service)
        start = time.perf_counter()
        try:
            response = stub.Check(request, timeout=self.timeout, wait_for_ready=False)
        except grpc.RpcError as exc:
            latency = (time.perf_counter() - start) * 1000
            code, details = exc.code(), clip_line(exc.details() or "", 400)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                with self.lock:
                    self.unreachable.fail(
                        f"{self.shown}: no answer within the deadline {self.timeout:g} s (DEADLINE_EXCEEDED)"
                    )
            if code == grpc.StatusCode.UNAVAILABLE:
                with self.lock:
                    self.unreachable.fail(f"{self.shown}: cannot reach the server (UNAVAILABLE): {details}")
            return HealthAnswer(latency, error=f"{code.name}: {details}")
        latency = (time.perf_counter() - start) * 1000
        return HealthAnswer(latency, status=health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


SECTION = list[GrpcHealth]  # the inventory's `grpc:` section


def parameters(inventory) -> dict[str, list[Param]]:
    """Check arguments of the grpc family: one row per target."""
    return {"grpc_endpoint": [Param(t, t.name, t) for t in inventory.grpc]}
