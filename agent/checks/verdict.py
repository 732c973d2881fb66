"""From check states to the mailserver verdict: /healthz, the hub, and the verdict file.

- unhealthy: some check that affects the verdict is FAILING (past its threshold and past
  remediation);
- healthy: every check that affects the verdict is PASSING, or being remediated after it
  had passed before;
- unknown: anything else (not yet checked). Unknown is never unhealthy.

The verdict file is what the mailserver's livenessProbe reads (see ``probe.py``). Its first
line is ``<verdict> <unix time>``; the rest is for people. It is rewritten atomically (temp
file + rename in the same folder) on every change and every ``verdictRefresh`` seconds, so its
timestamp proves the agent is alive: a stale file means "agent absent" and the probe passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from agent.checks.probes import describe_expiry
from agent.checks.ratelog import RateLog
from agent.checks.state import CheckState, Phase
from agent.fsio import write_file
from agent.hub import Hub
from agent.metrics import HEALTH_VERDICT
from agent.status import State, StatusRegistry, Verdict

log = logging.getLogger("dms_agent.checks.verdict")


def _reason(state: CheckState) -> str | None:
    last = state.last
    spec = state.spec
    if state.paused:
        return f"{spec.name}: {state.paused}"  # released after an escalation
    if last is None or last.ok:
        return None
    if state.phase is Phase.FAILING:
        where = "failing" if spec.affects_verdict else "failing (does not affect the verdict)"
    elif state.phase is Phase.REMEDIATING:
        where = f"remediating: {state.remediation_note}"
    elif not state.armed:
        where = f"{state.failures} consecutive failures; not judged before it has passed once"
    else:
        where = f"{state.failures}/{spec.failure_threshold} consecutive failures"
    return f"{spec.name}: {last.reason}: {last.message} ({where})"


def check_summary(state: CheckState) -> dict[str, Any]:
    last = state.last
    summary: dict[str, Any] = {
        "kind": getattr(state.spec, "kind", "?"),
        "phase": state.phase.value,
        "ok": state.phase is Phase.PASSING,  # thresholded: what other components act on
        "lastOk": None if last is None else last.ok,
        "reason": None if last is None else last.reason,
        "message": None if last is None else last.message,
        "consecutiveFailures": state.failures,
        "consecutiveSuccesses": state.successes,
        "affectsVerdict": state.spec.affects_verdict,
        "lastChecked": state.checked_at,  # unix time
        "lastSuccess": state.succeeded_at,
    }
    if last is not None and last.cert_not_after is not None:
        summary["certificateNotAfter"] = describe_expiry(last.cert_not_after)
    if last is not None and last.warnings:
        summary["warnings"] = list(last.warnings)
    return summary


def _fine(state: CheckState) -> bool:
    # being remediated counts as healthy only for a check that has passed before
    if state.phase is Phase.REMEDIATING:
        return state.last_success is not None
    return state.phase is Phase.PASSING


def judge(states: list[CheckState]) -> tuple[Verdict, list[str]]:
    reasons = [r for s in states if (r := _reason(s))]
    reasons += [f"{s.spec.name}: {w}" for s in states if s.last for w in s.last.warnings]
    deciding = [s for s in states if s.spec.affects_verdict]
    if any(s.phase is Phase.FAILING for s in deciding):
        return Verdict.UNHEALTHY, reasons
    if deciding and all(_fine(s) for s in deciding):
        return Verdict.HEALTHY, reasons
    return Verdict.UNKNOWN, reasons


_GAUGE = {Verdict.HEALTHY: 1, Verdict.UNHEALTHY: 0, Verdict.UNKNOWN: -1}


class Board:
    """The shared view of every check; republishes the verdict whenever a check reports."""

    def __init__(self, states: list[CheckState], status: StatusRegistry, hub: Hub) -> None:
        self.states = states
        self.status = status
        self.hub = hub
        self.verdict = Verdict.UNKNOWN
        self.reasons: list[str] = []
        self.changed = asyncio.Event()

    def publish(self) -> None:
        verdict, reasons = judge(self.states)
        checks = {s.spec.name: check_summary(s) for s in self.states}
        self.status.set_verdict(verdict, reasons, checks)
        HEALTH_VERDICT.set(_GAUGE[verdict])
        self.hub.check_results.set(checks)
        entry = self.status.component("checks")
        failing = sum(1 for s in self.states if s.phase is Phase.FAILING)
        entry.set(
            State.DEGRADED if failing else State.OK,
            f"verdict {verdict.value}; {len(self.states)} checks, {failing} failing",
        )
        if verdict is not self.verdict or reasons != self.reasons:
            if verdict is not self.verdict:
                log.log(
                    logging.WARNING if verdict is Verdict.UNHEALTHY else logging.INFO,
                    "mailserver verdict %s -> %s: %s",
                    self.verdict.value,
                    verdict.value,
                    "; ".join(reasons) or "all checks pass",
                )
            self.verdict, self.reasons = verdict, reasons
            self.changed.set()


def render(verdict: Verdict, reasons: list[str], now: float) -> str:
    lines = [
        f"{verdict.value} {int(now)}",
        "# dms-agent mailserver verdict. Line 1: <verdict> <unix time>; the probe fails only",
        "# on a fresh 'unhealthy'. Reasons:",
        *(r.replace("\n", " ") for r in reasons),
    ]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a part (rename within one folder)."""
    # 0644: the mailserver container may run its probe as another user
    write_file(path, text, mode=0o644, make_parents=True)


