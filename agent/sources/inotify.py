"""Folder change notification straight from Linux inotify, on the event loop (no thread).

Why not only watchfiles: its change thread wakes up every ``step`` milliseconds to look for
changes and for its stop event — measured here ~0.25% CPU per watched folder at 10 ms, ~0.08%
at 50 ms, and 50 ms costs 60-120 ms of latency. inotify's descriptor is readable only when
something happened: no wake-ups while idle, the event as soon as the kernel queues it.
watchfiles stays the fallback where inotify cannot be had (another OS, no libc symbol).

A watch on the folder (not on the files: kubelet replaces them) reports entry names; kubelet's
update shows up as ``..data_tmp`` renamed to ``..data``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
from pathlib import Path
from types import TracebackType

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000

MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)  # fmt: skip
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
OVERFLOW = "*"  # the kernel dropped events: treat as "anything may have changed"
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


class InotifyUnavailable(OSError):
    pass


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError) as exc:
        raise InotifyUnavailable(f"inotify not available: {exc}") from None
    return libc


class FolderWatch:
    """``async with FolderWatch(folder) as w: names = await w.changes(timeout)``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd = -1
        self.gone = False
        self._pending: set[str] = set()
        self._ready = asyncio.Event()

    async def __aenter__(self) -> FolderWatch:
        libc = _libc()
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise InotifyUnavailable(os.strerror(ctypes.get_errno()))
        if libc.inotify_add_watch(fd, os.fsencode(self.folder), MASK) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise InotifyUnavailable(f"{self.folder}: {os.strerror(err)}")
        self.fd = fd
        asyncio.get_running_loop().add_reader(fd, self._readable)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.fd >= 0:
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        while offset + _HEADER.size <= len(data):
            _, mask, _, length = _HEADER.unpack_from(data, offset)
            raw = data[offset + _HEADER.size : offset + _HEADER.size + length]
            offset += _HEADER.size + length
            if mask & IN_Q_OVERFLOW:
                self._pending.add(OVERFLOW)
            if mask & GONE:
                self.gone = True
            name = raw.rstrip(b"\0")
            if name:
                self._pending.add(os.fsdecode(name))
        self._ready.set()

    async def changes(self, timeout: float | None) -> set[str]:
        """The names changed since the last call; empty after ``timeout`` with no change."""
        if not self._pending and not self.gone:
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return set()
        self._ready.clear()
        names, self._pending = self._pending, set()
        return names
