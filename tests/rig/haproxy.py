"""HAProxy (Debian ``haproxy``) in the foreground, master-worker mode, with config files the
test provides; ``reload()`` is the real thing (SIGUSR2 to the master, which re-reads them).

    def test_x(haproxy):
        base = haproxy.base_config()           # global + defaults + a readiness listener
        lb = tmp_path / "lb.cfg"; lb.write_text("")
        haproxy.start(base, lb)
        ...; haproxy.reload()                  # waits for "Loading success."

``reload_argv`` is the command a script (e.g. a webhook's) can run to reload it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig.logs import keep_logs
from tests.rig.proc import Daemon, free_port, require_binary

LOADED = "Loading success."

BASE = """\
global
    log stderr format short local0 info

defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend rig_ready
    bind 127.0.0.1:{port}
"""


class HAProxy:
    def __init__(self, request: pytest.FixtureRequest | None, workdir: Path, binary: str) -> None:
        self.request = request
        self.workdir = workdir
        self.binary = binary
        self.daemon: Daemon | None = None
        self.ready_port: int | None = None
        self.configs: list[Path] = []

    def base_config(self) -> Path:
        """global + defaults (tcp, short timeouts) + a listener used for readiness."""
        self.ready_port = free_port()
        path = self.workdir / "base.cfg"
        path.write_text(BASE.format(port=self.ready_port))
        return path

    def check_argv(self) -> list[str]:
        """``haproxy -c`` over the configs, as a hook script would run it before a reload."""
        argv = [self.binary, "-c", "-q"]
        for cfg in self.configs:
            argv += ["-f", str(cfg)]
        return argv

    def start(self, *configs: Path, ready_port: int | None = None) -> None:
        self.configs = list(configs)
        port = ready_port or self.ready_port
        if port is None:
            raise ValueError("give ready_port, or use base_config()")
        self.master_socket = self.workdir / "master.sock"
        argv = [self.binary, "-W", "-db", "-S", str(self.master_socket)]
        for cfg in configs:
            argv += ["-f", str(cfg)]
        self.daemon = Daemon("haproxy", argv, self.workdir)
        if self.request is not None:  # None outside pytest (bench/)
            keep_logs(self.request, self.daemon)
        self.daemon.wait_tcp("127.0.0.1", port)
        self._wait_loads(1)
        self._wait_master()

    def _wait_master(self, timeout: float = 10.0) -> None:
        """The master handles signals only once its loop runs (a SIGUSR2 sent right after
        "Loading success." is lost); its CLI answering proves the loop runs."""
        assert self.daemon is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(1)
                    s.connect(str(self.master_socket))
                    s.sendall(b"show proc\n")
                    if b"master" in s.recv(4096):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"haproxy master never answered:\n{self.daemon.logs()}")

    @property
    def master_pid(self) -> int:
        assert self.daemon is not None, "start() first"
        return self.daemon.proc.pid

    @property
    def reload_argv(self) -> list[str]:
        return ["kill", "-USR2", str(self.master_pid)]

    def loads(self) -> int:
        """How many times a configuration was loaded (1 after start, +1 per reload)."""
        assert self.daemon is not None
        return self.daemon.logs().count(LOADED)

    def reload(self, timeout: float = 10.0) -> None:
        assert self.daemon is not None
        before = self.loads()
        self.daemon.proc.send_signal(12)  # SIGUSR2: the master re-reads the config files
        self._wait_loads(before + 1, timeout)
        self._wait_master()

    def _wait_loads(self, count: int, timeout: float = 10.0) -> None:
        assert self.daemon is not None
        deadline = time.monotonic() + timeout
        while self.loads() < count:
            if self.daemon.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not load its config:\n{self.daemon.logs()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()


@pytest.fixture
def haproxy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HAProxy]:
    binary = require_binary("haproxy", "haproxy")
    workdir = tmp_path / "haproxy"
    workdir.mkdir()
    rig = HAProxy(request, workdir, binary)
    yield rig
    rig.stop()
