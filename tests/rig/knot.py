"""A real authoritative DNS server for tests: Debian's Knot DNS (``knotd``) on 127.0.0.1.

``knot_factory(zones)`` writes the zone files the test gives (name -> zone text), starts
``knotd`` in the foreground on a free port (UDP and TCP), and returns once every zone answers
a real SOA query. A zone text without an SOA gets a default SOA and NS prepended. A zone whose
text is ``None`` is configured without a file: knotd answers SERVFAIL for it (a broken zone).
The server stops at the end of the session; its log is attached to the report of any test that
fails while it runs, and is part of the error when it does not start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.rig.proc import Daemon, free_port, require_binary

_RUNNING: list[KnotServer] = []


@dataclass
class KnotServer:
    daemon: Daemon
    host: str
    port: int
    zones: tuple[str, ...]

    @property
    def nameserver(self) -> str:
        """``HOST:PORT``, as ``dns.nameservers`` takes it."""
        return f"{self.host}:{self.port}"

    def logs(self) -> str:
        return self.daemon.logs()

    def stop(self) -> None:
        self.daemon.stop()
        if self in _RUNNING:
            _RUNNING.remove(self)


def _zone_text(origin: str, text: str) -> str:
    head = f"$ORIGIN {origin}.\n$TTL 300\n"
    if " SOA " not in text.upper():
        head += (
            f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n"
            f"@ IN NS ns.{origin}.\nns IN A 127.0.0.1\n"
        )
    return head + text.strip() + "\n"


def _config(workdir: Path, port: int, zones: dict[str, str | None]) -> str:
    lines = [
        "server:",
        f'    rundir: "{workdir}"',
        f"    listen: 127.0.0.1@{port}",
        "    udp-workers: 1",
        "    tcp-workers: 1",
        "    background-workers: 1",
        "database:",
        f'    storage: "{workdir}/db"',
        "log:",
        "  - target: stdout",
        "    any: info",
        "template:",
        "  - id: default",
        f'    storage: "{workdir}/zones"',
        "    zonefile-sync: -1",
        "    journal-content: none",
        "    semantic-checks: off",
        "zone:",
    ]
    for name in zones:
        lines += [f"  - domain: {name}", f"    file: {name}.zone"]
    return "\n".join(lines) + "\n"


def start_knot(workdir: Path, zones: dict[str, str | None], timeout: float = 10.0) -> KnotServer:
    knotd = require_binary("knotd", "knot")
    (workdir / "zones").mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(exist_ok=True)
    for name, text in zones.items():
        if text is not None:
            (workdir / "zones" / f"{name}.zone").write_text(_zone_text(name, text))
    port = free_port()
    conf = workdir / "knot.conf"
    conf.write_text(_config(workdir, port, zones))
    daemon = Daemon("knotd", [knotd, "-c", str(conf)], workdir)
    server = KnotServer(daemon, "127.0.0.1", port, tuple(n for n, t in zones.items() if t))
    try:
        _wait_ready(server, timeout)
    except Exception:
        daemon.stop()
        raise
    _RUNNING.append(server)
    return server


def _wait_ready(server: KnotServer, timeout: float) -> None:
    """Ready = every zone answers its SOA authoritatively (a real query, not a port probe)."""
    deadline = time.monotonic() + timeout
    pending = list(server.zones)
    last = "no answer yet"
    while pending:
        if server.daemon.proc.poll() is not None:
            raise RuntimeError(
                f"knotd exited with {server.daemon.proc.returncode}:\n{server.logs()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"knotd not ready ({last}):\n--- log ---\n{server.logs()}")
        zone = pending[0]
        try:
            query = dns.message.make_query(zone + ".", "SOA")
            reply = dns.query.udp(query, server.host, port=server.port, timeout=0.2)
            if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                pending.pop(0)
                continue
            last = f"{zone}: {dns.rcode.to_text(reply.rcode())}"
        except (dns.exception.Timeout, OSError) as exc:
            last = f"{zone}: {type(exc).__name__}"
        time.sleep(0.02)


@pytest.fixture(scope="session")
def knot_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[dict[str, str | None]], KnotServer]]:
    servers: list[KnotServer] = []

    def start(zones: dict[str, str | None]) -> KnotServer:
        server = start_knot(tmp_path_factory.mktemp("knot"), zones)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.failed:
        for server in _RUNNING:
            report.sections.append((f"knotd log (port {server.port})", server.logs()[-4000:]))
    return report
