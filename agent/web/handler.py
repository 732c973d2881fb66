"""The aiohttp handler for ``/``: renders from the registry at most once per ``max_age``
seconds, and sends the page's security headers.

Why 5 s: a render runs in the event loop (a few ms for 200 domains), and every request that
arrives meanwhile waits. At 100 /healthz probes a second, one render a second delays about 1 %
of them (their p99); one per 5 s, 0.2 %. The page refreshes itself every 30 s and says when it
was rendered, so nobody reads a stale value unknowingly (bench/status_page.py)."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from agent.status import StatusRegistry
from agent.web.assets import HEADERS
from agent.web.dns import TableCache
from agent.web.page import render_page

Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class _Rendered:
    at: float
    body: bytes
    gzipped: bytes


def page_handler(registry: StatusRegistry, max_age: float = 5.0, refresh: int = 30) -> Handler:
    cached: list[_Rendered] = []
    dns_tables = TableCache()
    lock = asyncio.Lock()

    async def rendered() -> _Rendered:
        async with lock:  # one render at a time; the requests meanwhile get its result
            now = time.time()
            if not cached or not 0 <= now - cached[0].at <= max_age:
                body = render_page(registry.snapshot(), now, refresh, dns_tables).encode()
                # bytes, not the registry: safe to compress off the loop (~10x smaller)
                gzipped = await asyncio.to_thread(gzip.compress, body, 6)
                cached[:] = [_Rendered(now, body, gzipped)]
            return cached[0]

    async def handle(request: web.Request) -> web.Response:
        page = await rendered()
        gzip_ok = "gzip" in request.headers.get("Accept-Encoding", "")
        body = page.gzipped if gzip_ok else page.body
        response = web.Response(body=body, content_type="text/html", charset="utf-8")
        response.headers.update(HEADERS)
        response.headers["Vary"] = "Accept-Encoding"
        if gzip_ok:
            response.headers["Content-Encoding"] = "gzip"
        return response

    return handle
