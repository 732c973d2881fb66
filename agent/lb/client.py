"""One delivery attempt to one webhook target: build, sign, send, check the proof.

Every attempt re-reads the secret file (a rotated Secret needs no restart) and builds a fresh
document with a new sequence number: a retry after a lost response must not be refused as a
replay of the attempt that did arrive.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from agent.lb import metrics
from agent.lb.config import LbPort, LbTarget
from agent.lb.payload import (
    Action,
    Registration,
    Request,
    check_proof,
    funkypenguin_requests,
    rejection,
    unconfirmed,
    v2_request,
)
from agent.lb.sequence import SequenceSource

log = logging.getLogger("dms_agent.lb")
MAX_RESPONSE = 64 * 1024  # the hook's output; more is not a result line


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool  # delivered: no retry until the next change or heartbeat
    result: str  # a metric label value: ok, unconfirmed, rejected, http_error, ...
    detail: str  # for /status and logs: never a secret
    sequence: int | None = None

    @property
    def confirmed(self) -> bool:
        return self.ok and self.result != "unconfirmed"


def combined(
    outcomes: list[tuple[str | None, Outcome]], action: Action, seq: int | None
) -> Outcome:
    """One outcome for a delivery of several requests (funkypenguin: one per port). Every
    request was sent whatever the others did; the first failure names its port."""
    failed = [(port, o) for port, o in outcomes if not o.ok]
    if failed:
        port, first = failed[0]
        where = f"port {port}: " if port else ""
        more = f" (and {len(failed) - 1} more port(s))" if len(failed) > 1 else ""
        return Outcome(False, first.result, f"{where}{first.detail}{more}", seq)
    if any(not o.confirmed for _, o in outcomes):
        detail = f"{action} delivered, unconfirmed: the receiver answered 2xx with an empty body"
        return Outcome(True, "unconfirmed", detail, seq)
    return Outcome(True, "ok", f"{action} accepted", seq)


class SecretError(Exception):
    pass


def read_secret(path: Path) -> bytes:
    """The secret's bytes without the trailing newline ``kubectl create secret`` often adds."""
    try:
        data = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise SecretError(f"secret file {path} unreadable: {exc.strerror}") from None
    if not data:
        raise SecretError(f"secret file {path} is empty")
    return data


def tls_context(target: LbTarget) -> ssl.SSLContext | bool:
    if not target.tls_verify:
        return False
    return ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)


