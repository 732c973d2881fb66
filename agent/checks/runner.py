"""One supervised component per check: probe on schedule, apply thresholds, remediate, publish.

Each check has its own task, so a slow or hanging check delays nobody; attempts start every
``interval`` seconds (measured start to start, like periodSeconds) and never overlap.
"""

from __future__ import annotations

import asyncio
import time

from agent.checks.config import CheckBase, CheckSpec, Escalation
from agent.checks.metrics import (
    CHECK_CERT_NOT_AFTER,
    CHECK_DURATION,
    CHECK_FAILING,
    CHECK_FAILURES,
    CHECK_LAST_SUCCESS,
    CHECK_SUCCESS,
)
from agent.checks.probes import Outcome, ProbeEnv, run_probe
from agent.checks.remediation import Remediator, Result
from agent.checks.state import CheckState, Phase, Step
from agent.checks.verdict import Board


def record_metrics(spec: CheckBase, outcome: Outcome) -> None:
    name = spec.name
    CHECK_SUCCESS.labels(name).set(1 if outcome.ok else 0)
    CHECK_DURATION.labels(name).observe(outcome.duration)
    if outcome.ok:
        CHECK_LAST_SUCCESS.labels(name).set(time.time())
    else:
        CHECK_FAILURES.labels(name, outcome.reason or "unknown").inc()
    if outcome.cert_not_after is not None:
        CHECK_CERT_NOT_AFTER.labels(name).set(outcome.cert_not_after)


class CheckRunner:
    def __init__(
        self,
        spec: CheckSpec,
        state: CheckState,
        board: Board,
        env: ProbeEnv,
        remediator: Remediator,
        escalation: Escalation,
        stagger: float = 0.0,
    ) -> None:
        self.name = f"check-{spec.name}"
        self.spec = spec
        self.state = state
        self.board = board
        self.env = env
        self.remediator = remediator
        self.escalation = escalation
        self.stagger = stagger  # 0..1: this check's share of the interval, see run()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.spec.initial_delay:
            await asyncio.sleep(self.spec.initial_delay)
        # Every check answers at once at start; after that the checks are spread over the
        # interval, so their TLS handshakes and process spawns do not all land on the loop in
        # the same instant (a burst that shows up as latency of /healthz and /metrics).
        delay_once = self.spec.interval * self.stagger
        while True:
            started = loop.time()
            await self.once()
            if self._held_long_enough(loop.time()):
                await self._release()
                continue
            next_start = started + self.spec.interval + delay_once
            delay_once = 0.0
            await asyncio.sleep(max(0.0, next_start - loop.time()))

    def _held_long_enough(self, now: float) -> bool:
        since = self.state.failing_since
        return since is not None and now - since >= self.escalation.hold

    async def _release(self) -> None:
        grace = self.escalation.restart_grace
        why = f"unhealthy held {self.escalation.hold:g}s; pausing {grace:g}s for a restart"
        self.state.release(asyncio.get_running_loop().time(), why)
        CHECK_FAILING.labels(self.spec.name).set(0)
        self.board.publish()
        await asyncio.sleep(grace)

    async def once(self) -> None:
        """One attempt and everything that follows from it."""
        outcome = await run_probe(self.spec, self.env)
        record_metrics(self.spec, outcome)
        was = self.state.phase
        step = self.state.feed(outcome, asyncio.get_running_loop().time(), time.time())
        self.board.publish()
        if step is Step.REMEDIATE:
            await self._remediate()
        elif step is Step.RECOVERED:
            self.remediator.outcome(self.spec.name, helped=True)
        elif step is Step.ESCALATED and was is Phase.REMEDIATING:
            self.remediator.outcome(self.spec.name, helped=False)
        CHECK_FAILING.labels(self.spec.name).set(1 if self.state.phase is Phase.FAILING else 0)
        self.board.publish()

    async def _remediate(self) -> None:
        remediation = self.spec.remediation
        assert remediation is not None  # Step.REMEDIATE is only given to checks with one
        result, note = await self.remediator.run(self.spec.name, remediation)
        now = asyncio.get_running_loop().time()
        if result in (Result.RAN, Result.JOINED):
            self.state.remediating(now, remediation.grace, note)
        else:
            self.state.escalate(now, note)
