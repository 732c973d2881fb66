"""Mounted source: a kubelet ConfigMap/Secret volume, a plain folder, or a single file.

kubelet's atomic writer makes the visible names symlinks into ``..data``, itself a symlink to a
timestamped folder; an update writes a new folder and renames ``..data_tmp`` over ``..data``.
So: watch the folder (files are replaced, a watch on them dies), act on a change batch touching
``..data`` (any batch for a plain folder; the file's name for a single file), and read through
ONE resolution of ``..data`` so every document comes from the same generation even if another
swap happens mid-read. A digest skips unchanged snapshots. A slow periodic re-read backs the
watch up (a missed inotify event costs at most ``resync`` seconds).

Note that kubelet itself only refreshes a mounted volume on its sync period (up to a minute or
more after the API object changed); the API source sees the change at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from agent.hub import Hub
from agent.sources.base import Publisher
from agent.sources.document import SourceDocument, read_path
from agent.sources.metrics import EVENTS_RECEIVED
from agent.status import State, StatusRegistry

log = logging.getLogger("dms_agent.sources.mounted")

DATA = "..data"


def read_mount(path: Path, secret: bool) -> tuple[SourceDocument, ...] | None:
    """A consistent snapshot: from a kubelet mount, all files of one ``..data`` generation."""
    data = path / DATA
    if not data.is_symlink():
        return read_path(path, secret)
    for _ in range(5):  # a swap during the read: read again
        try:
            generation = os.readlink(data)
            folder = path / generation
            docs = []
            for entry in sorted(path.iterdir()):
                if entry.name.startswith("."):
                    continue
                target = folder / entry.name
                text = target.read_text(encoding="utf-8")
                docs.append(SourceDocument(str(entry), entry.name, text, secret))
            if os.readlink(data) == generation:
                return tuple(docs)
        except FileNotFoundError:
            continue
    return read_path(path, secret)


class MountedSource:
    def __init__(
        self,
        path: Path,
        secret: bool,
        hub: Hub,
        status: StatusRegistry,
        resync: float = 60.0,
        step_ms: int = 10,
    ) -> None:
        self.path = path
        self.secret = secret
        self.key = f"path/{path}"
        self.name = f"source {self.key}"
        self.resync = resync
        self.step_ms = step_ms
        self.publisher = Publisher(self.key, hub)
        self.entry = status.component(self.name)
        self.reads = 0

    async def refresh(self, why: str) -> bool:
        documents = await asyncio.to_thread(read_mount, self.path, self.secret)
        self.reads += 1
        changed = self.publisher.publish(documents)
        if documents is None:
            self.entry.set(State.DEGRADED, f"source absent: {self.path} does not exist")
        elif changed:
            self.entry.set(State.OK, f"read after {why}", documents=len(documents))
        return changed

    def _relevant(self, changes: set[tuple[Any, str]], kubelet: bool) -> bool:
        names = {Path(p).name for _, p in changes}
        if self.path.is_file() or not self.path.exists():
            return self.path.name in names or not self.path.exists()
        if kubelet:
            return any(n.startswith(DATA) for n in names)
        return True

    async def run(self) -> None:
        from watchfiles import awatch  # imported here: only mounted sources pay for it

        await self.refresh("start")
        while True:
            folder = self.path if self.path.is_dir() else self.path.parent
            if not folder.is_dir():  # nothing to watch yet: look again at the resync pace
                await asyncio.sleep(self.resync)
                await self.refresh("resync")
                continue
            async for changes in awatch(
                folder,
                watch_filter=None,
                step=self.step_ms,
                recursive=False,
                rust_timeout=int(self.resync * 1000),
                yield_on_timeout=True,
            ):
                if not changes:
                    await self.refresh("resync")
                    continue
                EVENTS_RECEIVED.labels(self.key, "files").inc()
                self.publisher.mark_event()
                if self._relevant(changes, (self.path / DATA).is_symlink()):
                    await self.refresh("change")
                if not folder.is_dir():
                    break
