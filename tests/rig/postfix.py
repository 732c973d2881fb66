"""A real Postfix (Debian postfix) as the SMTP server, in the foreground on loopback.

Why Postfix and not aiosmtpd: DMS *is* Postfix, so the checks meet the real banner, EHLO
reply, STARTTLS and TLS stack they will meet in production; ``postfix start-fg`` (Postfix >=
3.3) runs the master in the foreground with a private ``config_directory``, so the machine's
own Postfix is not touched. Postfix drops privileges to its ``postfix`` user, which needs to
reach the queue and data folders: they live in a world-searchable temporary folder under /tmp
(pytest's own tmp folders are private to root). It listens on an SMTP port and a submission
port (both offer STARTTLS with a certificate from the test CA; ``expired=True`` serves an
expired one). Mail delivery is not configured: these servers are for probing.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rig.ca import TestCA
from tests.rig.proc import Daemon, free_port, require_binary, require_root

_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
myhostname = mail.example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = /dev/stdout
smtpd_banner = $myhostname ESMTP
alias_maps =
alias_database =
smtpd_tls_security_level = {tls_level}
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
# Port 25 goes through postscreen as in DMS. Loopback is NOT whitelisted here (DMS's
# mynetworks would whitelist it), so the pregreet test runs: a first "220-" line, a pause of
# postscreen_greet_wait, then smtpd's "220 " line. Clients must read multi-line greetings.
postscreen_access_list =
postscreen_greet_action = enforce
postscreen_greet_wait = 1s
postscreen_cache_map = btree:{dir}/data/postscreen_cache
"""

_MASTER_CF = """\
127.0.0.1:{smtp} inet n - n - 1 postscreen
smtpd     pass  -       -       n       -       -       smtpd
127.0.0.1:{submission} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


@dataclass
class Postfix:
    host: str
    smtp: int
    submission: int
    cert_path: Path
    config_dir: Path
    daemon: Daemon
    postfix: str

    def stop(self) -> None:
        # the `postfix` process only waits for master: stop master the documented way
        subprocess.run(
            [self.postfix, "-c", str(self.config_dir), "stop"], capture_output=True, timeout=20
        )
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.daemon.proc.wait(10)
        self.daemon.stop()
        # master is gone, but its children (postscreen holds the listening socket) notice it
        # a moment later: wait until both ports refuse, so "stopped" means stopped
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            _accepts(self.host, port) for port in (self.smtp, self.submission)
        ):
            time.sleep(0.05)


PostfixFactory = Callable[..., Postfix]


def start_postfix(
    test_ca: TestCA,
    expired: bool = False,
    days: int = 30,
    binary: str = "postfix",
    tls: bool = True,
    extra_main_cf: str = "",
) -> tuple[Postfix, Path]:
    """Start one Postfix; (server, its folder to remove after ``stop()``). Usable outside
    pytest (bench/). ``tls=False``: no STARTTLS, as DMS runs while SSL_TYPE is unset.
    ``extra_main_cf`` is appended to main.cf ({dir} names the folder); a parameter set twice
    takes its last value, as postconf reads it."""
    workdir = Path(tempfile.mkdtemp(prefix="postfix-", dir="/tmp"))
    workdir.chmod(0o755)  # the postfix user must reach its queue and data folders
    etc = workdir / "etc"
    for sub in ("etc", "queue", "data", "log"):
        (workdir / sub).mkdir()
    shutil.chown(workdir / "data", "postfix")
    shutil.chown(workdir / "log", "postfix")  # for a maillog_file there (postlogd)
    cert, key = test_ca.issue(["localhost", "127.0.0.1"], days=days, expired=expired)
    smtp, submission = free_port(), free_port()
    level = "may" if tls else "none"
    main_cf = _MAIN_CF.format(dir=workdir, cert=cert, key=key, tls_level=level)
    (etc / "main.cf").write_text(main_cf + extra_main_cf.replace("{dir}", str(workdir)))
    (etc / "master.cf").write_text(_MASTER_CF.format(smtp=smtp, submission=submission))
    daemon = Daemon("postfix", [binary, "-c", str(etc), "start-fg"], workdir)
    server = Postfix("127.0.0.1", smtp, submission, cert, etc, daemon, binary)
    try:
        daemon.wait_tcp(server.host, smtp, timeout=20)
        daemon.wait_tcp(server.host, submission, timeout=5)
    except BaseException:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return server, workdir


@pytest.fixture(scope="session")
def postfix_factory(test_ca: TestCA) -> Iterator[PostfixFactory]:
    """``start(expired=False, days=30, shared=True, tls=True) -> Postfix``.

    Postfix takes ~2 s to start, so shared servers (one per certificate kind) live for the
    whole session and tests must not stop them; ask ``shared=False`` for a private one to stop.
    All are stopped at the end.
    """
    require_root("postfix")
    binary = require_binary("postfix", "postfix")
    started: list[tuple[Postfix, Path]] = []
    shared_servers: dict[tuple[bool, int, bool], Postfix] = {}

    def start(
        expired: bool = False, days: int = 30, shared: bool = True, tls: bool = True
    ) -> Postfix:
        key = (expired, days, tls)
        if shared and key in shared_servers:
            return shared_servers[key]
        server, workdir = start_postfix(test_ca, expired, days, binary, tls)
        started.append((server, workdir))
        if shared:
            shared_servers[key] = server
        return server

    yield start
    for server, workdir in started:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def postfix(postfix_factory: PostfixFactory) -> Postfix:
    """A running Postfix with a valid test-CA certificate."""
    return postfix_factory()
