"""Memory a big mail state hands back (each case in a fresh interpreter: the heap's settings are
per process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Free a 24 MB buffer (glibc then raises its mmap threshold to 24 MB), make and free a 16 MB
# one, and print how much of it is still resident.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agent import heap

    def rss_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    if sys.argv[1] == "pinned":
        heap.keep_big_buffers_mapped()
    first = b"x" * (24 << 20)
    del first
    before = rss_mb()
    second = b"y" * (16 << 20)
    del second
    print(round(rss_mb() - before))
    """
)


def kept_mb(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_freed_big_buffer_leaves_the_process_once_pinned() -> None:
    assert kept_mb("default") >= 12  # glibc's own rule keeps it: what the pinning is for
    assert kept_mb("pinned") <= 2