class TargetClient:
    """Sends registrations to one target over a shared aiohttp session."""

    def __init__(
        self, target: LbTarget, session: aiohttp.ClientSession, sequences: SequenceSource
    ) -> None:
        self.target = target
        self.session = session
        self.sequences = sequences

    async def deliver(self, reg: Registration, action: Action) -> Outcome:
        try:
            requests, sequence = await self._build(reg, action)
        except SecretError as exc:
            metrics.REQUESTS.labels(self.target.format, "secret_error").inc()
            return Outcome(False, "secret_error", str(exc))
        if self.target.require_tls and not self.target.url.startswith("https:"):
            metrics.REQUESTS.labels(self.target.format, "tls_required").inc()
            return Outcome(False, "tls_required", "requireTLS: true, but the URL is http://")
        tls: ssl.SSLContext | bool = True
        if self.target.url.startswith("https:"):
            try:
                tls = await asyncio.to_thread(tls_context, self.target)
            except (OSError, ssl.SSLError) as exc:
                metrics.REQUESTS.labels(self.target.format, "tls_error").inc()
                return Outcome(False, "tls_error", f"CA bundle unusable: {exc}")
        # funkypenguin: one request per port, each sent whatever became of the others.
        outcomes = [(r.port, await self._send(r, tls, sequence)) for r in requests]
        if self.target.format == "funkypenguin":
            outcomes.append((None, await self._withdraw_dropped(reg, action, tls)))
        return combined(outcomes, action, sequence)

    async def _withdraw_dropped(
        self, reg: Registration, action: Action, tls: ssl.SSLContext | bool
    ) -> Outcome:
        """Send ``delete`` for ports registered before but no longer in the settings."""
        label = self.target.label
        current = {p.frontend for p in reg.ports}  # just sent: added, or deleted already
        for old in await self.sequences.legacy_ports(label):
            if old.get("frontend") in current:
                continue
            try:
                port = LbPort.model_validate(old["port"])
                gone = Registration(reg.name, reg.pod, reg.node, str(old["address"]), (port,))
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable old entry: nothing we can withdraw
            try:
                requests, _ = await self._build(gone, "delete")
            except SecretError as exc:
                return Outcome(False, "secret_error", str(exc))
            outcome = await self._send(requests[0], tls, None)
            if not outcome.ok:
                return outcome  # kept in the list below: withdrawn on the next attempt
            log.info("lb target %s: withdrew dropped port %s", label, port.frontend)
        kept = [
            {"frontend": p.frontend, "address": reg.address, "port": p.model_dump()}
            for p in reg.ports
            if action == "add"
        ]
        await self.sequences.set_legacy_ports(label, kept)
        return Outcome(True, "ok", "")

    async def _build(self, reg: Registration, action: Action) -> tuple[list[Request], int | None]:
        secret = await asyncio.to_thread(read_secret, self.target.secret_file)
        if self.target.format == "funkypenguin":
            try:
                token = secret.decode("ascii")
            except UnicodeDecodeError:
                raise SecretError("the token must be ASCII") from None
            if any(c in token for c in "\r\n"):
                raise SecretError("the token must be one line")
            return funkypenguin_requests(reg, action, token, self.target.funkypenguin), None
        sequence = await self.sequences.next()
        return [v2_request(reg, action, sequence, time.time(), secret)], sequence

    async def _send(self, request: Request, tls: ssl.SSLContext | bool, seq: int | None) -> Outcome:
        fmt = self.target.format
        started = time.monotonic()
        try:
            outcome = await self._post(request, tls, seq)
        except TimeoutError:
            outcome = Outcome(False, "timeout", f"no answer within {self.target.timeout:g}s", seq)
        except aiohttp.ClientSSLError as exc:
            outcome = Outcome(False, "tls_error", f"TLS: {exc}", seq)
        except (aiohttp.ClientError, OSError) as exc:
            outcome = Outcome(False, "connection_error", f"{type(exc).__name__}: {exc}", seq)
        metrics.DURATION.labels(fmt).observe(time.monotonic() - started)
        metrics.REQUESTS.labels(fmt, outcome.result).inc()
        return outcome

    async def _post(self, request: Request, tls: ssl.SSLContext | bool, seq: int | None) -> Outcome:
        timeout = aiohttp.ClientTimeout(total=self.target.timeout)
        async with self.session.post(
            self.target.url,
            data=request.body,
            headers=request.headers,
            timeout=timeout,
            ssl=tls,
            allow_redirects=False,  # a redirect would replay a signed body elsewhere
        ) as response:
            raw = await response.content.read(MAX_RESPONSE)
            text = raw.decode("utf-8", errors="replace")
            status = response.status
        if not 200 <= status < 300:
            reason = rejection(text)
            if reason is not None:
                return Outcome(False, "rejected", f"receiver refused: {reason}", seq)
            return Outcome(False, "http_error", f"HTTP {status}: {_first_line(text)}", seq)
        pattern = self.target.expect_response
        if unconfirmed(text, pattern) and not self.target.require_confirmation:
            return Outcome(True, "unconfirmed", f"HTTP {status}, empty body", seq)
        problem = check_proof(text, request.expect, pattern)
        if problem is not None:
            return Outcome(False, "bad_response", f"HTTP {status} but {problem}", seq)
        return Outcome(True, "ok", f"HTTP {status}", seq)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:160]
