"""Thresholds with Kubernetes probe meaning, the remediation phase, and the verdict rules."""

from __future__ import annotations

from pydantic import TypeAdapter

from agent.checks.config import CheckSpec
from agent.checks.probes import Outcome
from agent.checks.state import CheckState, Phase, Step
from agent.checks.verdict import judge
from agent.status import Verdict

SPEC = TypeAdapter(CheckSpec)
OK = Outcome(True)
BAD = Outcome(False, "connect", "Connection refused")


def state(**fields: object) -> CheckState:
    return CheckState(SPEC.validate_python({"name": "c", "kind": "tcp", "port": 25, **fields}))


def feed(s: CheckState, pattern: str, start: float = 0.0) -> list[Step]:
    return [s.feed(OK if c == "S" else BAD, start + i) for i, c in enumerate(pattern)]


def test_unknown_until_a_threshold_is_reached_and_unknown_is_not_unhealthy() -> None:
    s = state(failureThreshold=3)
    feed(s, "SFF")
    assert s.phase is Phase.PASSING  # below the threshold the previous state holds
    assert judge([s])[0] is Verdict.HEALTHY
    assert "2/3 consecutive failures" in judge([s])[1][0]
    assert feed(s, "F") == [Step.ESCALATED]
    assert s.phase is Phase.FAILING and judge([s])[0] is Verdict.UNHEALTHY


def test_a_check_that_never_passed_is_never_judged() -> None:
    s = state(failureThreshold=2, remediation={"command": ["true"]})
    assert set(feed(s, "FFFFFF")) == {Step.NOTHING}  # no remediation, no escalation
    verdict, reasons = judge([s])
    assert verdict is Verdict.UNKNOWN
    assert "6 consecutive failures; not judged before it has passed once" in reasons[0]
    assert feed(s, "SFF") == [Step.NOTHING, Step.NOTHING, Step.REMEDIATE]


def test_flapping_check_never_flips_before_failure_threshold() -> None:
    s = state(failureThreshold=3)
    feed(s, "S")
    assert s.phase is Phase.PASSING
    feed(s, "FFSFFSFSFFS" * 3)
    assert s.phase is Phase.PASSING
    assert judge([s])[0] is Verdict.HEALTHY


def test_success_threshold_holds_failing_until_enough_successes() -> None:
    s = state(failureThreshold=1, successThreshold=3)
    feed(s, "SSSF")
    assert s.phase is Phase.FAILING
    feed(s, "SSFSS")
    assert s.phase is Phase.FAILING  # the failure reset the run of successes
    feed(s, "S")
    assert s.phase is Phase.PASSING


def test_remediation_phase_recovers_or_escalates_after_grace() -> None:
    remediation = {"command": ["true"], "grace": 10}
    s = state(failureThreshold=2, remediation=remediation)
    feed(s, "S")
    assert feed(s, "FF") == [Step.NOTHING, Step.REMEDIATE]
    s.remediating(now=2.0, grace=10, note="ran 'true'")
    assert judge([s])[0] is Verdict.HEALTHY  # remediating is not unhealthy
    assert s.feed(BAD, 5.0) is Step.NOTHING
    assert s.feed(OK, 6.0) is Step.RECOVERED and s.phase is Phase.PASSING

    feed(s, "FF", start=20)
    s.remediating(now=21.0, grace=10, note="ran 'true'")
    assert s.feed(BAD, 30.9) is Step.NOTHING
    assert s.feed(BAD, 31.0) is Step.ESCALATED
    assert judge([s])[0] is Verdict.UNHEALTHY


def test_verdict_combines_checks() -> None:
    passing, unknown, failing = state(), state(), state(failureThreshold=1)
    feed(passing, "S")
    feed(failing, "SF")
    assert judge([passing, unknown])[0] is Verdict.UNKNOWN
    assert judge([passing, failing])[0] is Verdict.UNHEALTHY
    advisory = state(failureThreshold=1, affectsVerdict=False)
    feed(advisory, "SF")
    verdict, reasons = judge([passing, advisory])
    assert verdict is Verdict.HEALTHY
    assert reasons == ["c: connect: Connection refused (failing (does not affect the verdict))"]
    assert judge([])[0] is Verdict.UNKNOWN
