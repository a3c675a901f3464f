"""A real grpcio server on loopback with grpcio's own health servicer, for the grpc family.

Plaintext or TLS (a certificate from tests/servers_tls.Pki, optionally requiring a client
certificate), with or without the health service, optionally slow; `set(service, status)`
switches what Check answers while the server runs.
"""

import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.servers import Service

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class SlowHealth(health.HealthServicer):
    """grpcio's servicer, answering after a delay (a loaded server)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def Check(self, request, context):  # noqa: N802 - the gRPC method's name
        time.sleep(self.delay)
        return super().Check(request, context)


class GrpcHealthServer(Service):
    """grpc.server on 127.0.0.1 (random port); services start SERVING."""

    def __init__(
        self,
        services: tuple[str, ...] = ("",),
        tls: tuple[bytes, bytes] | None = None,  # (key PEM, certificate chain PEM)
        client_ca: bytes | None = None,  # require a client certificate signed by it
        with_health: bool = True,
        delay: float = 0.0,
    ):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.health = SlowHealth(delay) if delay else health.HealthServicer()
        if with_health:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
            for service in services:
                self.health.set(service, SERVING)
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials(
                [tls], root_certificates=client_ca, require_client_auth=client_ca is not None
            )
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, service: str, status) -> None:
        self.health.set(service, status)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)
