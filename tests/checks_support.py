"""Helpers for the checks tests: a recording executor, a silent server, an event recorder."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agent.executor import LocalExecutor, Result


class RecordingExecutor(LocalExecutor):
    """The agent's own LocalExecutor (every command under ``timeout -k``, its process group
    killed at the deadline), remembering each argv it was given."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        self.calls.append(list(argv))
        return await super().run(argv, stdin, timeout)


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def emit(self, reason: str, message: str, type: str = "Normal") -> None:
        self.events.append((reason, message, type))


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake but nobody ever answers (a hung
    daemon): listen() without accept()."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


class RunningChecks:
    """The checks capability as the agent runs it: ``build(ctx)`` + supervised components."""

    def __init__(
        self, checks: dict[str, object], executor: RecordingExecutor | None = None
    ) -> None:
        from agent.app import AgentContext
        from agent.settings import Settings
        from agent.status import StatusRegistry

        self.settings = Settings.model_validate({"checks": {"enabled": True, **checks}})
        self.events = RecordingEvents()
        self.executor = executor if executor is not None else RecordingExecutor()
        self.ctx = AgentContext(
            settings=self.settings,
            status=StatusRegistry(),
            events=self.events,
            executor=self.executor,
        )
        self.tasks: list[asyncio.Task[None]] = []
        self.verdicts: list[str] = []  # every verdict change, in order
        set_verdict = self.ctx.status.set_verdict

        def recording(verdict: Any, reasons: list[str], checks: Any = None) -> None:
            if not self.verdicts or self.verdicts[-1] != verdict.value:
                self.verdicts.append(verdict.value)
            set_verdict(verdict, reasons, checks)

        self.ctx.status.set_verdict = recording  # type: ignore[method-assign]
        # every phase each check passed through, in order: a short phase (remediating) may
        # come and go between two polls of a loaded machine
        self.phases: dict[str, list[str]] = {}
        publish = self.ctx.hub.check_results.set

        def recording_phases(results: dict[str, Any]) -> None:
            for name, summary in results.items():
                seen = self.phases.setdefault(name, [])
                phase = summary.get("phase") if isinstance(summary, dict) else None
                if phase is not None and (not seen or seen[-1] != phase):
                    seen.append(phase)
            publish(results)

        self.ctx.hub.check_results.set = recording_phases  # type: ignore[method-assign]

    async def __aenter__(self) -> RunningChecks:
        from agent.app import supervise
        from agent.checks import build

        for component in build(self.ctx):
            self.tasks.append(asyncio.create_task(supervise(component, self.ctx.status)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def results(self) -> dict[str, Any]:
        return self.ctx.hub.check_results.value

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
