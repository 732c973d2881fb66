"""Bounds on the HTTP server's connections, so no client can starve the probes.

Idle and slowloris connections used to stay open forever: 3,000 of them held the port, and
under an open-file limit of 256 the accept loop failed (EMFILE) and the kubelet's ``/livez``
timed out. Here every connection has a deadline: ``headerTimeout`` to finish its first request
head, ``keepAliveTimeout`` idle after each response; a watchdog closes the late ones. At most
``maxConnections`` are open (never more than the open-file limit leaves room for): a new one
closes the oldest connection not inside a request, so a probe always gets in. The accept
error asyncio logs when descriptors run out anyway is rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("dms_agent.server")

FD_RESERVE = 64  # descriptors left to the rest of the agent (files, sources, the API server)
# asyncio accepts up to the backlog in one go, and an evicted socket's descriptor is only freed
# on the next loop iteration: that many may be open above the cap for a moment
BACKLOG = 128
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered so accepted sockets cannot use up the open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - FD_RESERVE - BACKLOG))


class _Conn:
    __slots__ = ("deadline", "transport")

    def __init__(self, transport: asyncio.Transport, deadline: float | None) -> None:
        self.transport = transport
        self.deadline = deadline  # None: inside a request


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol, with its connection made and lost reported to the guard."""

    def __init__(self, inner: RequestHandler, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.guard._opened(self.inner, transport)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard._closed(self.inner)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self.inner.eof_received()
        return None  # aiohttp closes on EOF itself

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class ConnectionGuard:
    def __init__(
        self,
        max_connections: int,
        header_timeout: float,
        keepalive_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server: web.Server | None = None  # set once the runner is set up
        self.max_connections = connection_cap(max_connections)
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.clock = clock
        self.conns: dict[RequestHandler, _Conn] = {}  # in the order they connected
        self.evicted = 0
        self.timed_out = 0
        self._connected = asyncio.Event()  # set when a connection opens: the watchdog wakes

    # --- the protocol factory given to loop.create_server ----------------------------------
    def protocol(self) -> asyncio.Protocol:
        assert self.server is not None
        return _Guarded(self.server(), self)

    def _opened(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if len(self.conns) >= self.max_connections:
            self._evict_one()
        self.conns[handler] = _Conn(transport, self.clock() + self.header_timeout)
        self._connected.set()

    def _closed(self, handler: RequestHandler) -> None:
        self.conns.pop(handler, None)

    def _evict_one(self) -> None:
        for handler, conn in self.conns.items():  # oldest first
            if conn.deadline is not None:
                self._drop(handler)
                self.evicted += 1
                return

    def _drop(self, handler: RequestHandler) -> None:
        # out of the count now: its connection_lost only comes at the next loop iteration
        conn = self.conns.pop(handler)
        conn.transport.abort()

    # --- requests ---------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self.conns.get(request.protocol)
        if conn is not None:
            conn.deadline = None
        try:
            return await handler(request)
        finally:
            if conn is not None:
                conn.deadline = self.clock() + self.keepalive_timeout

    # --- the watchdog -----------------------------------------------------------------------
    async def watch(self) -> None:
        step = max(0.05, min(self.header_timeout, self.keepalive_timeout) / 4)
        while True:
            if not self.conns:  # nothing can be late: no wake-ups while idle
                self._connected.clear()
                await self._connected.wait()
            await asyncio.sleep(step)
            self.close_late()

    def close_late(self) -> None:
        now = self.clock()
        late = [h for h, c in self.conns.items() if c.deadline is not None and c.deadline <= now]
        for handler in late:
            self._drop(handler)
        self.timed_out += len(late)


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, serving through a ConnectionGuard and running its watchdog."""

    def __init__(self, runner: web.AppRunner, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self.guard = guard
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        self.guard.server = self._runner.server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.protocol,
            self._host,
            self._port,
            backlog=BACKLOG,
            reuse_address=self._reuse_address,
        )
        self._watchdog = asyncio.create_task(self.guard.watch(), name="http-connection-guard")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await super().stop()


class RateLimitFilter(logging.Filter):
    """Lets one record starting with ``prefix`` through per ``period`` seconds, saying how
    many were dropped since (asyncio logs one line per failed accept: 9,316 in 8 s)."""

    def __init__(self, prefix: str, period: float = 10.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.period = period
        self.last = -period
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        now = time.monotonic()
        if now - self.last < self.period:
            self.dropped += 1
            return False
        if self.dropped:
            record.msg = f"{record.msg} ({self.dropped} more like it not logged)"
        self.last, self.dropped = now, 0
        return True


ACCEPT_ERROR = "socket.accept() out of system resource"


def limit_accept_error_log() -> None:
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, RateLimitFilter) for f in asyncio_log.filters):
        asyncio_log.addFilter(RateLimitFilter(ACCEPT_ERROR))
