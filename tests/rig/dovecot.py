"""A real Dovecot (Debian dovecot-imapd/-pop3d) serving IMAP and POP3, plain and TLS.

Four loopback listeners: ``imap`` (STARTTLS offered), ``imaps`` (implicit TLS), ``pop3``
(STLS offered) and ``pop3s``. The certificate comes from the throwaway test CA; pass
``expired=True`` to serve an expired one. Logins use a static password (``test``) so nothing
on the machine is touched. Dovecot runs as root in the foreground with its base, state and log
folders in a temporary folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rig.ca import TestCA
from tests.rig.proc import Daemon, free_port, require_binary, require_root

_CONFIG = """\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot-internal.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
passdb {{
  driver = static
  args = password=test
}}
userdb {{
  driver = static
  args = uid=root gid=root home={dir}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
"""


@dataclass
class Dovecot:
    host: str
    imap: int
    imaps: int
    pop3: int
    pop3s: int
    cert_path: Path
    daemon: Daemon

    def stop(self) -> None:
        self.daemon.stop()


DovecotFactory = Callable[..., Dovecot]


def start_dovecot(
    workdir: Path, test_ca: TestCA, expired: bool = False, days: int = 30, binary: str = "dovecot"
) -> Dovecot:
    """Start one Dovecot in ``workdir`` (also usable outside pytest, e.g. by bench/)."""
    for sub in ("run", "state", "home"):
        (workdir / sub).mkdir(parents=True)
    cert, key = test_ca.issue(["localhost", "127.0.0.1"], days=days, expired=expired)
    ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
    conf = workdir / "dovecot.conf"
    conf.write_text(_CONFIG.format(dir=workdir, cert=cert, key=key, **ports))
    daemon = Daemon("dovecot", [binary, "-F", "-c", str(conf)], workdir)
    server = Dovecot("127.0.0.1", cert_path=cert, daemon=daemon, **ports)
    try:
        for port in ports.values():
            daemon.wait_tcp(server.host, port)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def dovecot_factory(
    tmp_path_factory: pytest.TempPathFactory, test_ca: TestCA
) -> Iterator[DovecotFactory]:
    """``start(expired=False, days=30, shared=True) -> Dovecot``.

    Shared servers (one per certificate kind) live for the whole session, so tests must not
    stop them; ask ``shared=False`` for a private one to stop. All are stopped at the end.
    """
    require_root("dovecot")
    binary = require_binary("dovecot", "dovecot-imapd")
    started: list[Dovecot] = []
    shared_servers: dict[tuple[bool, int], Dovecot] = {}

    def start(expired: bool = False, days: int = 30, shared: bool = True) -> Dovecot:
        if shared and (expired, days) in shared_servers:
            return shared_servers[(expired, days)]
        server = start_dovecot(tmp_path_factory.mktemp("dovecot"), test_ca, expired, days, binary)
        started.append(server)
        if shared:
            shared_servers[(expired, days)] = server
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def dovecot(dovecot_factory: DovecotFactory) -> Dovecot:
    """A running Dovecot with a valid test-CA certificate."""
    return dovecot_factory()
