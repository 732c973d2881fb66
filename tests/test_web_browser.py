"""The status page in a real browser: Debian's Chromium, headless, over the DevTools protocol.

Each test serves the page from the agent's own app on loopback, loads it, asserts what the DOM
shows, that the console and the browser log have no error (a CSP violation is one) and saves a
screenshot to var/screenshots/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.server import make_app
from agent.web.assets import HEADERS
from agent.web.handler import page_handler
from tests.rig.chromium import Chromium, Tab
from tests.web_support import feed_checks, registry_for

Server = Any  # pytest-aiohttp's aiohttp_server fixture
SHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
BROKEN = "d1.example.com"


async def load(tab: Tab, aiohttp_server: Server, app: web.Application) -> Any:
    server = await aiohttp_server(app, host="127.0.0.1")
    await tab.open(str(server.make_url("/")))
    return server


async def text_of(tab: Tab, selector: str) -> str:
    value: str = await tab.evaluate(f"document.querySelector({selector!r}).innerText")
    return value


async def test_healthy_agent_page_light_dark_and_phone(aiohttp_server: Server) -> None:
    reg = registry_for(4)
    async with Chromium() as tab:
        await tab.viewport(1200, 900)
        await load(tab, aiohttp_server, make_app(reg))
        assert await tab.evaluate("document.title") == "healthy · dms-agent"
        assert "mailserver healthy" in await text_of(tab, "h1")
        rows = await tab.evaluate("document.querySelectorAll('#health tbody tr').length")
        assert rows == 8
        bars = await tab.evaluate("document.querySelectorAll('#health svg path.p').length")
        assert bars == 8  # every check drew its history, all passing
        hover = await tab.evaluate("document.querySelector('#health td time').title")
        assert hover.endswith(" UTC")
        folded = await tab.evaluate("[...document.querySelectorAll('#dns details')].map(d=>d.open)")
        assert folded == [False] * 4  # nothing failing: every domain folded
        await tab.screenshot(SHOTS / "healthy-light.png")
        light = await tab.evaluate("getComputedStyle(document.body).backgroundColor")
        await tab.viewport(1200, 900, dark=True)
        dark = await tab.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (light, dark) == ("rgb(255, 255, 255)", "rgb(17, 20, 24)")
        await tab.screenshot(SHOTS / "healthy-dark.png")
        await tab.viewport(390, 844)
        width = await tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # wide tables scroll inside their box; the page does not
        await tab.screenshot(SHOTS / "healthy-phone.png")
        assert tab.problems == []


async def test_failing_check_page(aiohttp_server: Server) -> None:
    reg = registry_for(2, failing={"smtp0"})
    async with Chromium() as tab:
        await tab.viewport(1200, 900)
        await load(tab, aiohttp_server, make_app(reg))
        assert await tab.evaluate("document.title") == "unhealthy · dms-agent"
        reasons = await text_of(tab, "#health ul")
        assert reasons == "smtp0: connect: Connection refused (failing)"
        row = await tab.evaluate(
            "[...document.querySelectorAll('#health tbody tr')]"
            ".find(r => r.querySelector('th').innerText === 'smtp0').innerText"
        )
        assert "failing" in row and "Connection refused" in row and "45/48 passed" in row
        failed_bars = await tab.evaluate("document.querySelectorAll('#health path.f').length")
        assert failed_bars == 1  # one path draws smtp0's three failures
        await tab.screenshot(SHOTS / "failing-check.png")
        assert tab.problems == []


async def test_dns_failures_page(aiohttp_server: Server) -> None:
    reg = registry_for(3, broken={BROKEN}, failing={"smtp0"}, waiting={"d2.example.com"})
    async with Chromium() as tab:
        await tab.viewport(1200, 900)
        await load(tab, aiohttp_server, make_app(reg))
        first = await tab.evaluate("document.querySelector('#dns details').id")
        assert first == f"dns-{BROKEN}"
        assert await tab.evaluate(f"document.getElementById('dns-{BROKEN}').open") is True
        fixes = await tab.evaluate(
            f"[...document.getElementById('dns-{BROKEN}').querySelectorAll('pre.fix')]"
            ".map(p => p.innerText)"
        )
        assert fixes[0] == f"{BROKEN}. IN MX 10 mail.example.net."
        assert fixes[1] == f'{BROKEN}. IN TXT "v=spf1 mx -all"'
        dkim = await text_of(tab, "#dkim")
        assert "Rotations waiting for DNS\nd2.example.com" in dkim
        await tab.screenshot(SHOTS / "dns-failures.png")
        await tab.screenshot(SHOTS / "dns-failures-top.png", whole=False)  # docs/status-page.png
        await tab.viewport(390, 844)  # a phone: the table scrolls, a fix stays a readable block
        widths = await tab.evaluate(
            "[...document.querySelectorAll('pre.fix')].map(p => p.offsetWidth)"
        )
        assert min(widths) >= 250, widths
        await tab.screenshot(SHOTS / "dns-failures-phone.png")
        assert tab.problems == []


async def test_page_refreshes_itself_and_says_when_it_cannot(aiohttp_server: Server) -> None:
    reg = registry_for(1)
    app = web.Application()
    app.router.add_get("/", page_handler(reg, max_age=0, refresh=1))
    async with Chromium() as tab:
        server = await load(tab, aiohttp_server, app)
        await tab.evaluate("document.querySelector('#dns details').open = true")  # the reader's
        feed_checks(reg, failing={"imap1"})  # the mailserver turns unhealthy meanwhile
        await wait_for(tab, "document.title === 'unhealthy · dms-agent'")
        assert await tab.evaluate("document.querySelector('#dns details').open") is True
        assert tab.problems == []
        await server.close()
        await wait_for(tab, "document.getElementById('stale').innerText !== ''")
        assert "may be out of date" in await text_of(tab, "#stale")


async def test_a_csp_violation_is_caught(aiohttp_server: Server) -> None:
    """The control for every ``problems == []`` above: an inline style attribute and an
    unhashed script under the page's policy are reported, and blocked."""

    async def bad(request: web.Request) -> web.Response:
        html = '<!doctype html><p style="color:red">x</p><script>document.title="ran"</script>'
        return web.Response(text=html, content_type="text/html", headers=HEADERS)

    app = web.Application()
    app.router.add_get("/", bad)
    async with Chromium() as tab:
        await load(tab, aiohttp_server, app)
        await wait_for(tab, "true")  # one round trip: the log events came before its reply
        assert await tab.evaluate("document.title") != "ran"
        blocked = [p for p in tab.problems if "Content Security Policy" in p]
        assert len(blocked) >= 2, tab.problems


async def wait_for(tab: Tab, condition: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await tab.evaluate(condition):
        assert time.monotonic() < deadline, f"not true within {timeout}s: {condition}"
        await asyncio.sleep(0.1)
