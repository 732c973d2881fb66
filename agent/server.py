"""The HTTP endpoints. They read only the status registry: no endpoint does work of its own.

- ``/livez``: the process and its event loop answer. Never fails on a component error.
- ``/readyz``: settings loaded and serving. Never depends on reconcile or mail checks.
- ``/healthz``: the mailserver verdict: 200 healthy or unknown, 503 unhealthy.
- ``/status``: JSON of every component (never a secret, but addresses, DKIM records and LB
  endpoints): ``private`` — loopback clients only, or a bearer token (server.statusTokenFile).
- ``/``: the same registry as a page for people (agent/web/), ``private`` like ``/status``.
- ``/metrics``: Prometheus exposition of ``agent.metrics.REGISTRY``.

The probes and Prometheus reach the first four and the last from anywhere; connections are
bounded by ``agent.http_guard`` (count, header and keep-alive timeouts).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from agent.http_guard import ConnectionGuard, GuardedSite, limit_accept_error_log
from agent.metrics import REGISTRY
from agent.settings import ServerSettings
from agent.status import StatusRegistry, Verdict
from agent.web.handler import page_handler


class PrivateAccess:
    """Who may read a private path: loopback clients (``kubectl port-forward``, ``curl`` in
    the pod), and others sending ``Authorization: Bearer <token>`` with the token from
    ``token_file`` (a mounted Secret; read per request, so a rotated Secret takes effect)."""

    def __init__(self, token_file: Path | None = None) -> None:
        self.token_file = token_file

    def allows(self, request: web.Request) -> bool:
        if _is_loopback(request.remote):
            return True
        token = self._token()
        given = request.headers.get("Authorization", "")
        return token is not None and hmac.compare_digest(given.encode(), b"Bearer " + token)

    def _token(self) -> bytes | None:
        if self.token_file is None:
            return None
        try:
            token = self.token_file.read_bytes().strip()
        except OSError:
            return None
        return token or None


def _is_loopback(remote: str | None) -> bool:
    try:
        addr = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


STATUS_KEY = web.AppKey("status", StatusRegistry)
ACCESS_KEY = web.AppKey("access", PrivateAccess)


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


def private(handler: Handler) -> Handler:
    """Serve ``handler`` only as ``PrivateAccess`` allows: the rule for every path that shows
    the mail state (``/status``, the status page); 403 to anyone else."""

    async def guarded(request: web.Request) -> web.Response:
        if not request.app[ACCESS_KEY].allows(request):
            return web.Response(
                status=403,
                text="served to loopback clients, or with the bearer token of "
                "server.statusTokenFile\n",
            )
        return await handler(request)

    return guarded


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


def make_app(
    registry: StatusRegistry,
    access: PrivateAccess | None = None,
    guard: ConnectionGuard | None = None,
) -> web.Application:
    app = web.Application(middlewares=[guard.middleware] if guard is not None else [])
    app[STATUS_KEY] = registry
    app[ACCESS_KEY] = access or PrivateAccess()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", healthz)
    # the page shows what /status shows: the same guard for both
    for path, handler in (("/status", status), ("/", page_handler(registry))):
        app.router.add_get(path, private(handler))
    app.router.add_get("/metrics", metrics_handler())
    return app


async def serve(registry: StatusRegistry, settings: ServerSettings) -> web.AppRunner:
    limit_accept_error_log()
    guard = ConnectionGuard(
        settings.max_connections, settings.header_timeout, settings.keep_alive_timeout
    )
    app = make_app(registry, PrivateAccess(settings.status_token_file), guard)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=settings.keep_alive_timeout)
    await runner.setup()
    site = GuardedSite(runner, guard, host=settings.host, port=settings.port)
    await site.start()
    return runner
