"""In-place fixes through the executor: rate-limited, coalesced, logged, counted, evented.

The limit is per command, not per check: ``smtp`` and ``submission`` both name
``supervisorctl restart postfix``, and two checks seeing the same outage must not restart
Postfix twice. A second check asking while the same command ran less than its ``grace`` ago
joins that run instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum

from agent.checks.config import Remediation
from agent.checks.metrics import REMEDIATIONS
from agent.checks.ratelog import RateLog
from agent.events import EventSink
from agent.executor import Executor

log = logging.getLogger("dms_agent.checks.remediation")


class Result(StrEnum):
    RAN = "ran"  # the command succeeded; whether it helped is known after the grace period
    JOINED = "joined"  # the same command ran moments ago for another check
    COMMAND_FAILED = "command_failed"
    RATE_LIMITED = "rate_limited"
    NO_EXECUTOR = "no_executor"


@dataclass(slots=True)
class _Limiter:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_run: float | None = None


def command_argv(command: list[str] | str) -> list[str]:
    return ["sh", "-c", command] if isinstance(command, str) else list(command)


def command_text(command: list[str] | str) -> str:
    return command if isinstance(command, str) else " ".join(command)


class Remediator:
    def __init__(
        self, executor: Executor | None, events: EventSink, runs: RateLog | None = None
    ) -> None:
        self.executor = executor
        self.events = events
        self._limiters: dict[str, _Limiter] = {}
        self.runs = runs or RateLog(None)  # the runs per command, kept across restarts

    async def run(self, check: str, spec: Remediation) -> tuple[Result, str]:
        """Run ``spec.command`` for ``check`` unless limited; (result, human note)."""
        text = command_text(spec.command)
        limiter = self._limiters.setdefault(text, _Limiter())
        async with limiter.lock:  # one run of a command at a time; followers may join it
            loop = asyncio.get_running_loop()
            now = loop.time()
            if limiter.last_run is not None and now - limiter.last_run < spec.grace:
                return self._record(check, Result.JOINED, f"joined the recent run of {text!r}")
            if await self.runs.count(text, spec.window) >= spec.max_actions:
                note = f"{text!r} not run: {spec.max_actions} runs in {spec.window:g}s already"
                return self._record(check, Result.RATE_LIMITED, note)
            if self.executor is None:
                note = f"{text!r} not run: no executor configured"
                return self._record(check, Result.NO_EXECUTOR, note)
            await self.runs.add(text, spec.window)
            limiter.last_run = now
            log.warning("check %s failing: remediating with %r", check, text)
            try:
                result = await self.executor.run(command_argv(spec.command), timeout=spec.timeout)
            except Exception as exc:  # a transport failure: the fix may or may not have run
                note = f"{text!r} failed: executor {type(exc).__name__}: {exc}"
                return self._record(check, Result.COMMAND_FAILED, note)
            if result.ok:
                return self._record(check, Result.RAN, f"ran {text!r}")
            status = "timed out" if result.timed_out else f"exit {result.exit_code}"
            return self._record(check, Result.COMMAND_FAILED, f"{text!r} failed ({status})")

    def _record(self, check: str, result: Result, note: str) -> tuple[Result, str]:
        REMEDIATIONS.labels(check, result.value).inc()
        failed = result in (Result.COMMAND_FAILED, Result.RATE_LIMITED, Result.NO_EXECUTOR)
        log.log(logging.WARNING if failed else logging.INFO, "remediation %s: %s", check, note)
        self.events.emit(
            "RemediationFailed" if failed else "Remediation",
            f"check {check}: {note}",
            "Warning" if failed else "Normal",
        )
        return result, note

    def outcome(self, check: str, helped: bool) -> None:
        """After the grace period: did the remediation help?"""
        result = "fixed" if helped else "not_fixed"
        REMEDIATIONS.labels(check, result).inc()
        message = (
            f"check {check}: {'passing again' if helped else 'still failing'} after remediation"
        )
        log.log(logging.INFO if helped else logging.WARNING, "%s", message)
        self.events.emit(
            "Remediated" if helped else "RemediationDidNotHelp",
            message,
            "Normal" if helped else "Warning",
        )
