"""Sequence numbers for v2 documents: strictly increasing per sender, across restarts too.

The receiver rejects a sequence it has already seen, so a restarted agent must never reuse
one. Two guards: the number is at least the wall clock in milliseconds (a fresh pod with no
state still starts above anything its predecessor sent, unless the clock jumped back), and,
when ``stateFile`` is set, the last number is kept on disk (covers a clock that went back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("dms_agent.lb")


class SequenceSource:
    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.last = 0
        self._loaded = False
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        async with self._lock:
            if not self._loaded:
                self.last = max(self.last, await asyncio.to_thread(self._load))
                self._loaded = True
            self.last = max(self.last + 1, int(self.clock() * 1000))
            if self.path is not None:
                await asyncio.to_thread(self._store, self.last)
            return self.last

    def _load(self) -> int:
        if self.path is None:
            return 0
        try:
            value = json.loads(self.path.read_text(encoding="utf-8")).get("sequence", 0)
            return value if isinstance(value, int) and value > 0 else 0
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("lb state file %s unreadable, starting from the clock: %s", self.path, exc)
            return 0

    def _store(self, value: int) -> None:
        assert self.path is not None
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"sequence": value}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # the clock floor still protects; say so, keep going
            log.warning("lb state file %s not written: %s", self.path, exc)
