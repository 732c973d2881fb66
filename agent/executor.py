"""How `setup` and other commands reach the mailserver: one interface, several transports.

``run`` never raises for a command's failure: it returns a Result. ``exit_code is None`` means
the outcome is unknown (stream lost, no status, deadline passed): the caller must observe again,
never retry blindly (design: Commands).

The deadline is enforced on the far side too: every command runs under
``timeout -k 5 N …`` in the mailserver's environment, so a command that outlives its deadline is
killed there and never keeps running next to the next one. The near side waits a little longer
(the far side's kill grace plus a margin) and then kills its own end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

KILL_GRACE = 5  # seconds between timeout's TERM and KILL on the far side
NEAR_MARGIN = 3.0  # extra seconds the near side waits for the far side's own deadline
TIMEOUT_EXIT_CODES = frozenset({124, 137})  # timeout(1): TERM expired / had to KILL


@dataclass(frozen=True, slots=True)
class Result:
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float  # seconds, measured inside the executor
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def unknown(self) -> bool:
        return self.exit_code is None


class Executor(Protocol):
    """Runs one command at a time in the mailserver's environment."""

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result: ...


def with_deadline(argv: Sequence[str], timeout: float) -> list[str]:
    """``argv`` wrapped in coreutils' timeout (whole seconds, at least 1)."""
    seconds = max(1, math.ceil(timeout))
    return ["timeout", "-k", str(KILL_GRACE), str(seconds), *argv]


async def run_process(
    argv: Sequence[str], stdin: str | None, near_timeout: float, far_timed_out: bool = True
) -> Result:
    """Run ``argv`` (never through a shell) and collect its output.

    ``far_timed_out``: the command runs under timeout(1), so exit 124/137 means the far side
    killed it — an unknown outcome.
    """
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a TERM to the agent's group never reaches the command
        )
    except OSError as exc:
        return Result(127, "", f"cannot start {argv[0]}: {exc.strerror or exc}", 0.0)
    data = stdin.encode() if stdin is not None else None
    try:
        async with asyncio.timeout(near_timeout):
            out, err = await proc.communicate(data)
    except asyncio.CancelledError:
        # the caller gave up (a check's own deadline, a stop): nothing is left running behind
        # it, no child and no pipe transport outlives the event loop (the reconciler and the
        # DKIM component shield their commands, so this never cuts a `setup` short)
        await _kill_group(proc)
        raise
    except TimeoutError:
        await _kill_group(proc)
        duration = time.monotonic() - started
        return Result(None, "", "no answer before the deadline", duration, timed_out=True)
    duration = time.monotonic() - started
    code = proc.returncode
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if far_timed_out and code in TIMEOUT_EXIT_CODES:
        return Result(None, stdout, stderr, duration, timed_out=True)
    return Result(code, stdout, stderr, duration)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the command's whole group (timeout(1) and its child) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await proc.wait()


class LocalExecutor:
    """For an agent sharing the mailserver's filesystem and tools (e.g. running the DMS image)."""

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        wrapped = with_deadline(argv, timeout)
        return await run_process(wrapped, stdin, timeout + KILL_GRACE + NEAR_MARGIN)


class DockerExecutor:
    """For docker-compose users: ``docker exec -i CONTAINER timeout … argv``."""

    def __init__(self, container: str, docker: Sequence[str] = ("docker",)) -> None:
        self.container = container
        self.docker = list(docker)

    def argv(self, argv: Sequence[str], timeout: float) -> list[str]:
        return [*self.docker, "exec", "-i", self.container, *with_deadline(argv, timeout)]

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        full = self.argv(argv, timeout)
        return await run_process(full, stdin, timeout + KILL_GRACE + NEAR_MARGIN)
