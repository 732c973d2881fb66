"""One probe per check kind: a single attempt, returning an Outcome, never raising.

Each probe is plain asyncio streams (no thread, nothing blocking) under one deadline, so a
server that accepts and never answers costs a timeout, not a stuck loop. Failures carry a
bounded ``reason`` (the metric label): connect, timeout, banner, tls, protocol, exit-code,
unknown.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from agent.checks.config import (
    CheckSpec,
    ClamdCheck,
    ExecCheck,
    HttpCheck,
    ImapCheck,
    Pop3Check,
    SmtpCheck,
    TcpCheck,
    TlsMode,
    TlsOptions,
)
from agent.checks.tlscert import CertificateParseError, not_after
from agent.executor import Executor

REASONS = ("connect", "timeout", "banner", "tls", "protocol", "exit-code", "unknown")
_MAX_TEXT = 240  # server text quoted in messages: enough to diagnose, bounded


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str | None = None  # one of REASONS when not ok
    message: str = ""
    duration: float = 0.0
    cert_not_after: float | None = None  # unix time, when a handshake showed a certificate
    warnings: tuple[str, ...] = ()


class ProbeFailure(Exception):
    def __init__(self, reason: str, message: str, cert_not_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.cert_not_after = cert_not_after


@dataclass(slots=True)
class ProbeEnv:
    """What probes need besides their spec."""

    executor: Executor | None = None
    warning_days: float = 14.0
    now: Callable[[], float] = time.time
    tls_contexts: dict[TlsOptions, ssl.SSLContext] = field(default_factory=dict)

    def tls(self, options: TlsOptions) -> ssl.SSLContext:
        ctx = self.tls_contexts.get(options)
        if ctx is None:
            ctx = self.tls_contexts[options] = make_tls_context(options)
        return ctx


def make_tls_context(options: TlsOptions) -> ssl.SSLContext:
    """Built once per distinct options (it may read CA files): call outside the hot path."""
    if options.verify:
        cafile = str(options.ca_file) if options.ca_file else None
        return ssl.create_default_context(cafile=cafile)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # names rarely match on loopback; expiry is judged below
    return ctx


def _clip(text: str) -> str:
    text = " ".join(text.split())  # one line: messages go into /healthz lines and the file
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


# --- connections and TLS ---------------------------------------------------------------


@dataclass(slots=True)
class _Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    not_after: float | None = None
    warnings: list[str] = field(default_factory=list)

    async def line(self, reason: str = "protocol") -> str:
        raw = await self.reader.readline()
        if not raw:
            raise ProbeFailure(reason, "connection closed by the server")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def send(self, text: str) -> None:
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


_Track = list[_Session]  # every connection a probe opened, closed whatever the outcome


def _os_error(exc: OSError) -> str:
    # asyncio words a refused connection as "Connect call failed (addr)": name the errno
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _tls_failure(exc: ssl.SSLError) -> ProbeFailure:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProbeFailure("tls", f"certificate not trusted: {exc.verify_message}")
    return ProbeFailure("tls", f"TLS handshake: {exc.reason or exc}")


async def _connect(
    host: str, port: int, tls: ssl.SSLContext | None, server_name: str | None, track: _Track
) -> _Session:
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=(server_name or host) if tls else None
        )
    except ssl.SSLError as exc:
        raise _tls_failure(exc) from None
    except OSError as exc:
        raise ProbeFailure("connect", f"{host}:{port}: {_os_error(exc)}") from None
    session = _Session(reader, writer)
    track.append(session)
    return session


async def _start_tls(session: _Session, ctx: ssl.SSLContext, server_name: str) -> None:
    try:
        await session.writer.start_tls(ctx, server_hostname=server_name)
    except ssl.SSLError as exc:
        raise _tls_failure(exc) from None


def _judge_certificate(session: _Session, env: ProbeEnv) -> None:
    """Record notAfter; an expired certificate fails, one expiring soon warns."""
    ssl_object = session.writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise ProbeFailure("tls", "the server presented no certificate")
    try:
        expiry = not_after(der)
    except CertificateParseError as exc:  # our reader's limit, not the server's fault
        session.warnings.append(f"could not read the certificate's expiry: {exc}")
        return
    session.not_after = expiry.timestamp()
    left = (session.not_after - env.now()) / 86400
    when = expiry.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if left < 0:
        raise ProbeFailure("tls", f"certificate expired on {when}", session.not_after)
    if left < env.warning_days:
        session.warnings.append(f"certificate expires in {left:.1f} days ({when})")


async def _open(
    host: str, port: int, mode: TlsMode, options: TlsOptions, env: ProbeEnv, track: _Track
) -> _Session:
    implicit = env.tls(options) if mode == "implicit" else None
    session = await _connect(host, port, implicit, options.server_name, track)
    if implicit is not None:
        _judge_certificate(session, env)
    return session


async def _upgrade(session: _Session, host: str, options: TlsOptions, env: ProbeEnv) -> None:
    await _start_tls(session, env.tls(options), options.server_name or host)
    _judge_certificate(session, env)


# --- protocols ---------------------------------------------------------------------------


async def _smtp_reply(session: _Session, reason: str = "protocol") -> tuple[int, list[str]]:
    texts: list[str] = []
    while True:
        line = await session.line(reason)
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
            raise ProbeFailure(reason, f"not an SMTP reply: {_clip(line)!r}")
        texts.append(line[4:])
        if line[3:4] != "-":
            return int(line[:3]), texts


async def probe_smtp(spec: SmtpCheck, env: ProbeEnv, track: _Track) -> _Session:
    session = await _open(spec.host, spec.port, spec.tls, spec.tls_options, env, track)
    code, texts = await _smtp_reply(session, "banner")
    if code != 220:
        raise ProbeFailure("banner", f"greeting {code} {_clip(' '.join(texts))}")
    await session.send(f"EHLO {spec.ehlo}")
    code, texts = await _smtp_reply(session)
    if code != 250:
        raise ProbeFailure("protocol", f"EHLO answered {code} {_clip(' '.join(texts))}")
    if spec.tls == "starttls":
        if not any(t.upper().split(" ")[0] == "STARTTLS" for t in texts[1:]):
            raise ProbeFailure("tls", "STARTTLS is not offered")
        await session.send("STARTTLS")
        code, texts = await _smtp_reply(session)
        if code != 220:
            raise ProbeFailure("tls", f"STARTTLS answered {code} {_clip(' '.join(texts))}")
        await _upgrade(session, spec.host, spec.tls_options, env)
        await session.send(f"EHLO {spec.ehlo}")
        code, texts = await _smtp_reply(session)
        if code != 250:
            raise ProbeFailure("protocol", f"EHLO after STARTTLS answered {code}")
    await session.send("QUIT")
    return session


async def probe_imap(spec: ImapCheck, env: ProbeEnv, track: _Track) -> _Session:
    session = await _open(spec.host, spec.port, spec.tls, spec.tls_options, env, track)
    greeting = await session.line("banner")
    if not greeting.startswith(("* OK", "* PREAUTH")):
        raise ProbeFailure("banner", f"IMAP greeting {_clip(greeting)!r}")
    if spec.tls == "starttls":
        await session.send("a1 STARTTLS")
        while (line := await session.line()).startswith("*"):
            pass  # untagged data before the tagged answer
        if not line.startswith("a1 OK"):
            raise ProbeFailure("tls", f"STARTTLS refused: {_clip(line)!r}")
        await _upgrade(session, spec.host, spec.tls_options, env)
    await session.send("a2 LOGOUT")
    return session


async def probe_pop3(spec: Pop3Check, env: ProbeEnv, track: _Track) -> _Session:
    session = await _open(spec.host, spec.port, spec.tls, spec.tls_options, env, track)
    greeting = await session.line("banner")
    if not greeting.startswith("+OK"):
        raise ProbeFailure("banner", f"POP3 greeting {_clip(greeting)!r}")
    if spec.tls == "starttls":
        await session.send("STLS")
        line = await session.line()
        if not line.startswith("+OK"):
            raise ProbeFailure("tls", f"STLS refused: {_clip(line)!r}")
        await _upgrade(session, spec.host, spec.tls_options, env)
    await session.send("QUIT")
    return session


async def probe_tcp(spec: TcpCheck, env: ProbeEnv, track: _Track) -> _Session:
    return await _connect(spec.host, spec.port, None, None, track)


async def probe_clamd(spec: ClamdCheck, env: ProbeEnv, track: _Track) -> _Session:
    try:
        if spec.socket is not None:
            reader, writer = await asyncio.open_unix_connection(str(spec.socket))
        else:
            assert spec.port is not None  # the model guarantees one address
            reader, writer = await asyncio.open_connection(spec.host, spec.port)
    except OSError as exc:
        where = spec.socket or f"{spec.host}:{spec.port}"
        raise ProbeFailure("connect", f"{where}: {_os_error(exc)}") from None
    session = _Session(reader, writer)
    track.append(session)
    # z-prefixed commands are NUL-terminated, and so is clamd's answer
    writer.write(b"zPING\0")
    await writer.drain()
    answer = b""
    # up to clamd's NUL, or a line end / EOF from something that is not clamd
    while not any(end in answer for end in (b"\0", b"\n")) and len(answer) < 1024:
        chunk = await reader.read(256)
        if not chunk:
            break
        answer += chunk
    if answer.rstrip(b"\0\n") != b"PONG":
        shown = _clip(answer.decode("ascii", "replace"))
        raise ProbeFailure("protocol", f"clamd answered {shown!r}")
    return session


async def probe_http(spec: HttpCheck, env: ProbeEnv) -> None:
    https = spec.url.startswith("https")
    ssl_arg: ssl.SSLContext | bool = env.tls(spec.tls_options) if https else False
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(spec.url, ssl=ssl_arg, allow_redirects=False) as response,
        ):
            body = await response.text(errors="replace")
    except aiohttp.ClientSSLError as exc:
        raise ProbeFailure("tls", str(exc)) from None
    except (aiohttp.ClientConnectorError, OSError) as exc:
        raise ProbeFailure("connect", str(exc)) from None
    except aiohttp.ClientError as exc:
        raise ProbeFailure("protocol", f"{type(exc).__name__}: {exc}") from None
    if response.status != spec.expect_status:
        raise ProbeFailure("protocol", f"HTTP {response.status}, expected {spec.expect_status}")
    if spec.body_contains is not None and spec.body_contains not in body:
        raise ProbeFailure("protocol", f"body lacks {spec.body_contains!r}: {_clip(body)!r}")


def _argv(command: list[str] | str) -> list[str]:
    return ["sh", "-c", command] if isinstance(command, str) else list(command)


async def probe_exec(spec: ExecCheck, env: ProbeEnv, deadline: float) -> None:
    if env.executor is None:
        raise ProbeFailure("unknown", "no executor configured (dms.executor) to run commands")
    loop = asyncio.get_running_loop()
    for command in spec.commands:
        argv = _argv(command)
        left = max(deadline - loop.time(), 0.1)
        try:
            result = await env.executor.run(argv, timeout=left)
        except Exception as exc:  # a transport failure (kube API, docker): outcome unknown
            raise ProbeFailure("unknown", f"executor: {type(exc).__name__}: {exc}") from None
        shown = _clip(" ".join(argv))
        if result.timed_out:
            raise ProbeFailure("timeout", f"{shown!r} did not finish in {spec.timeout:g}s")
        if result.exit_code is None:
            raise ProbeFailure("unknown", f"{shown!r}: outcome unknown (stream lost)")
        if result.exit_code != 0:
            output = (result.stderr or result.stdout).strip()
            detail = f": {_clip(output.splitlines()[0])}" if output else ""
            raise ProbeFailure("exit-code", f"{shown!r} exited {result.exit_code}{detail}")


_STREAM_PROBES: dict[str, Callable[..., Awaitable[_Session]]] = {
    "smtp": probe_smtp,
    "imap": probe_imap,
    "pop3": probe_pop3,
    "tcp": probe_tcp,
    "clamd": probe_clamd,
}


async def _attempt(spec: CheckSpec, env: ProbeEnv, deadline: float) -> Outcome:
    if isinstance(spec, ExecCheck):
        await probe_exec(spec, env, deadline)
        return Outcome(True)
    if isinstance(spec, HttpCheck):
        await probe_http(spec, env)
        return Outcome(True)
    track: _Track = []
    try:
        session = await _STREAM_PROBES[spec.kind](spec, env, track)
        return Outcome(True, cert_not_after=session.not_after, warnings=tuple(session.warnings))
    finally:
        for opened in track:
            opened.close()


async def run_probe(spec: CheckSpec, env: ProbeEnv) -> Outcome:
    """One attempt under ``spec.timeout``. Never raises (but for cancellation)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(spec.timeout):
            outcome = await _attempt(spec, env, started + spec.timeout)
    except TimeoutError:
        outcome = Outcome(False, "timeout", f"no complete answer within {spec.timeout:g}s")
    except ProbeFailure as exc:
        outcome = Outcome(False, exc.reason, exc.message, cert_not_after=exc.cert_not_after)
    except ssl.SSLError as exc:
        failure = _tls_failure(exc)
        outcome = Outcome(False, failure.reason, failure.message)
    except (OSError, UnicodeError, ValueError) as exc:
        outcome = Outcome(False, "protocol", f"{type(exc).__name__}: {_clip(str(exc))}")
    duration = loop.time() - started
    return Outcome(
        outcome.ok,
        outcome.reason,
        _clip(outcome.message),
        duration,
        outcome.cert_not_after,
        outcome.warnings,
    )


def describe_expiry(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
