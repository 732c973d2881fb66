"""The checks' DNS transport against a real knotd: large answers, CNAMEs, several nameservers."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from agent.dns import runner
from agent.dns.resolver import Answer, LookupFailed
from agent.dns.transport import EDNS_PAYLOAD, Transport
from tests.dnscheck.conftest import World
from tests.rig.knot import KnotServer

BIG = ["x" * 250 for _ in range(6)]  # 1,500 bytes: more than EDNS_PAYLOAD over UDP


@pytest.fixture(scope="module")
def knot(knot_factory: Callable[[dict[str, str | None]], KnotServer]) -> KnotServer:
    big = " ".join(f'"{part}"' for part in BIG)
    return knot_factory(
        {
            "wire.test": (
                f"big TXT {big}\n"
                'mid TXT "' + "m" * 250 + '" "' + "m" * 250 + '" "' + "m" * 250 + '"\n'
                "alias CNAME target\n"
                'target TXT "at the target"\n'
                "outside CNAME somewhere.else.test.\n"
            )
        }
    )


@pytest.fixture
def silent() -> Iterator[tuple[str, int]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never read: every query times out
        yield sock.getsockname()


def _server(knot: KnotServer) -> tuple[str, int]:
    return (knot.host, knot.port)


async def _ask(servers: list[tuple[str, int]], name: str, rdtype: str = "TXT") -> list[str]:
    transport = Transport(servers, timeout=0.5, lifetime=2.0)
    try:
        answer = await transport.ask(name, rdtype)
    finally:
        transport.close()
    return [b"".join(r.strings).decode() for r in answer.records]


async def test_an_answer_larger_than_the_udp_payload_comes_over_tcp(knot: KnotServer) -> None:
    assert len("".join(BIG)) > EDNS_PAYLOAD
    assert await _ask([_server(knot)], "big.wire.test") == ["".join(BIG)]


async def test_an_answer_over_512_bytes_comes_over_udp_whole(knot: KnotServer) -> None:
    assert await _ask([_server(knot)], "mid.wire.test") == ["m" * 750]


async def test_a_cname_is_followed_within_the_answer(knot: KnotServer) -> None:
    assert await _ask([_server(knot)], "alias.wire.test") == ["at the target"]
    assert await _ask([_server(knot)], "outside.wire.test") == []  # target not served here


async def test_no_such_name_is_an_answer(knot: KnotServer) -> None:
    transport = Transport([_server(knot)], timeout=0.5, lifetime=2.0)
    try:
        answer = await transport.ask("nothing.wire.test", "TXT")
    finally:
        transport.close()
    assert answer.nxdomain and not answer.records


async def test_a_silent_first_nameserver_hands_over_to_the_next(
    knot: KnotServer, silent: tuple[str, int]
) -> None:
    assert await _ask([silent, _server(knot)], "target.wire.test") == ["at the target"]


async def test_refused_everywhere_is_refused_and_silence_is_a_timeout(
    knot: KnotServer, silent: tuple[str, int]
) -> None:
    with pytest.raises(LookupFailed) as refused:
        await _ask([_server(knot)], "not-served.example")
    assert refused.value.kind == "refused"
    with pytest.raises(LookupFailed) as quiet:
        await _ask([silent], "target.wire.test")
    assert quiet.value.kind == "timeout"


async def test_a_refusing_nameserver_is_skipped(
    knot: KnotServer, knot_factory: Callable[[dict[str, str | None]], KnotServer]
) -> None:
    """REFUSED rules the first server out for the lookup; the next one answers."""
    other = knot_factory({"other.test": 'target TXT "from the other server"\n'})
    found = await _ask([_server(knot), _server(other)], "target.other.test")
    assert found == ["from the other server"]


async def test_a_run_asks_each_name_and_type_once(
    dns_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks share answers: the MX for the MX and MTA-STS checks, the domain's TXT for
    SPF and pyspf, the MX host's addresses for PTR, TLSA and mx-address."""
    asked: Counter[tuple[str, str]] = Counter()
    real_ask = Transport.ask

    async def counting(self: Transport, name: str, rdtype: str) -> Answer:
        asked[(name, rdtype)] += 1
        return await real_ask(self, name, rdtype)

    monkeypatch.setattr(Transport, "ask", counting)
    settings = dns_world.settings()
    domains = ["good.test", "spf11.test", "twospf.test", "dmarcnone.test"]
    await runner.run(settings, runner.plan_from(settings, None, domains), dns_world.config_dir)
    assert asked[("good.test", "MX")] == 1 and asked[("spf11.test", "TXT")] == 1
    assert {k: n for k, n in asked.items() if n > 1} == {}


class Spoofer:
    """A UDP relay in front of knotd that first sends, with the query's ID, a forged reply to
    another question, then a malformed one, then knotd's real answer."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.sock.getsockname()
        self._upstream = upstream
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                query, client = self.sock.recvfrom(4096)
                forged = bytearray(query)
                forged[2] |= 0x80  # QR: a reply
                forged[13] ^= 0x01  # another letter, not just another case: another question
                self.sock.sendto(bytes(forged), client)
                malformed = bytearray(query)
                malformed[2] |= 0x80
                malformed[7] = 5  # five answers announced, none there
                self.sock.sendto(bytes(malformed), client)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                    up.settimeout(2)
                    up.sendto(query, self._upstream)
                    self.sock.sendto(up.recv(4096), client)

    def close(self) -> None:
        self.sock.close()


async def test_a_reply_to_another_question_or_a_malformed_one_is_not_the_answer(
    knot: KnotServer,
) -> None:
    spoofer = Spoofer(_server(knot))
    try:
        found = await _ask([spoofer.address], "target.wire.test")
    finally:
        spoofer.close()
    assert found == ["at the target"]
