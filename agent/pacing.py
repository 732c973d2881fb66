"""Long loops on the agent's event loop, cut into short stretches so other tasks still run."""

from __future__ import annotations

import asyncio
import time

# The longest stretch a paced loop holds the event loop: /healthz and /metrics wait at most
# about this (the goal for the whole agent is 10 ms).
SLICE_SECONDS = 0.001


class Pacer:
    """``await pace()`` inside a long loop: hands the event loop back once the work since the
    last hand-back has taken ``budget`` seconds, so other tasks wait at most about that."""

    def __init__(self, budget: float = SLICE_SECONDS) -> None:
        self._budget = budget
        self._since = time.perf_counter()

    async def __call__(self) -> None:
        if time.perf_counter() - self._since >= self._budget:
            await asyncio.sleep(0)
            self._since = time.perf_counter()
