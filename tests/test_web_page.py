"""The status page at ``/``: what it shows, what it never shows, its headers and its weight."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from agent.server import PrivateAccess, make_app
from agent.status import HISTORY_LENGTH, State, StatusRegistry
from agent.web.dns import TableCache
from agent.web.handler import page_handler
from agent.web.page import render_page
from agent.web.spark import sparkline
from agent.web.timefmt import relative, when
from tests.test_server_limits import request_from
from tests.web_support import (
    HASH_SECRET,
    PLAIN_SECRET,
    feed_checks,
    publish_dns,
    registry_for,
)

Client = Any  # pytest-aiohttp's aiohttp_client fixture
BROKEN = "d3.example.com"


async def get_page(aiohttp_client: Client, registry: StatusRegistry) -> tuple[str, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(make_app(registry))
    resp = await client.get("/")
    assert resp.status == 200
    return await resp.text(), resp.headers


async def test_page_shows_verdict_checks_dns_fixes_dkim_plan_sources_lb(
    aiohttp_client: Client,
) -> None:
    reg = registry_for(4, broken={BROKEN}, failing={"smtp0"}, waiting={"d1.example.com"})
    text, headers = await get_page(aiohttp_client, reg)
    assert headers["Content-Type"].startswith("text/html")
    assert "<title>unhealthy · dms-agent</title>" in text
    assert "smtp0: connect: Connection refused (failing)" in text  # the verdict's reason
    assert "45/48 passed" in text  # smtp0's history: it failed its last three
    # the broken domain comes first, open, with copy-ready records
    first = text.index('<details id="dns-')
    assert text.startswith(f'<details id="dns-{BROKEN}" open>', first)
    assert '<pre class="fix">d3.example.com. IN MX 10 mail.example.net.</pre>' in text
    assert "d3.example.com. IN TXT &quot;v=spf1 mx -all&quot;" in text
    assert '<details id="dns-d0.example.com">' in text  # only a warning: folded
    # DKIM: the rotation waiting for DNS and its record to publish
    assert re.search(r"Rotations waiting for DNS</h3><ul><li>d1\.example\.com</li>", text)
    assert 'mail: not published<pre class="fix">mail._domainkey.d1.example.com.' in text
    # the plan: ops, refused deletion, blocked, pending, kept undeclared, a failed op
    for shown in (
        "carol@example.com",
        "Refused deletions (1)",
        "1 deletion exceeds reconcile.maxDeletions (0)",
        "OpenDKIM cannot make ed25519 keys",
        "erin@example.com</code>: declared without a password",
        "Kept, undeclared (1)",
        "legacy@example.com",
        "setup exited 1",
        "source path:/etc/dms-agent/state",  # sources
        "https://lb.example.net:9000/hooks/dms",  # LB target
        "smtp 25→25 (PROXY protocol)",
    ):
        assert shown in text, shown


async def test_page_never_shows_a_password_or_hash(aiohttp_client: Client) -> None:
    reg = registry_for(2, broken={"d1.example.com"})
    # secrets-like values where a careless component might leave them: the page shows only
    # the fields it knows, and passwords only as their kind
    reg.component("reconcile").details["secret"] = PLAIN_SECRET
    reg.component("lb").details["hmacKey"] = PLAIN_SECRET
    reg.component("lb").details["targets"]["haproxy-1"]["token"] = PLAIN_SECRET
    reg.component("dkim").details["privateKey"] = HASH_SECRET
    reg.component("dns").details["domains"]["d0.example.com"]["password"] = HASH_SECRET
    text, _ = await get_page(aiohttp_client, reg)
    assert "password (plain)" in text and "password (hash)" in text
    for secret in (PLAIN_SECRET, HASH_SECRET, "$6$", "SHA512-CRYPT"):
        assert secret not in text


async def test_page_headers_allow_only_its_own_style_and_script(aiohttp_client: Client) -> None:
    text, headers = await get_page(aiohttp_client, registry_for(1))
    csp = dict(d.strip().split(" ", 1) for d in headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'"
    for tag, directive in (("style", "style-src"), ("script", "script-src")):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
        assert len(blocks) == 1, tag
        digest = base64.b64encode(hashlib.sha256(blocks[0].encode()).digest()).decode()
        assert csp[directive] == f"'sha256-{digest}'"
    assert " style=" not in text and '<link rel="stylesheet"' not in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # no external asset
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


async def test_page_is_guarded_as_status_is(tmp_path: Any) -> None:
    token = tmp_path / "status-token"
    token.write_text("s3cret-token\n")
    app = make_app(registry_for(1), PrivateAccess(token))

    async def get(path: str, remote: str, bearer: str | None = None) -> int:
        req = request_from(remote, app, bearer).clone(rel_url=path)
        match = await app.router.resolve(req)
        return (await match.handler(req)).status

    for path in ("/", "/status"):  # the registered routes, not the guard alone
        assert await get(path, "127.0.0.1") == 200
        assert await get(path, "10.1.2.3") == 403
        assert await get(path, "10.1.2.3", "wrong") == 403
        assert await get(path, "10.1.2.3", "s3cret-token") == 200


async def test_page_escapes_what_components_report(aiohttp_client: Client) -> None:
    reg = registry_for(1)
    reg.component("sources merge").set(State.FAILED, '<script>alert("x")</script> & more')
    text, _ = await get_page(aiohttp_client, reg)
    assert '<script>alert("x")' not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in text


async def test_page_of_a_starting_agent_says_so(aiohttp_client: Client) -> None:
    text, _ = await get_page(aiohttp_client, StatusRegistry())
    assert "<title>unknown · dms-agent</title>" in text
    assert "Settings are not loaded yet." in text
    assert "DNS checks are not running." in text
    assert "No checks configured or none has run yet." in text


async def test_page_is_sent_gzipped_to_clients_that_accept_it(aiohttp_client: Client) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(make_app(registry_for(20)))
    plain = await client.get("/", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    body = await plain.read()
    packed = await client.get("/", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Vary"] == "Accept-Encoding"
    assert int(packed.headers["Content-Length"]) < len(body) / 4
    assert await packed.read() == body  # the same render (cached), decompressed by the client


async def test_page_is_rendered_at_most_once_per_max_age(aiohttp_client: Client) -> None:
    reg = registry_for(1)
    app = web.Application()
    app.router.add_get("/cached", page_handler(reg, max_age=3600))
    app.router.add_get("/fresh", page_handler(reg, max_age=0))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    first = await (await client.get("/cached")).text()
    reg.component("sources merge").set(State.FAILED, "a new message")
    assert await (await client.get("/cached")).text() == first  # the same bytes, not redone
    assert "a new message" in await (await client.get("/fresh")).text()


def test_page_for_twenty_domains_weighs_at_most_60_kb() -> None:
    broken = {f"d{i}.example.com" for i in range(0, 20, 5)}  # a quarter of them broken
    reg = registry_for(20, broken=broken, failing={"smtp0"}, waiting={"d1.example.com"})
    page = render_page(reg.snapshot(), time.time()).encode()
    assert page.count(b'<details id="dns-') == 20
    assert len(page) <= 60 * 1024, len(page)


def test_dns_tables_are_kept_until_the_dns_checks_publish_again() -> None:
    reg = registry_for(2)
    tables = TableCache()
    domains = reg.component("dns").details["domains"]
    assert tables.tables(domains) is tables.tables(domains)  # the same results: not redone
    before = render_page(reg.snapshot(), time.time(), dns_tables=tables)
    assert "d0.example.com. IN MX 10" not in before
    publish_dns(reg, ["d0.example.com", "d1.example.com"], broken={"d0.example.com"})
    after = render_page(reg.snapshot(), time.time(), dns_tables=tables)
    assert '<pre class="fix">d0.example.com. IN MX 10 mail.example.net.</pre>' in after


def test_check_history_is_bounded_and_records_each_result_once() -> None:
    reg = StatusRegistry()
    feed_checks(reg, failing={"imap1"}, rounds=HISTORY_LENGTH + 10)
    history = reg.snapshot()["health"]["history"]
    assert len(history) == 8
    imap = history["imap1"]
    assert len(imap) == HISTORY_LENGTH  # the board republishes on every check: no duplicates
    assert [ok for _, ok in imap[-4:]] == [True, False, False, False]
    times = [t for t, _ in imap]
    assert times == sorted(set(times))


def test_sparkline_draws_passes_and_failures_and_says_it_in_words() -> None:
    svg = sparkline([[1.0, True], [2.0, False], [3.0, True]])
    assert svg.count("M") == 3 and 'class="f"' in svg
    assert "2/3 passed" in svg
    assert sparkline([]) == "&ndash;"


def test_times_are_relative_with_the_absolute_time_on_hover() -> None:
    now = 1_800_000_000.0
    assert relative(now - 2, now) == "just now"
    assert relative(now - 42, now) == "42 s ago"
    assert relative(now - 180, now) == "3 min ago"
    assert relative(now - 7200, now) == "2 h ago"
    assert relative(now + 3 * 86400, now) == "in 3 d"
    html = when(now - 180, now)
    assert html == (
        '<time datetime="2027-01-15T07:57:00Z" title="2027-01-15 07:57:00 UTC">3 min ago</time>'
    )
    assert when(None, now) == "&ndash;"
