"""The one file writer: every file the agent writes goes through here.

A reader sees the old content or the new, never a part, and nobody who can write to the target
folder can redirect the write: the temp file gets a random name and is created with
``O_EXCL|O_NOFOLLOW`` (a symlink planted at that name makes the create fail, it is never
followed), its mode is set on the open descriptor (no window where the hashes sit at the umask's
mode), it is fsynced, renamed over the target inside the same folder (a rename replaces a name and
never follows a link there) and the folder is fsynced so the rename survives a power cut.

A symlink at the target is refused rather than silently replaced: whoever put it there meant
something, and the error names the path. All functions block: call them from a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

_TEMP_ATTEMPTS = 16
_CHUNK = 1 << 16  # streamed data is written in pieces of about this size
Data = str | bytes | Iterable[str]  # an iterable is streamed: never all of it in memory
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_file(
    path: Path,
    data: Data,
    mode: int | None = None,
    *,
    make_parents: bool = False,
) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``mode`` None keeps the mode of the file being replaced (0644 for a new one).
    """
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        current = _target_mode(path, dir_fd)
        final_mode = (current or 0o644) if mode is None else mode
        tmp_name, fd = _create_temp(path.name, dir_fd)
        try:
            try:
                os.fchmod(fd, final_mode)  # on the descriptor: the umask cannot cut it
                _write_data(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp_name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def append_file(path: Path, data: Data, mode: int = 0o600) -> None:
    """Append ``data`` and fsync; a symlink at ``path`` is refused, never followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = _open_nofollow(path, flags, mode)
    try:
        _write_data(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def truncate_file(path: Path, size: int) -> None:
    """Cut ``path`` to ``size`` bytes and fsync; a symlink there is refused, never followed."""
    fd = _open_nofollow(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def open_private(path: Path, mode: int = 0o600) -> int:
    """Open (creating) ``path`` read-write without following a symlink; the caller closes."""
    return _open_nofollow(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def _open_nofollow(path: Path, flags: int, mode: int) -> int:
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink_refused(path) from None
        raise


def _target_mode(path: Path, dir_fd: int) -> int | None:
    """The mode of the file at ``path`` (None: no file); a symlink there is refused."""
    try:
        st = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _symlink_refused(path)
    return stat.S_IMODE(st.st_mode)


def _create_temp(name: str, dir_fd: int) -> tuple[str, int]:
    # A planted file or link at one random name only costs a retry; O_EXCL never opens it.
    for _ in range(_TEMP_ATTEMPTS):
        tmp_name = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            return tmp_name, os.open(tmp_name, _CREATE, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temp name beside {name}")


def _write_data(fd: int, data: Data) -> None:
    if isinstance(data, bytes):
        _write_all(fd, data)
    elif isinstance(data, str):
        _write_all(fd, data.encode("utf-8"))
    else:
        pending: list[str] = []
        size = 0
        for piece in data:
            pending.append(piece)
            size += len(piece)
            if size >= _CHUNK:
                _write_all(fd, "".join(pending).encode("utf-8"))
                pending, size = [], 0
        _write_all(fd, "".join(pending).encode("utf-8"))


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def _symlink_refused(path: Path) -> OSError:
    return OSError(
        errno.ELOOP, "is a symbolic link; the agent does not write through links", str(path)
    )
