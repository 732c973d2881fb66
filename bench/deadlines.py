"""Deadlines and delays, measured (the tests only check that they are kept, never how fast):

1. the LocalExecutor's deadline: `sleep 30` run with a 1 s deadline returns (timed out, the
   command killed by `timeout -k`) after ... s (goal <= 1.5 s);
2. a server that accepts and never answers: a smtp/imap/pop3/clamd probe with a 0.3 s timeout
   gives up after ... s (goal 0.3 s <= t <= 1.5 s);
3. an exec check whose command hangs, with a 0.3 s timeout, gives up after ... s (goal <= 2 s);
4. a check with ``initialDelay: 0.5`` answers first after ... s (goal >= 0.5 s, <= 1.5 s).

Prints the median of --runs runs per figure and its ratio to the goal's bound.
Run from the repository root:  .venv/bin/python bench/deadlines.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import TypeAdapter

from agent.checks.config import CheckSpec
from agent.checks.probes import ProbeEnv, run_probe
from agent.executor import LocalExecutor
from tests.checks_support import RunningChecks, silent_server

SPEC: TypeAdapter[CheckSpec] = TypeAdapter(CheckSpec)


async def executor_deadline() -> float:
    started = time.monotonic()
    res = await LocalExecutor().run(["sleep", "30"], None, timeout=1)
    assert res.timed_out, res
    return time.monotonic() - started


async def silent_probe() -> float:
    with silent_server() as port:
        worst = 0.0
        for kind in ("smtp", "imap", "pop3", "clamd"):
            spec = SPEC.validate_python({"name": "t", "kind": kind, "port": port, "timeout": 0.3})
            started = time.monotonic()
            outcome = await run_probe(spec, ProbeEnv())
            assert outcome.reason == "timeout", outcome
            worst = max(worst, time.monotonic() - started)
        return worst


async def exec_hang() -> float:
    spec = SPEC.validate_python(
        {"name": "t", "kind": "exec", "commands": ["sleep 30"], "timeout": 0.3}
    )
    started = time.monotonic()
    outcome = await run_probe(spec, ProbeEnv(executor=LocalExecutor()))
    assert outcome.reason == "timeout", outcome
    return time.monotonic() - started


async def initial_delay() -> float:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        check = {"name": "t", "kind": "tcp", "port": port, "initialDelay": 0.5, "interval": 0.05}
        async with RunningChecks({"dmsDefaults": {"enabled": False}, "checks": [check]}) as run:
            started = time.monotonic()
            await run.wait_for(lambda: (run.results or {}).get("t", {}).get("lastOk") is True, 5)
            return time.monotonic() - started


FIGURES: list[tuple[str, Callable[[], Awaitable[float]], float | None, float]] = [
    # name, measurement, lower bound, upper bound (seconds)
    ("executor deadline 1 s", executor_deadline, None, 1.5),
    ("silent server, probe timeout 0.3 s", silent_probe, 0.3, 1.5),
    ("hanging exec check, timeout 0.3 s", exec_hang, None, 2.0),
    ("initialDelay 0.5 s, first answer", initial_delay, 0.5, 1.5),
]


async def main(runs: int) -> int:
    failed = 0
    print(f"{'figure':<40} {'median s':>9} {'goal':>14} {'ratio':>6}")
    for name, measure, low, high in FIGURES:
        median = statistics.median([await measure() for _ in range(runs)])
        goal = f"{low or 0:g}..{high:g} s"
        ok = (low is None or median >= low) and median <= high
        failed += not ok
        print(
            f"{name:<40} {median:>9.3f} {goal:>14} {median / high:>6.2f} {'' if ok else 'MISSED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    sys.exit(asyncio.run(main(parser.parse_args().runs)))
