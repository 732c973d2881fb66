"""What the lb client remembers across restarts (``stateFile``): the last sequence number, and
the ports last registered with each ``funkypenguin`` target.

Sequence numbers for v2 documents are strictly increasing per sender, across restarts too: the
receiver rejects a sequence it has already seen, so a restarted agent must never reuse one.
Two guards: the number is at least the wall clock in milliseconds (a fresh pod with no state
still starts above anything its predecessor sent, unless the clock jumped back), and, when
``stateFile`` is set, the last number is kept on disk (covers a clock that went back).

The funkypenguin format has no "this is the whole set" document: a port dropped from the
settings would stay forwarded forever unless someone sends its ``delete``. The ports last
registered per target are kept here (in memory across settings reloads, on disk with
``stateFile``) so the next registration can withdraw the dropped ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.fsio import write_file

log = logging.getLogger("dms_agent.lb")

# Survives a settings reload (which rebuilds the component) within one process.
_MEMORY: dict[str, list[dict[str, Any]]] = {}


class SequenceSource:
    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.last = 0
        self.legacy: dict[str, list[dict[str, Any]]] = _MEMORY if path is None else {}
        self._loaded = path is None
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        async with self._lock:
            await self._ensure_loaded()
            self.last = max(self.last + 1, int(self.clock() * 1000))
            await self._save()
            return self.last

    async def legacy_ports(self, target: str) -> list[dict[str, Any]]:
        async with self._lock:
            await self._ensure_loaded()
            return list(self.legacy.get(target, []))

    async def set_legacy_ports(self, target: str, ports: list[dict[str, Any]]) -> None:
        async with self._lock:
            await self._ensure_loaded()
            self.legacy[target] = ports
            await self._save()

    async def _ensure_loaded(self) -> None:
        if not self._loaded:
            doc = await asyncio.to_thread(self._load)
            value = doc.get("sequence", 0)
            if isinstance(value, int) and value > self.last:
                self.last = value
            legacy = doc.get("funkypenguin", {})
            if isinstance(legacy, dict):
                self.legacy.update({k: v for k, v in legacy.items() if isinstance(v, list)})
            self._loaded = True

    async def _save(self) -> None:
        if self.path is not None:
            doc = {"sequence": self.last, "funkypenguin": self.legacy}
            await asyncio.to_thread(self._store, doc)

    def _load(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return doc if isinstance(doc, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("lb state file %s unreadable, starting from the clock: %s", self.path, exc)
            return {}

    def _store(self, doc: dict[str, Any]) -> None:
        assert self.path is not None
        try:
            write_file(self.path, json.dumps(doc))
        except OSError as exc:  # the clock floor still protects; say so, keep going
            log.warning("lb state file %s not written: %s", self.path, exc)
