"""Start and stop real daemons for tests: free loopback ports, readiness, logs kept on failure.

Every fixture that runs a real server uses ``Daemon``. Under ``CI=true`` a missing binary fails
the test run; elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_binary(name: str, package: str) -> str:
    """Path of ``name``, or skip (fail under CI=true) saying which Debian package brings it."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = f"{name} not installed (Debian package {package}; .ci/run installs it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the test process dies, so a
    killed test run never leaves daemons behind (PR_SET_PDEATHSIG, Linux)."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def wait_for_port(
    host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Daemon:
    """A foreground daemon with its output in ``log_path``; ``stop()`` ends it."""

    def __init__(
        self, name: str, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_tcp(self, host: str, port: int, timeout: float = 10.0) -> None:
        try:
            wait_for_port(host, port, timeout, self.proc)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(
                f"{self.name} did not start: {exc}\n--- log ---\n{self.logs()}"
            ) from None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def require_root(server: str) -> None:
    """Skip (fail under CI=true) when not root: some real servers drop privileges to their
    own users and cannot start otherwise."""
    if os.geteuid() != 0:
        message = f"{server} fixture needs root (it drops privileges to its own user)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still exists (a reaped process does not; a zombie still does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
