"""The agentauri replica (replicas/agentauri.py): healthy, every daily check passes; each drill of its
runbook trips exactly the checks docs/drills.md lists, and the others still pass."""

import pytest

from tests.replica_drills import drill_tests

# one replica for the module (a few seconds), then one suite run per drill group
pytestmark = pytest.mark.timeout(300)

replica, test_healthy_replica_passes_daily, test_drills_trip_their_checks = drill_tests("agentauri")
