"""Each check kind against the rig's real servers, and each failure reason."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import TypeAdapter

from agent.checks.config import CheckSpec
from agent.checks.probes import Outcome, ProbeEnv, run_probe
from tests.checks_support import RecordingExecutor, silent_server
from tests.rig.ca import TestCA
from tests.rig.clamd import Clamd
from tests.rig.dovecot import Dovecot, DovecotFactory
from tests.rig.postfix import Postfix, PostfixFactory
from tests.rig.proc import free_port, process_alive

SPEC = TypeAdapter(CheckSpec)


async def probe(env: ProbeEnv | None = None, **fields: object) -> Outcome:
    spec = SPEC.validate_python({"name": "t", "timeout": 3, **fields})
    return await run_probe(spec, env or ProbeEnv())


def days_left(outcome: Outcome) -> float:
    assert outcome.cert_not_after is not None
    return (outcome.cert_not_after - time.time()) / 86400


# --- SMTP (Postfix) ------------------------------------------------------------------------


async def test_smtp_starttls_on_both_ports_records_certificate(postfix: Postfix) -> None:
    for port in (postfix.smtp, postfix.submission):
        outcome = await probe(kind="smtp", port=port, tls="starttls")
        assert outcome.ok, outcome
        assert 29 < days_left(outcome) < 31
        assert outcome.warnings == ()


async def test_smtp_verified_with_the_test_ca(postfix: Postfix, test_ca: TestCA) -> None:
    options = {"verify": True, "caFile": str(test_ca.ca_cert_path), "serverName": "localhost"}
    assert (await probe(kind="smtp", port=postfix.smtp, tlsOptions=options)).ok
    wrong = {**options, "serverName": "mail.elsewhere.test"}
    outcome = await probe(kind="smtp", port=postfix.smtp, tlsOptions=wrong)
    assert (outcome.ok, outcome.reason) == (False, "tls")
    assert "Hostname mismatch" in outcome.message


async def test_smtp_expired_certificate_fails_with_tls(postfix_factory: PostfixFactory) -> None:
    server = postfix_factory(expired=True)
    outcome = await probe(kind="smtp", port=server.smtp, tls="starttls")
    assert (outcome.ok, outcome.reason) == (False, "tls")
    assert "certificate expired on" in outcome.message
    assert days_left(outcome) < 0  # notAfter still recorded for the metric


async def test_certificate_expiring_soon_warns_but_passes(postfix_factory: PostfixFactory) -> None:
    server = postfix_factory(days=5)
    outcome = await probe(kind="smtp", port=server.submission)
    assert outcome.ok
    assert len(outcome.warnings) == 1 and "expires in 5.0 days" in outcome.warnings[0]


async def test_smtp_without_tls_only_needs_banner_and_ehlo(postfix: Postfix) -> None:
    outcome = await probe(kind="smtp", port=postfix.smtp, tls="none")
    assert outcome.ok and outcome.cert_not_after is None


async def test_smtp_check_on_an_imap_port_is_a_wrong_banner(dovecot: Dovecot) -> None:
    outcome = await probe(kind="smtp", port=dovecot.imap)
    assert (outcome.ok, outcome.reason) == (False, "banner")
    assert "* OK" in outcome.message


# --- IMAP / POP3 (Dovecot) -------------------------------------------------------------------


async def test_imap_and_pop3_plain_starttls_and_implicit_tls(dovecot: Dovecot) -> None:
    cases = [
        ("imap", dovecot.imap, "starttls"),
        ("imap", dovecot.imaps, "implicit"),
        ("imap", dovecot.imap, "none"),
        ("pop3", dovecot.pop3, "starttls"),
        ("pop3", dovecot.pop3s, "implicit"),
        ("pop3", dovecot.pop3, "none"),
    ]
    for kind, port, tls in cases:
        outcome = await probe(kind=kind, port=port, tls=tls)
        assert outcome.ok, (kind, tls, outcome)
        assert (outcome.cert_not_after is None) == (tls == "none")


async def test_imaps_with_expired_certificate(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(expired=True)
    for kind, port in (("imap", server.imaps), ("pop3", server.pop3)):
        outcome = await probe(
            kind=kind, port=port, tls="implicit" if kind == "imap" else "starttls"
        )
        assert (outcome.ok, outcome.reason) == (False, "tls"), outcome


async def test_imap_check_on_smtp_and_pop3_ports_is_a_wrong_banner(
    postfix: Postfix, dovecot: Dovecot
) -> None:
    assert (await probe(kind="imap", port=postfix.smtp)).reason == "banner"
    assert (await probe(kind="pop3", port=dovecot.imap)).reason == "banner"


# --- closed port, silent server ------------------------------------------------------------


async def test_closed_port_is_connect_failure() -> None:
    port = free_port()
    for kind in ("tcp", "smtp", "imap", "pop3", "clamd"):
        outcome = await probe(kind=kind, port=port)
        assert (outcome.ok, outcome.reason) == (False, "connect"), kind
        assert "Connection refused" in outcome.message


async def test_server_that_accepts_and_never_answers_times_out() -> None:
    with silent_server() as port:
        for kind in ("smtp", "imap", "pop3", "clamd"):
            # the probe's own deadline ends it (its figure: bench/deadlines.py)
            outcome = await probe(kind=kind, port=port, timeout=0.3)
            assert (outcome.ok, outcome.reason) == (False, "timeout"), kind
            assert "within 0.3s" in outcome.message, outcome
        assert (await probe(kind="tcp", port=port)).ok  # tcp only proves the listener


# --- clamd --------------------------------------------------------------------------------


async def test_clamd_ping_over_tcp_and_unix_socket(clamd: Clamd) -> None:
    assert (await probe(kind="clamd", port=clamd.port)).ok
    assert (await probe(kind="clamd", socket=str(clamd.socket_path))).ok
    clamd.kill()  # as the OOM killer would: the socket file stays behind
    outcome = await probe(kind="clamd", socket=str(clamd.socket_path))
    assert (outcome.ok, outcome.reason) == (False, "connect")


async def test_clamd_check_on_an_smtp_server_is_a_protocol_failure(postfix: Postfix) -> None:
    outcome = await probe(kind="clamd", port=postfix.smtp)
    assert (outcome.ok, outcome.reason) == (False, "protocol")


# --- http --------------------------------------------------------------------------------


async def test_http_status_and_body(aiohttp_server: object) -> None:
    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong\r\n")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_get("/broken", broken)
    server = await aiohttp_server(app)  # type: ignore[operator]
    base = f"http://127.0.0.1:{server.port}"
    assert (await probe(kind="http", url=f"{base}/ping", bodyContains="pong")).ok
    wrong_body = await probe(kind="http", url=f"{base}/ping", bodyContains="PONG")
    assert (wrong_body.ok, wrong_body.reason) == (False, "protocol")
    wrong_status = await probe(kind="http", url=f"{base}/broken")
    assert "HTTP 503" in wrong_status.message
    closed = await probe(kind="http", url=f"http://127.0.0.1:{free_port()}/ping")
    assert closed.reason == "connect"


# --- exec --------------------------------------------------------------------------------


async def test_exec_seed_form_runs_in_sequence_and_names_the_failing_command(
    tmp_path: Path,
) -> None:
    env = ProbeEnv(executor=RecordingExecutor())
    marker = tmp_path / "ran"
    assert (await probe(env, kind="exec", commands=["true", f"touch {marker}"])).ok
    assert marker.exists()
    outcome = await probe(env, kind="exec", commands=["true", "echo broken >&2; exit 1", "true"])
    assert (outcome.ok, outcome.reason) == (False, "exit-code")
    assert "exited 1: broken" in outcome.message
    assert (await probe(env, kind="exec", commands=[["test", "-d", str(tmp_path)]])).ok


async def test_exec_hanging_command_times_out_and_is_killed(tmp_path: Path) -> None:
    env = ProbeEnv(executor=RecordingExecutor())
    pid_file = tmp_path / "pid"
    command = f"echo $$ > {pid_file}; exec sleep 30"
    outcome = await probe(env, kind="exec", commands=[command], timeout=0.3)
    assert (outcome.ok, outcome.reason) == (False, "timeout")
    # the executor's far-side deadline (timeout -k, whole seconds) kills it, long before 30 s
    pid = int(pid_file.read_text())
    async with asyncio.timeout(10):
        while process_alive(pid):
            await asyncio.sleep(0.05)


async def test_exec_without_executor_is_unknown_not_a_pass() -> None:
    outcome = await probe(kind="exec", commands=["true"])
    assert (outcome.ok, outcome.reason) == (False, "unknown")


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "clamd"},
        {"kind": "clamd", "port": 3310, "socket": "/x"},
        {"kind": "exec", "commands": []},
        {"kind": "smtp", "tls": "ssl"},
        {"kind": "ftp"},
    ],
)
def test_bad_check_specs_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SPEC.validate_python({"name": "t", **fields})


async def test_http_check_on_an_imap_port_is_a_one_line_protocol_failure(dovecot: Dovecot) -> None:
    outcome = await probe(kind="http", url=f"http://127.0.0.1:{dovecot.imap}/ping")
    assert (outcome.ok, outcome.reason) == (False, "protocol")
    assert "\n" not in outcome.message and "* OK" in outcome.message


async def test_exec_with_a_broken_executor_is_unknown() -> None:
    class Broken:
        async def run(self, argv: object, stdin: object = None, timeout: float = 60) -> None:
            raise ConnectionResetError("exec stream lost")

    outcome = await probe(ProbeEnv(executor=Broken()), kind="exec", commands=["true"])  # type: ignore[arg-type]
    assert (outcome.ok, outcome.reason) == (False, "unknown")
    assert "ConnectionResetError: exec stream lost" in outcome.message
