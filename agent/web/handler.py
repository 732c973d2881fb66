"""The aiohttp handler for ``/``: renders from the registry at most once per ``max_age``
seconds (health probes and a refreshing tab then cost one render a second at most), and sends
the page's security headers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.status import StatusRegistry
from agent.web.assets import HEADERS
from agent.web.dns import TableCache
from agent.web.page import render_page

Handler = Callable[[web.Request], Awaitable[web.Response]]


def page_handler(registry: StatusRegistry, max_age: float = 1.0, refresh: int = 30) -> Handler:
    cached: list[tuple[float, bytes]] = []
    dns_tables = TableCache()

    async def handle(request: web.Request) -> web.Response:
        now = time.time()
        if not cached or now - cached[0][0] > max_age or now < cached[0][0]:
            body = render_page(registry.snapshot(), now, refresh, dns_tables).encode()
            cached[:] = [(now, body)]
        response = web.Response(body=cached[0][1], content_type="text/html", charset="utf-8")
        response.headers.update(HEADERS)
        return response

    return handle
