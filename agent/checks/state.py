"""The per-check state machine: Kubernetes probe thresholds plus the remediation phase. Pure.

Like the kubelet's prober, a result flips the state only after ``failureThreshold``
consecutive failures or ``successThreshold`` consecutive successes; until then the previous
state holds. The state starts UNKNOWN (never unhealthy). Crossing the failure threshold asks
for a remediation when the check has one; the check is then REMEDIATING for ``grace``
seconds and turns FAILING (the only state that makes the verdict unhealthy) only if it has not
passed again by then, or at once when no remediation may run.

A check is judged only once it has been PASSING (since the agent started, or since it was
released after an escalation): the agent asserts "unhealthy" only about a mailserver it has
seen healthy, so a mailserver still starting up (or never configured right) stays UNKNOWN —
reported, measured, but never remediated or restarted on the agent's word. Whether a server
ever starts is the kubelet's startupProbe's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from agent.checks.config import CheckBase
from agent.checks.probes import Outcome


class Phase(StrEnum):
    UNKNOWN = "unknown"
    PASSING = "passing"
    REMEDIATING = "remediating"
    FAILING = "failing"


class Step(StrEnum):
    """What the runner must do after feeding a result."""

    NOTHING = "nothing"
    REMEDIATE = "remediate"  # threshold crossed and the check has a remediation
    RECOVERED = "recovered"  # passing again after REMEDIATING: the remediation helped
    ESCALATED = "escalated"  # now FAILING


@dataclass(slots=True)
class CheckState:
    spec: CheckBase
    phase: Phase = Phase.UNKNOWN
    successes: int = 0  # consecutive
    failures: int = 0  # consecutive
    last: Outcome | None = None
    last_checked: float | None = None  # monotonic, the clock of ``now`` (deadlines)
    last_success: float | None = None  # monotonic
    checked_at: float | None = None  # wall clock (unix time), for people
    succeeded_at: float | None = None  # wall clock
    remediation_deadline: float | None = None
    remediation_note: str = ""
    failing_since: float | None = None
    paused: str = ""  # set by release(), cleared by the next result
    armed: bool = False  # has been PASSING since the start or the last release
    history: list[str] = field(default_factory=list)  # phase changes, newest last (bounded)

    def _enter(self, phase: Phase, now: float, why: str) -> None:
        self.phase = phase
        self.history.append(f"{now:.3f} {phase.value}: {why}")
        del self.history[:-10]

    def feed(self, outcome: Outcome, now: float, wall: float | None = None) -> Step:
        """``now``: a monotonic clock (grace deadlines); ``wall``: unix time, for display."""
        self.last, self.last_checked, self.checked_at = outcome, now, wall
        self.paused = ""
        if outcome.ok:
            self.last_success, self.succeeded_at = now, wall
            self.successes, self.failures = self.successes + 1, 0
            return self._on_success(now)
        self.failures, self.successes = self.failures + 1, 0
        return self._on_failure(now)

    def _on_success(self, now: float) -> Step:
        if self.phase is Phase.PASSING or self.successes < self.spec.success_threshold:
            return Step.NOTHING
        was = self.phase
        self.remediation_deadline = None
        self.armed = True
        self._enter(Phase.PASSING, now, f"{self.successes} consecutive successes")
        return Step.RECOVERED if was is Phase.REMEDIATING else Step.NOTHING

    def _on_failure(self, now: float) -> Step:
        if self.phase is Phase.FAILING:
            return Step.NOTHING
        if self.phase is Phase.REMEDIATING:
            deadline = self.remediation_deadline
            if deadline is not None and now >= deadline:
                return self.escalate(now, "still failing after the remediation's grace period")
            return Step.NOTHING
        if self.failures < self.spec.failure_threshold or not self.armed:
            return Step.NOTHING
        if self.spec.remediation is not None:
            return Step.REMEDIATE
        return self.escalate(now, f"{self.failures} consecutive failures")

    def remediating(self, now: float, grace: float, note: str) -> None:
        """The remediation ran (or another check's identical one did): wait ``grace``."""
        self.remediation_deadline = now + grace
        self.remediation_note = note
        self._enter(Phase.REMEDIATING, now, note)

    def escalate(self, now: float, why: str) -> Step:
        self.remediation_deadline = None
        self.failing_since = now
        self._enter(Phase.FAILING, now, why)
        return Step.ESCALATED

    def release(self, now: float, why: str) -> None:
        """Back to UNKNOWN with fresh counters (see config.Escalation)."""
        self.failing_since = self.remediation_deadline = None
        self.successes = self.failures = 0
        self.armed = False
        self.paused = why
        self._enter(Phase.UNKNOWN, now, why)
