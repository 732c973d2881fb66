"""The C heap of a process that holds a big mail state: freed buffers go back to the system.

glibc's malloc raises its mmap threshold to the size of the largest block freed (up to 32 MiB):
after the first big file text is freed, later buffers of that size come from the main heap,
whose free space is rarely returned. At 100,000 accounts one reconcile pass then left ~70 MB
more resident than it used. Pinning the threshold at 1 MiB keeps every big buffer in its own
mapping, unmapped when freed; ``release_free_memory`` hands back what a big parse left free.
Both are no-ops without glibc. Called only once the state is big: small states and the CLI
never load ctypes.
"""

from __future__ import annotations

from typing import Any

MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h

_libc: Any = None  # None: not looked up yet; False: not glibc


def _glibc() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        try:
            lib = ctypes.CDLL("libc.so.6")
            _libc = lib if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else False
        except OSError:
            _libc = False
        if _libc:
            _libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)  # once: fixed from now on
    return _libc


def keep_big_buffers_mapped() -> None:
    """From now on, buffers of 1 MiB and more are returned to the system when freed."""
    _glibc()


def release_free_memory() -> None:
    """Return the heap's free pages to the system (after a big parse)."""
    lib = _glibc()
    if lib:
        lib.malloc_trim(0)
