"""gRPC health: `grpc.health.v1.Health/Check` answers SERVING, in time.

A gRPC port cannot be judged with curl (HTTP/1.1 against HTTP/2 + protobuf): Ava's
runbook probe `curl -X POST https://aggregator...:2206/health` fails on a healthy
aggregator. Both checks judge the one Check call of the run (fixtures/grpc.py). Domain
`http`: gRPC runs over HTTP/2, so `pytest -m http` includes it; `-k grpc` selects it alone.
"""

import pytest

from opscheck.core.checking import expect, fmt

pytestmark = [pytest.mark.http]

EXPLAINED = {
    "NOT_FOUND": "the server does not know this service name (NOT_FOUND): check `service:`",
    "UNIMPLEMENTED": "the server does not implement grpc.health.v1.Health (UNIMPLEMENTED): "
    "ask its owners which health probe it offers",
}


@pytest.mark.p0
@pytest.mark.smoke
@pytest.mark.daily
@pytest.mark.runbook(
    "The gRPC server is not SERVING (runbook: 'Aggregator down'; operators cannot submit). "
    "NOT_SERVING: the process is up but reports itself unhealthy (a dependency: chain RPC, "
    "storage); UNAVAILABLE or no answer: the process is down, the port is not published, or "
    "TLS fails. Next: `docker logs aggregator-base 2>&1 | tail -200`, "
    "`docker exec aggregator-base netstat -an | grep :2206`, and "
    '`grpcurl -d \'{"service": ""}\' HOST:PORT grpc.health.v1.Health/Check`.'
)
def test_grpc_health_serving(grpc_endpoint, grpc_health):
    answer = grpc_health.check()
    if answer.error is not None:
        code = answer.error.split(":", 1)[0]
        said = EXPLAINED.get(code, f"the call failed: {answer.error}")
        expect(False, f"{grpc_health.shown}: Health/Check: {said}")
    expect(
        answer.status == "SERVING",
        f"{grpc_health.shown}: Health/Check answered {answer.status}, expected SERVING",
    )


@pytest.mark.p2
@pytest.mark.daily
@pytest.mark.runbook(
    "The gRPC health call is slower than its limit: the server is overloaded or its event "
    "loop is blocked (long storage compaction, CPU saturation), or the network path is slow. "
    "Look at the container's CPU (`docker stats --no-stream`) and the server's logs."
)
def test_grpc_health_latency_below_limit(grpc_endpoint, grpc_health):
    answer = grpc_health.check()
    expect(
        answer.latency_ms < grpc_endpoint.max_latency_ms,
        f"{grpc_health.shown}: Health/Check answered in {fmt(answer.latency_ms)} ms "
        f">= limit {fmt(grpc_endpoint.max_latency_ms)} ms",
    )
