"""DNS lookups for the checks: one answer per name and type per run, classified errors.

Every name is asked as an absolute name (``agent.dns.transport``), so a search list and
Kubernetes' ``ndots:5`` never turn ``example.com`` into
``example.com.default.svc.cluster.local``. A lookup either
returns records (possibly none: NXDOMAIN or no data is an answer) or raises ``LookupFailed``
with a bounded ``kind`` (timeout, servfail, refused, other) — the checks turn that into an
``error`` result, never a ``fail``. Identical lookups within one run are asked once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import dns.nameserver

from agent.dns.runsettings import split_host_port


class LookupFailed(Exception):
    """No usable answer. ``kind`` is one of ``model.ERROR_KINDS`` (a metric label)."""

    def __init__(self, kind: str, name: str, rdtype: str, detail: str) -> None:
        super().__init__(f"{rdtype} {name}: {kind} ({detail})")
        self.kind = kind
        self.name = name
        self.rdtype = rdtype


@dataclass(frozen=True, slots=True)
class Answer:
    """Records of one lookup; ``nxdomain`` tells "no such name" from "no such type"."""

    records: tuple[Any, ...]
    nxdomain: bool = False

    def __bool__(self) -> bool:
        return bool(self.records)


def nameserver_objects(nameservers: list[str]) -> list[dns.nameserver.Nameserver]:
    result: list[dns.nameserver.Nameserver] = []
    for text in nameservers:
        host, port = split_host_port(text)
        result.append(dns.nameserver.Do53Nameserver(host, port))
    return result


class Asker(Protocol):
    """Sends one query (``agent.dns.transport.Transport``)."""

    def ask(self, name: str, rdtype: str) -> Awaitable[Answer]: ...


class Lookup:
    """One run's lookups: shared answers, errors counted through ``on_error(kind)``.

    ``watch`` sets ``dead`` when not one answer came back within one attempt's timeout of
    the first query: the nameserver is not answering, and the run stops instead of waiting
    out every remaining lookup's lifetime.
    """

    def __init__(
        self,
        transport: Asker,
        on_error: Callable[[str], None] | None = None,
        in_flight: int = 16,
    ) -> None:
        self._transport = transport
        self._on_error = on_error
        # Few queries at once keep each loop iteration short (answers arrive, and are parsed,
        # a few at a time); the nameserver is not the bottleneck.
        self._slots = asyncio.Semaphore(in_flight)
        self._pending: dict[tuple[str, str], asyncio.Future[Answer]] = {}
        self.dead = asyncio.Event()
        self._asked = asyncio.Event()
        self._heard = asyncio.Event()  # any answer, even SERVFAIL: someone is there

    def close(self) -> None:
        """Cancel lookups still in flight (the run stopped early). With the nameserver found
        silent, each of them counts as the timeout it was heading for."""
        for future in self._pending.values():
            if not future.done():
                future.cancel()
                if self.dead.is_set() and self._on_error is not None:
                    self._on_error("timeout")

    async def watch(self, attempt: float) -> None:
        await self._asked.wait()
        try:
            async with asyncio.timeout(attempt):
                await self._heard.wait()
        except TimeoutError:
            self.dead.set()

    def _note(self, kind: str | None) -> None:
        """``kind`` None: an answer. SERVFAIL and REFUSED are answers too; a timeout or a
        socket error ("other") is silence."""
        if kind in (None, "servfail", "refused"):
            self._heard.set()

    async def query(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype)
        future = self._pending.get(key)
        if future is None:
            future = asyncio.ensure_future(self._ask(*key))
            self._pending[key] = future
        return await asyncio.shield(future)

    def done(self, name: str, rdtype: str) -> Answer | None:
        """The answer if this run already has it, else None; raises LookupFailed if it failed.

        Safe from a worker thread: it only reads a dict entry and a finished future.
        """
        future = self._pending.get((name.lower().rstrip("."), rdtype))
        if future is None or not future.done() or future.cancelled():
            return None
        return future.result()

    async def _ask(self, name: str, rdtype: str) -> Answer:
        try:
            async with self._slots:
                self._asked.set()
                answer = await self._transport.ask(name, rdtype)
        except LookupFailed as exc:
            self._note(exc.kind)
            if self._on_error is not None:
                self._on_error(exc.kind)
            raise
        self._note(None)
        return answer

    async def txt(self, name: str) -> list[str]:
        """TXT records, each joined across its character-strings (RFC 7208 3.3, RFC 6376)."""
        answer = await self.query(name, "TXT")
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer.records]

    async def addresses(self, name: str) -> tuple[list[str], list[str]]:
        """(A, AAAA) of ``name`` as text, asked together."""
        a, aaaa = await asyncio.gather(self.query(name, "A"), self.query(name, "AAAA"))
        return [r.address for r in a.records], [r.address for r in aaaa.records]