ESCALATION = "unhealthy"
HOUR = 3600.0


class VerdictWriter:
    """Component: keeps the verdict file fresh; writes ``unknown`` when it stops."""

    name = "checks-verdict-file"

    def __init__(
        self,
        board: Board,
        path: Path,
        refresh: float,
        escalations: RateLog | None = None,
        max_per_hour: int = 3,
    ) -> None:
        self.board = board
        self.path = path
        self.refresh = refresh
        self.escalations = escalations or RateLog(None)
        self.max_per_hour = max_per_hour
        self._episode: bool | None = None  # in an unhealthy spell: was it let through?

    async def _write(self, verdict: Verdict, reasons: list[str]) -> None:
        if verdict is Verdict.UNHEALTHY and not await self._escalation_allowed():
            note = f"escalation cap: {self.max_per_hour} restarts asked in the last hour"
            verdict, reasons = Verdict.UNKNOWN, [note, *reasons]
        text = render(verdict, reasons, time.time())
        await asyncio.to_thread(write_atomically, self.path, text)

    async def _escalation_allowed(self) -> bool:
        """Each unhealthy spell is one escalation, counted when it starts."""
        if self._episode is None:
            allowed = await self.escalations.count(ESCALATION, HOUR) < self.max_per_hour
            if allowed:
                await self.escalations.add(ESCALATION, HOUR)
            else:
                log.error(
                    "mailserver unhealthy, but %d restarts were asked in the last hour: the "
                    "verdict file says unknown until the next hour",
                    self.max_per_hour,
                )
            self._episode = allowed
        return self._episode

    async def run(self) -> None:
        try:
            while True:
                self.board.changed.clear()
                if self.board.verdict is not Verdict.UNHEALTHY:
                    self._episode = None
                try:
                    await self._write(self.board.verdict, self.board.reasons)
                except OSError as exc:  # logged; stale file => the probe passes (fail-open)
                    log.error("cannot write the verdict file %s: %s", self.path, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.refresh):
                        await self.board.changed.wait()
        finally:
            # stopping (reload, shutdown): say so at once rather than leave a verdict to age
            with contextlib.suppress(OSError):
                write_atomically(self.path, render(Verdict.UNKNOWN, ["agent stopped"], time.time()))
