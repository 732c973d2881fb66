"""Short-lived worker processes: rare work whose libraries must not live in the agent all day.

The hourly DNS run (dnspython, pyspf, dkimpy, TLS) and the DKIM work that needs
``cryptography`` (making and reading private keys) each run in a child started with the
agent's own interpreter (``sys.executable -m MODULE``). When the child exits, the memory those
libraries took goes back to the system; an agent that imported them keeps it until it stops.

One worker runs at a time (the others wait their turn): the pod's peak memory is the agent
plus the largest worker, not the sum (the DNS run and the first DKIM pass both start with the
agent).

The protocol: the request is one JSON document on the child's stdin (never argv: nothing in a
request shows in ``ps``), the reply one JSON document on its stdout (``serve``), or one JSON
object per line (``serve_lines``: a large reply, which the parent reads a line at a time
between its other work); the child's stderr is its log. The parent gives the child a
deadline; on the deadline or when the caller is cancelled (a stop, a reload) the child's whole
process group is killed and reaped (``agent.executor.run_process``). A child that crashes,
hangs or answers garbage becomes ``WorkerFailed``, whose message names the module and where it
failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.executor import run_process

log = logging.getLogger("dms_agent.worker")

# the last frame of a Python traceback: where the child failed
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)', re.M)

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep  # this agent's own source files

Json = dict[str, Any]

_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
_TURNS = weakref.WeakKeyDictionary()


class WorkerFailed(Exception):
    """The child gave no usable reply; the message says which child and where it failed."""


async def run_worker(module: str, request: Json, deadline: float) -> Json:
    """Run ``python -m module`` with ``request`` on stdin; its JSON reply, or WorkerFailed.

    ``deadline`` counts from the child's start (waiting for the turn is not the child's time).
    Cancelling the caller kills the child's process group and reaps it before re-raising.
    """
    return parse_reply(module, await run_worker_text(module, request, deadline))


async def run_worker_text(module: str, request: Json, deadline: float) -> str:
    """``run_worker`` without reading the reply: the child's stdout, for the caller to read
    with ``parse_reply`` (a ``serve_lines`` reply: each line)."""
    argv = [sys.executable, "-m", module]
    async with _turn():
        res = await run_process(argv, json.dumps(request), deadline, far_timed_out=False)
    for line in res.stderr.splitlines()[-20:]:  # the child's own log lines, kept in ours
        if line.strip():
            log.warning("%s: %s", module, line)
    if res.timed_out:
        raise WorkerFailed(f"{module}: no reply within {deadline:g} s; killed")
    if not res.ok:
        raise WorkerFailed(f"{module}: exited with {res.exit_code}{crash_site(res.stderr)}")
    return res.stdout


def parse_reply(module: str, text: str) -> Json:
    """One JSON object of ``module``'s reply, or WorkerFailed."""
    try:
        reply = json.loads(text)
    except ValueError as exc:
        raise WorkerFailed(f"{module}: its reply is not JSON ({exc})") from None
    if not isinstance(reply, dict):
        raise WorkerFailed(f"{module}: its reply is not a JSON object")
    return reply


def _turn() -> asyncio.Lock:
    """The one-worker-at-a-time lock of the running loop (tests run several loops)."""
    loop = asyncio.get_running_loop()
    lock = _TURNS.get(loop)
    if lock is None:
        lock = _TURNS[loop] = asyncio.Lock()
    return lock


def crash_site(stderr: str) -> str:
    """``: ValueError: ... (at agent/x.py:12)`` from a traceback: the error and the agent's
    innermost frame (where our code called what failed); the last line of anything else."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines:
        return ""
    frames = list(_FRAME.finditer(stderr))
    ours = [f for f in frames if f["file"].startswith(_PACKAGE)] or frames
    where = f" (at {ours[-1]['file']}:{ours[-1]['line']})" if ours else ""
    return f": {lines[-1].strip()[:300]}{where}"


def serve(handle: Callable[[Json], Json]) -> None:
    """The child's side: read the request from stdin, write ``handle``'s reply to stdout.

    An exception is left to the interpreter: its traceback on stderr and exit status 1 are
    what the parent turns into a located ``WorkerFailed``.
    """
    _serve(lambda request: json.dumps(handle(request)))


def serve_lines(handle: Callable[[Json], Iterable[Json]]) -> None:
    """``serve`` for a reply in parts: each JSON object ``handle`` gives on a line of its own
    (JSON text never holds a raw newline)."""
    _serve(lambda request: "\n".join(json.dumps(part) for part in handle(request)))


def _serve(answer: Callable[[Json], str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    request = json.load(sys.stdin)
    # json.dumps, not json.dump: only a one-shot encoding uses the C encoder (json.dump of a
    # DNS run's 430 kB reply took 25 ms of CPU in pure Python)
    sys.stdout.write(answer(request))
    sys.stdout.flush()
    logging.shutdown()
    sys.stderr.flush()
    # The reply is out and nothing is left to write: end here rather than tear the
    # interpreter down module by module (~0.1 s of CPU after a DNS run); the system takes the
    # memory back either way.
    os._exit(0)
