"""When actions with a cap happened, kept in a small JSON file so a restart does not reset it.

Used for escalations (an ``unhealthy`` verdict asks the kubelet to restart the mailserver) and
for remediation commands: a crash-looping agent must not get a fresh allowance each time it
starts. The file sits beside the verdict file (a volume that outlives the agent's container).
Times are wall-clock seconds; an unreadable file counts as empty (logged): the cap then holds
for this process again from zero, which is what the limit did before it was kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from agent.fsio import write_file

log = logging.getLogger("dms_agent.checks")


def beside(verdict_file: Path | None, what: str) -> Path | None:
    """The file kept beside the verdict file for ``what`` (None: no verdict file, memory only)."""
    return verdict_file.with_name(f"{verdict_file.name}.{what}") if verdict_file else None


class RateLog:
    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._times: dict[str, list[float]] | None = None

    async def count(self, key: str, window: float) -> int:
        """How many ``key`` actions happened in the last ``window`` seconds."""
        times = await self._load()
        since = self.clock() - window
        return sum(1 for t in times.get(key, ()) if t > since)

    async def add(self, key: str, keep: float) -> None:
        """Record a ``key`` action now; entries older than ``keep`` seconds are dropped."""
        times = await self._load()
        now = self.clock()
        times[key] = [t for t in times.get(key, ()) if t > now - keep] + [now]
        if self.path is not None:
            text = json.dumps(times, sort_keys=True) + "\n"
            try:
                await asyncio.to_thread(write_file, self.path, text, 0o644, make_parents=True)
            except OSError as exc:
                log.warning("%s not written (the cap holds in memory): %s", self.path, exc)

    async def _load(self) -> dict[str, list[float]]:
        if self._times is None:
            self._times = await asyncio.to_thread(self._read) if self.path else {}
        return self._times

    def _read(self) -> dict[str, list[float]]:
        assert self.path is not None
        try:
            raw = json.loads(self.path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s unreadable, counting from zero: %s", self.path, exc)
            return {}
        if not isinstance(raw, dict):
            return {}
        now = self.clock()
        return {
            str(k): [float(t) for t in v if isinstance(t, int | float) and t <= now + 60]
            for k, v in raw.items()
            if isinstance(v, list)
        }
