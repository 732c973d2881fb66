"""Helpers for the checks tests: a tiny local executor, a silent server, an event recorder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator, Sequence

from agent.executor import Result


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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return Result(None, "", "", time.monotonic() - started, timed_out=True)
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
