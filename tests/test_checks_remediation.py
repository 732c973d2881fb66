"""The remediator on its own: coalescing, rate limit, failures of the executor."""

from __future__ import annotations

import asyncio

from agent.checks.config import Remediation
from agent.checks.remediation import Remediator, Result
from tests.checks_support import RecordingEvents, RecordingExecutor


class BrokenExecutor:
    async def run(self, argv: object, stdin: object = None, timeout: float = 60) -> None:
        raise ConnectionResetError("exec stream lost")


async def test_two_checks_naming_one_fix_run_it_once() -> None:
    executor, events = RecordingExecutor(), RecordingEvents()
    remediator = Remediator(executor, events)
    fix = Remediation(command=["sleep", "0.2"], grace=5)
    (first, _), (second, note) = await asyncio.gather(
        remediator.run("smtp", fix), remediator.run("submission", fix)
    )
    assert (first, second) == (Result.RAN, Result.JOINED)
    assert "joined the recent run of 'sleep 0.2'" in note
    assert executor.calls == [["sleep", "0.2"]]
    assert [e[0] for e in events.events] == ["Remediation", "Remediation"]


async def test_rate_limit_per_window_and_failed_commands() -> None:
    executor, events = RecordingExecutor(), RecordingEvents()
    remediator = Remediator(executor, events)
    fix = Remediation(command="exit 3", grace=0, maxActions=2, window=60)
    results = [(await remediator.run("clamd", fix))[0] for _ in range(3)]
    assert results == [Result.COMMAND_FAILED, Result.COMMAND_FAILED, Result.RATE_LIMITED]
    assert len(executor.calls) == 2
    assert events.events[0] == (
        "RemediationFailed",
        "check clamd: 'exit 3' failed (exit 3)",
        "Warning",
    )


async def test_executor_errors_and_absence_are_reported_not_raised() -> None:
    events = RecordingEvents()
    broken = Remediator(BrokenExecutor(), events)  # type: ignore[arg-type]
    result, note = await broken.run("imap", Remediation(command=["true"]))
    assert result is Result.COMMAND_FAILED and "ConnectionResetError" in note
    absent = Remediator(None, events)
    assert (await absent.run("imap", Remediation(command=["true"])))[0] is Result.NO_EXECUTOR
