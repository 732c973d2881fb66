"""The HTTP endpoints. They read only the status registry: no endpoint does work of its own.

- ``/livez``: the process and its event loop answer. Never fails on a component error.
- ``/readyz``: settings loaded and serving. Never depends on reconcile or mail checks.
- ``/healthz``: the mailserver verdict: 200 healthy or unknown, 503 unhealthy.
- ``/status``: JSON of every component (never a secret).
- ``/``: the same registry as a page for people (agent/web/), exposed exactly as ``/status``.
- ``/metrics``: Prometheus exposition of ``agent.metrics.REGISTRY``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from agent.metrics import REGISTRY
from agent.settings import ServerSettings
from agent.status import StatusRegistry, Verdict
from agent.web.handler import page_handler

STATUS_KEY = web.AppKey("status", StatusRegistry)


async def livez(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    if request.app[STATUS_KEY].settings_loaded:
        return web.Response(text="ready\n")
    return web.Response(status=503, text="settings not loaded yet\n")


async def healthz(request: web.Request) -> web.Response:
    health = request.app[STATUS_KEY].health
    status = 503 if health.verdict is Verdict.UNHEALTHY else 200
    if "application/json" in request.headers.get("Accept", ""):
        body = {"verdict": health.verdict.value, "reasons": health.reasons, "checks": health.checks}
        return web.json_response(body, status=status)
    lines = [health.verdict.value, *(f"- {r}" for r in health.reasons)]
    return web.Response(status=status, text="\n".join(lines) + "\n")


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATUS_KEY].snapshot())


Handler = Callable[[web.Request], Awaitable[web.Response]]


def metrics_handler(max_age: float = 1.0) -> Handler:
    """Render the registry off the event loop, at most once per ``max_age`` per format.

    Rendering every check's series costs about a millisecond of CPU; done in the loop under
    scraping plus health probes it showed up as request latency (bench/checks_load.py).
    Scrapers ask every 15-60 s, so a one-second cache changes nothing they can see.
    """
    cache: dict[str, tuple[float, bytes]] = {}
    lock = asyncio.Lock()

    async def handle(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        async with lock:  # one render at a time; the others get its result
            hit = cache.get(content_type)
            if hit is None or time.monotonic() - hit[0] > max_age:
                body = await asyncio.to_thread(encoder, REGISTRY)
                hit = cache[content_type] = (time.monotonic(), body)
        response = web.Response(body=hit[1])
        response.headers["Content-Type"] = content_type
        return response

    return handle


def make_app(registry: StatusRegistry) -> web.Application:
    app = web.Application()
    app[STATUS_KEY] = registry
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", healthz)
    # the page shows what /status shows: whatever guards one must guard the other
    for path, handler in (("/status", status), ("/", page_handler(registry))):
        app.router.add_get(path, handler)
    app.router.add_get("/metrics", metrics_handler())
    return app


async def serve(registry: StatusRegistry, settings: ServerSettings) -> web.AppRunner:
    runner = web.AppRunner(make_app(registry), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    return runner
