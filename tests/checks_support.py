"""Helpers for the checks tests: a tiny local executor, a silent server, an event recorder."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agent.executor import Result, reap


class LocalExecutor:
    """Runs commands as local subprocesses (the mailserver 'container' is this machine).

    A timeout kills the whole process group, as ``timeout -k`` would in the container.
    """

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        self.calls.append(list(argv))
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except TimeoutError:
            await reap(proc, grace=0.0)
            return Result(None, "", "", time.monotonic() - started, timed_out=True)
        except asyncio.CancelledError:
            await reap(proc, grace=0.0)  # no child or pipe transport outlives the loop
            raise
        return Result(proc.returncode, out.decode(), err.decode(), time.monotonic() - started)


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

    def __init__(self, checks: dict[str, object], executor: LocalExecutor | None = None) -> None:
        from agent.app import AgentContext
        from agent.settings import Settings
        from agent.status import StatusRegistry

        self.settings = Settings.model_validate({"checks": {"enabled": True, **checks}})
        self.events = RecordingEvents()
        self.executor = executor if executor is not None else LocalExecutor()
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

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
