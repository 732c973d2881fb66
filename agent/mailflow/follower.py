"""Follows a log file the way ``tail -F`` does, and remembers where it stopped.

Each poll reads what was appended since the last one. Rotation (the path now names another
file) finishes the old file first, then starts the new one at its beginning; truncation (the
file got shorter) starts over at 0. The file's identity (device, inode) and the offset of the
last whole line read are saved after every batch, so a restarted agent resumes exactly there:
no line counted twice, none missed. A file seen for the first time is followed from its end
(its history was never this agent's to count).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.fsio import write_file

log = logging.getLogger("dms_agent.mailflow")

CHUNK = 1 << 20  # bytes read per step; a backlog is read in steps, yielding in between
MAX_LINE = 64 * 1024  # a longer "line" is cut: a log line is never this long
BATCH = 200  # lines parsed between two returns to the event loop (~1 ms of work)


@dataclass(slots=True)
class Position:
    dev: int
    ino: int
    offset: int


class PositionStore:
    """Positions of every followed file, in one JSON file (written atomically)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.positions: dict[str, Position] = {}
        if path is not None:
            self.positions = _load(path)

    def get(self, name: str) -> Position | None:
        return self.positions.get(name)

    def put(self, name: str, pos: Position) -> None:
        self.positions[name] = pos
        if self.path is None:
            return
        data = {k: [p.dev, p.ino, p.offset] for k, p in self.positions.items()}
        write_file(self.path, json.dumps({"version": 1, "files": data}), mode=0o600)


def _load(path: Path) -> dict[str, Position]:
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        return {str(k): Position(int(v[0]), int(v[1]), int(v[2])) for k, v in files.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        log.warning("%s: unreadable, following the mail logs from their ends: %s", path, exc)
        return {}


class LogFollower:
    """Calls ``on_line`` for every whole line appended to ``path``."""

    def __init__(
        self,
        path: Path,
        store: PositionStore,
        on_line: Callable[[str], None],
        on_read: Callable[[int, int, bool], None] = lambda lines, behind, up: None,
    ) -> None:
        self.path = path
        self.store = store
        self.on_line = on_line
        self.on_read = on_read  # (lines in this batch, bytes still unread, file readable)
        self._fd: int | None = None
        self._pos: Position | None = None
        self._partial = b""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def poll(self) -> int:
        """Read everything appended since the last poll; the number of lines handed on."""
        try:
            st = os.stat(self.path)
        except OSError:
            self.on_read(0, 0, False)
            return 0
        lines = 0
        if self._fd is None:
            self._open(st)
        elif self._pos is not None and (st.st_dev, st.st_ino) != (self._pos.dev, self._pos.ino):
            lines += await self._drain()  # rotated: the old file's last lines first
            self.close()
            self._open(st, rotated=True)
        lines += await self._drain()
        try:
            size = os.fstat(self._fd).st_size if self._fd is not None else 0
        except OSError:
            size = 0
        offset = self._pos.offset if self._pos is not None else 0
        self.on_read(lines, max(0, size - offset - len(self._partial)), True)
        return lines

    def _open(self, st: os.stat_result, rotated: bool = False) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        st = os.fstat(fd)
        saved = self.store.get(str(self.path))
        if rotated:
            offset = 0
        elif saved is not None and (saved.dev, saved.ino) == (st.st_dev, st.st_ino):
            offset = saved.offset if saved.offset <= st.st_size else 0
        elif saved is not None:
            offset = 0  # rotated while the agent was away: the new file is all new
        else:
            offset = st.st_size
        self._fd, self._pos, self._partial = fd, Position(st.st_dev, st.st_ino, offset), b""
        self.store.put(str(self.path), self._pos)

    async def _drain(self) -> int:
        assert self._fd is not None and self._pos is not None
        fd, pos, total = self._fd, self._pos, 0
        if os.fstat(fd).st_size < pos.offset + len(self._partial):
            pos.offset, self._partial = 0, b""  # truncated in place (copytruncate)
        while True:
            start = pos.offset + len(self._partial)
            data = await asyncio.to_thread(os.pread, fd, CHUNK, start)
            if not data:
                break
            lines = self._split(self._partial + data)
            for start_at in range(0, len(lines), BATCH):
                if start_at:
                    await asyncio.sleep(0)  # a burst is handed on in slices: the server answers
                for line in lines[start_at : start_at + BATCH]:
                    self.on_line(line)
            total += len(lines)
            if len(data) < CHUNK:
                break
        if total:
            self.store.put(str(self.path), pos)
        return total

    def _split(self, data: bytes) -> list[str]:
        """The whole lines of ``data``; the unfinished rest is kept for the next read."""
        assert self._pos is not None
        end = data.rfind(b"\n") + 1
        whole, rest = data[:end], data[end:]
        if len(rest) > MAX_LINE:  # no newline in sight: hand the piece on as a line
            whole, rest = data, b""
        self._pos.offset += len(whole)
        self._partial = rest
        return whole.decode("utf-8", errors="replace").splitlines()
