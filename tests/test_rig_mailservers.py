"""The mail-server fixtures of the rig start, answer on loopback, and stop."""

from __future__ import annotations

import socket
import ssl

from tests.rig.ca import TestCA
from tests.rig.clamd import Clamd
from tests.rig.dovecot import DovecotFactory
from tests.rig.postfix import PostfixFactory


def _banner(host: str, port: int, tls: ssl.SSLContext | None = None) -> bytes:
    with socket.create_connection((host, port), timeout=5) as raw:
        if tls is None:
            return raw.recv(200)
        with tls.wrap_socket(raw, server_hostname="localhost") as s:
            return s.recv(200)


def _closed(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return True
    return False


def test_clamd_answers_ping_on_tcp_and_unix_socket_and_stops(clamd: Clamd) -> None:
    with socket.create_connection((clamd.host, clamd.port), timeout=5) as s:
        s.sendall(b"zPING\0")
        assert s.recv(16) == b"PONG\0"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(clamd.socket_path))
        s.sendall(b"zSCAN " + str(clamd.sample).encode() + b"\0")
        assert b"FOUND" in s.recv(200)  # the tiny database really is loaded
    clamd.kill()
    assert _closed(clamd.host, clamd.port)


def test_dovecot_serves_imap_and_pop3_plain_and_tls(
    dovecot_factory: DovecotFactory, test_ca: TestCA
) -> None:
    dovecot = dovecot_factory(shared=False)
    tls = ssl.create_default_context(cafile=str(test_ca.ca_cert_path))
    assert _banner(dovecot.host, dovecot.imap).startswith(b"* OK")
    assert b"STARTTLS" in _banner(dovecot.host, dovecot.imap)
    assert _banner(dovecot.host, dovecot.imaps, tls).startswith(b"* OK")
    assert _banner(dovecot.host, dovecot.pop3).startswith(b"+OK")
    assert _banner(dovecot.host, dovecot.pop3s, tls).startswith(b"+OK")
    dovecot.stop()
    assert _closed(dovecot.host, dovecot.imap)


def test_postfix_greets_and_offers_starttls(postfix_factory: PostfixFactory) -> None:
    postfix = postfix_factory(shared=False)
    for port in (postfix.smtp, postfix.submission):
        with socket.create_connection((postfix.host, port), timeout=5) as s:
            f = s.makefile("rb")
            while (greeting := f.readline()).startswith(b"220-"):
                pass  # postscreen's pregreet test on the SMTP port: "220-", pause, "220 "
            assert greeting.startswith(b"220 mail.example.test ESMTP")
            s.sendall(b"EHLO test.example\r\n")
            lines = []
            while not (line := f.readline()).startswith(b"250 "):
                lines.append(line)
            assert b"250-STARTTLS\r\n" in lines
    postfix.stop()
    assert _closed(postfix.host, postfix.smtp)
