"""Fetching MTA-STS policies (agent/dns/mtasts.py ``PolicyFetcher``) against a real HTTPS
server on loopback: what each answer a policy host can give becomes, the address list tried in
order (the policy host's A records from the real knotd), a silent host bounded by the timeout,
and no fetch thread left behind when a run stops."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from agent.dns.config import DnsSettings
from agent.dns.mtasts import PolicyError, PolicyFetcher, ssl_context
from agent.dns.resolver import Lookup
from agent.dns.transport import make_transport
from tests.dnscheck import world
from tests.rig.knot import KnotServer
from tests.rig.proc import free_port

NAMES = ["good", "gone", "html", "big", "chunked", "moved", "two"]


async def policy(request: web.Request) -> web.StreamResponse:
    name = request.host.split(".")[1]  # mta-sts.<name>.test[:port]
    if name == "gone":
        raise web.HTTPNotFound()
    if name == "moved":
        raise web.HTTPMovedPermanently("https://mta-sts.good.test/.well-known/mta-sts.txt")
    if name == "html":
        return web.Response(text=world.GOOD_POLICY, content_type="text/html")
    if name == "big":
        return web.Response(text="x" * (65 * 1024), content_type="text/plain")
    if name == "chunked":
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for line in world.GOOD_POLICY.splitlines(keepends=True):
            await response.write(line.encode())
        await response.write_eof()
        return response
    return web.Response(text=world.GOOD_POLICY, content_type="text/plain")


@dataclass
class Host:
    port: int
    ctx: ssl.SSLContext
    knot: KnotServer


@pytest.fixture
async def host(
    tmp_path: Path, knot_factory: Callable[[dict[str, str | None]], KnotServer]
) -> AsyncIterator[Host]:
    ca = world.make_ca(tmp_path, [f"mta-sts.{n}.test" for n in NAMES])
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(ca.cert, ca.key)
    app = web.Application()
    app.router.add_get("/.well-known/mta-sts.txt", policy)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    for address in ("127.0.0.1", "127.0.0.3"):
        await web.TCPSite(runner, address, port, ssl_context=served).start()
    # nothing listens on 127.0.0.2, which knotd lists first (records in canonical order)
    knot = knot_factory({"two.test": "mta-sts A 127.0.0.3\nmta-sts A 127.0.0.2\n"})
    try:
        yield Host(port, ssl_context(ca.ca_pem), knot)
    finally:
        await runner.cleanup()


def fetcher(host: Host, connect_to: str | None = "127.0.0.1") -> tuple[PolicyFetcher, Lookup]:
    settings = DnsSettings(nameservers=[host.knot.nameserver])
    lookup = Lookup(make_transport(settings))
    return PolicyFetcher(host.ctx, lookup, connect_to, 4), lookup


async def fetch_error(host: Host, name: str) -> PolicyError:
    policies, _ = fetcher(host)
    try:
        with pytest.raises(PolicyError) as caught:
            await policies.fetch(f"{name}.test", host.port, 5.0)
    finally:
        policies.close()
    return caught.value


async def test_a_policy_is_fetched_plain_or_chunked(host: Host) -> None:
    policies, _ = fetcher(host)
    try:
        for name in ("good", "chunked"):
            got = await policies.fetch(f"{name}.test", host.port, 5.0)
            assert (got.mode, got.mx) == ("enforce", (world.MX,))
    finally:
        policies.close()


@pytest.mark.parametrize(
    ("name", "message", "temporary"),
    [
        ("gone", "/.well-known/mta-sts.txt answered HTTP 404", False),
        ("moved", "answered HTTP 301", False),  # redirects are not followed (RFC 8461 3.3)
        ("html", "is served as text/html; charset=utf-8, not text/plain", False),
        ("big", "is larger than 64 KiB", False),
    ],
)
async def test_what_a_policy_host_answers_decides_the_error(
    host: Host, name: str, message: str, temporary: bool
) -> None:
    error = await fetch_error(host, name)
    assert message in str(error) and error.temporary is temporary


async def test_a_certificate_for_another_name_is_rejected(host: Host) -> None:
    error = await fetch_error(host, "other")  # the certificate names no mta-sts.other.test
    assert str(error).startswith("certificate of mta-sts.other.test rejected: Hostname mismatch")
    assert not error.temporary


async def test_the_policy_hosts_addresses_come_from_our_lookups_and_are_tried_in_order(
    host: Host,
) -> None:
    policies, lookup = fetcher(host, connect_to=None)
    try:
        assert await policies.addresses("mta-sts.two.test") == ["127.0.0.2", "127.0.0.3"]
        got = await policies.fetch("two.test", host.port, 5.0)  # .2 refuses, .3 serves
        assert got.mode == "enforce"
        with pytest.raises(PolicyError, match="has no A/AAAA record") as caught:
            await policies.fetch("none.two.test", host.port, 5.0)  # no such name
        assert caught.value.temporary
    finally:
        policies.close()
        lookup.close()


def fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mta-sts")]


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP port that accepts and then says nothing: a TLS handshake waits forever."""
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()


def silent_fetcher() -> PolicyFetcher:
    lookup = Lookup(make_transport(DnsSettings(nameservers=["127.0.0.1:9"])))  # never asked
    return PolicyFetcher(ssl.create_default_context(), lookup, "127.0.0.1", 2)


async def test_a_silent_host_is_a_temporary_error_within_the_timeout(silent_port: int) -> None:
    policies = silent_fetcher()
    try:
        started = time.monotonic()
        with pytest.raises(PolicyError, match=r"no answer within 0\.5 s") as caught:
            await policies.fetch("silent.test", silent_port, 0.5)
        assert caught.value.temporary and time.monotonic() - started < 5
    finally:
        policies.close()


async def test_close_ends_a_fetch_still_waiting(silent_port: int) -> None:
    """A run stopped early (its deadline) closes its fetcher: a fetch thread still waiting on
    a silent host ends then, not at its 60 s socket timeout (the worker process could not exit
    before it)."""
    policies = silent_fetcher()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(policies.fetch("silent.test", silent_port, 60), 0.5)
    assert [t for t in fetch_threads() if t.is_alive()], "the fetch waits in its thread"
    policies.close()
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in fetch_threads()):
        assert time.monotonic() < deadline, "a fetch thread outlived close()"
        await asyncio.sleep(0.02)
