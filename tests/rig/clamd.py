"""A real `clamd` (Debian clamav-daemon) on loopback with a one-signature database.

No signature download: the database folder holds one ``.hdb`` line made by ``sigtool --md5``
over ``eicar_like`` (a harmless sample file the fixture writes), so clamd starts in about a
second and uses little memory. It listens on TCP and on a unix socket (DMS's own clamd uses a
unix socket), runs as root in the foreground, and can be killed and restarted by tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig.proc import Daemon, free_port, require_binary, require_root

SAMPLE = b"dms-agent test sample: not a virus, matched by the test database\n"


def make_database(folder: Path, sigtool: str = "sigtool") -> Path:
    """Write the sample file and a one-line MD5 database matching it; return the sample."""
    folder.mkdir(parents=True, exist_ok=True)
    sample = folder.parent / "sample.txt"
    sample.write_bytes(SAMPLE)
    line = subprocess.run(
        [sigtool, "--md5", str(sample)], capture_output=True, text=True, check=True
    ).stdout
    (folder / "test.hdb").write_text(line)
    return sample


class Clamd:
    """One clamd instance; ``start()``/``stop()``/``kill()`` may be called repeatedly."""

    def __init__(self, workdir: Path) -> None:
        require_root("clamd")
        self.clamd = require_binary("clamd", "clamav-daemon")
        sigtool = require_binary("sigtool", "clamav")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        # unix socket paths are limited to 108 bytes: keep it short, outside pytest's deep tmp
        self._sockdir = Path(tempfile.mkdtemp(prefix="clamd-", dir="/tmp"))
        self.socket_path = self._sockdir / "clamd.sock"
        self.database = workdir / "db"
        self.sample = make_database(self.database, sigtool)
        self.config_path = workdir / "clamd.conf"
        self.config_path.write_text(
            f"DatabaseDirectory {self.database}\n"
            f"TCPSocket {self.port}\nTCPAddr {self.host}\n"
            f"LocalSocket {self.socket_path}\n"
            "User root\nForeground yes\nLogTime yes\n"
            f"PidFile {workdir / 'clamd.pid'}\n"
        )
        # the same clamd, daemonizing: what a supervisor's restart leaves behind
        self.background_config_path = workdir / "clamd-background.conf"
        self.background_pidfile = workdir / "clamd-background.pid"
        self.background_config_path.write_text(
            self.config_path.read_text()
            .replace("Foreground yes", "Foreground no")
            .replace(str(workdir / "clamd.pid"), str(self.background_pidfile))
            + f"LogFile {workdir / 'clamd-background.log'}\n"
        )
        self.daemon: Daemon | None = None
        self.starts = 0

    def restart_command(self) -> list[str]:
        """A command that starts clamd again in the background (as ``supervisorctl restart``
        would) and returns once it has forked; ``cleanup()`` stops that instance too."""
        return ["sh", "-c", f"exec {self.clamd} -c {self.background_config_path} >/dev/null 2>&1"]

    def start(self, timeout: float = 20.0) -> None:
        self.starts += 1
        self.daemon = Daemon(
            f"clamd{self.starts}", [self.clamd, "-c", str(self.config_path)], self.workdir
        )
        self.daemon.wait_tcp(self.host, self.port, timeout)

    @property
    def running(self) -> bool:
        return self.daemon is not None and self.daemon.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer would do: no cleanup, the socket file stays."""
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.proc.kill()
            self.daemon.proc.wait()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.background_pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.05)
        shutil.rmtree(self._sockdir, ignore_errors=True)


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[Clamd]:
    """A running clamd (TCP ``host``/``port`` and ``socket_path``), stopped after the test."""
    server = Clamd(tmp_path / "clamd")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
