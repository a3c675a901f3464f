"""What tests/test_drills_<system>.py share: one replica per module, its healthy daily run,
and its drills, group by group: exactly the listed checks fail, every other check passes.

A latency measured on this busy machine (10 PINGs, one HTTP round trip) can miss
its limit for a reason that is not the drill's: such a check alone failing unexpectedly is
measured again once, in a run of just those checks, before it counts.
"""

import pytest

from replicas import replica_class
from replicas.base import Replica, Run, matches
from tests.servers_docker import unavailable

TIMING = ("test_redis_latency_below_limit", "test_http_latency_below_limit", "test_grpc_health_latency_below_limit")


def verdict(replica: Replica, run: Run, expected: tuple[str, ...]) -> tuple[set[str], list[str]]:
    """(unexpected failures, expected checks that passed), a timing check measured twice."""
    failed = run.failed()
    unexpected = {c for c in failed if not any(matches(p, c) for p in expected)}
    missing = [p for p in expected if not any(matches(p, c) for c in failed)]
    if unexpected and all(c.split("[")[0] in TIMING for c in unexpected):
        ids = [run.checks[c]["id"] for c in sorted(unexpected)]
        again = replica.run("-m", "daily", *ids)
        unexpected = {c for c in unexpected if again.outcomes().get(c) != "passed"}
    return unexpected, missing


def explain(run: Run, checks) -> str:
    """Each check's message: its one line, or for a traceback (an exception opscheck did not
    expect) its last lines too, which say what was raised and where."""
    return "\n".join(f"  {c}: {shown(run.checks[c]['message'])}" for c in sorted(checks))


def shown(message: str) -> str:
    lines = message.splitlines() or [""]
    if len(lines) <= 16:
        return "\n    ".join(line[:300] for line in lines)
    return "\n    ".join([lines[0][:300], "...", *(line[:300] for line in lines[-15:])])


def drill_tests(system: str):
    """The module's fixture and tests for one system (assign them to module globals)."""
    cls = replica_class(system)

    @pytest.fixture(scope="module")
    def replica():
        reason = unavailable()
        if reason:
            pytest.skip(f"no replica of {system}: {reason}")
        with cls() as started:
            yield started

    def test_healthy_replica_passes_daily(replica):
        run = replica.run("-m", "daily")
        failed, _ = verdict(replica, run, ())  # a timing check alone failing is measured again
        assert not failed and (run.rc == 0 or (run.rc == 1 and run.failed())), (
            f"{system} healthy: rc {run.rc}\n{explain(run, failed)}\n{run.output[-3000:]}"
        )
        for d in cls.drills:  # every check a drill names exists in the run (and passed above)
            for pattern in d.fails:
                assert any(matches(pattern, c) for c in run.checks), f"{d.name}: no check {pattern} in the run"

    groups = cls.groups_of()

    @pytest.mark.parametrize("group", sorted(groups), ids=[f"group{g}" for g in sorted(groups)])
    def test_drills_trip_their_checks(replica, group):
        drills = groups[group]
        declared = [p for d in drills for p in d.fails]
        assert len(declared) == len(set(declared)), f"group {group}: two drills claim the same check"
        assert all(d.fails for d in drills), "a drill that trips nothing proves nothing"
        try:
            replica.inject(drills)
            run = replica.run("-m", "daily")
        finally:
            replica.reset(drills)
        unexpected, missing = verdict(replica, run, tuple(declared))
        names = ", ".join(d.name for d in drills)
        assert run.rc == 1, f"{names}: exit {run.rc}\n{run.output[-3000:]}"
        assert not missing, f"{names}: these checks passed, the drill says they fail: {missing}"
        assert not unexpected, f"{names}: these checks failed too:\n{explain(run, unexpected)}"
        odd = [c for c in run.summary["checks"] if c["outcome"] not in ("passed", "failed")]
        odd_shown = [f"{c['id']}: {c['outcome']}: {shown(c['message'])}" for c in odd]
        assert not odd, "an error or skip:\n" + "\n".join(odd_shown)

    return replica, test_healthy_replica_passes_daily, test_drills_trip_their_checks
