"""Mounted source: a kubelet ConfigMap/Secret volume, a plain folder, or a single file.

kubelet's atomic writer makes the visible names symlinks into ``..data``, itself a symlink to a
timestamped folder; an update writes a new folder and renames ``..data_tmp`` over ``..data``.
So: watch the folder (files are replaced, a watch on them dies) — with inotify on the event loop
(no polling thread, nothing to do while idle; see inotify.py), else with watchfiles — act on a
change touching ``..data`` (any change for a plain folder; the file's name for a single file),
and read through
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

from agent.hub import Hub
from agent.sources.base import Publisher
from agent.sources.document import MAX_DOCUMENT_BYTES, SourceDocument, read_document, read_path
from agent.sources.inotify import OVERFLOW, FolderWatch, InotifyUnavailable
from agent.sources.metrics import EVENTS_RECEIVED
from agent.status import State, StatusRegistry

log = logging.getLogger("dms_agent.sources.mounted")

DATA = "..data"


def read_mount(
    path: Path, secret: bool, limit: int = MAX_DOCUMENT_BYTES
) -> tuple[SourceDocument, ...] | None:
    """A consistent snapshot: from a kubelet mount, all files of one ``..data`` generation."""
    data = path / DATA
    if not data.is_symlink():
        return read_path(path, secret, limit)
    for _ in range(5):  # a swap during the read: read again
        try:
            generation = os.readlink(data)
            folder = path / generation
            docs = []
            for entry in sorted(path.iterdir()):
                if entry.name.startswith("."):
                    continue
                doc = read_document(folder / entry.name, entry.name, str(entry), secret, limit)
                docs.append(doc)
            if os.readlink(data) == generation:
                return tuple(docs)
        except FileNotFoundError:
            continue
    return read_path(path, secret, limit)


def _is_dir(path: Path) -> bool:
    """A stat: cheap enough for the loop (the files themselves are read in a thread)."""
    return path.is_dir()


class MountedSource:
    def __init__(
        self,
        path: Path,
        secret: bool,
        hub: Hub,
        status: StatusRegistry,
        resync: float = 60.0,
        step_ms: int = 25,
        watcher: str = "inotify",
        limit: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self.path = path
        self.secret = secret
        self.key = f"path:{path}"
        self.name = f"source {self.key}"
        self.resync = resync
        self.step_ms = step_ms
        self.watcher = watcher
        self.limit = limit
        self.publisher = Publisher(self.key, hub)
        self.entry = status.component(self.name)
        self.reads = 0

    async def refresh(self, why: str) -> bool:
        documents = await asyncio.to_thread(read_mount, self.path, self.secret, self.limit)
        self.reads += 1
        changed = self.publisher.publish(documents)
        if documents is None:
            self.entry.set(State.DEGRADED, f"source absent: {self.path} does not exist")
        elif changed:
            self.entry.set(State.OK, f"read after {why}", documents=len(documents))
        return changed

    def _relevant(self, names: set[str], kubelet: bool) -> bool:
        if OVERFLOW in names:
            return True
        swapped = any(n.startswith(DATA) for n in names)  # a kubelet update of the folder
        if self.path.is_file() or not self.path.exists():
            return self.path.name in names or swapped or not self.path.exists()
        return swapped if kubelet else True

    async def _changed(self, folder: Path, names: set[str]) -> None:
        EVENTS_RECEIVED.labels(self.key, "files").inc()
        self.publisher.mark_event()
        if self._relevant(names, (folder / DATA).is_symlink()):
            await self.refresh("change")

    async def run(self) -> None:
        await self.refresh("start")
        use_inotify = self.watcher != "watchfiles"
        while True:
            folder = self.path if self.path.is_dir() else self.path.parent
            if not folder.is_dir():  # nothing to watch yet: look again at the resync pace
                await asyncio.sleep(self.resync)
                await self.refresh("resync")
                continue
            if use_inotify:
                try:
                    await self._watch_inotify(folder)
                    continue
                except InotifyUnavailable as exc:
                    log.info("%s: %s; using watchfiles", self.key, exc)
                    use_inotify = False
            await self._watch_watchfiles(folder)

    async def _watch_inotify(self, folder: Path) -> None:
        async with FolderWatch(folder) as watch:
            await self.refresh("watch started")  # a change before the watch existed
            while not watch.gone:
                names = await watch.changes(self.resync)
                if names:
                    await self._changed(folder, names)
                elif not watch.gone:
                    await self.refresh("resync")

    async def _watch_watchfiles(self, folder: Path) -> None:
        from watchfiles import awatch  # imported here: only the fallback pays for it

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
            else:
                await self._changed(folder, {Path(p).name for _, p in changes})
            if not _is_dir(folder):
                return
