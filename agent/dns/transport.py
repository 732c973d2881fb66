"""Asking the nameservers: one UDP socket per nameserver for a whole run, prebuilt queries.

dnspython's ``Resolver.resolve`` builds a message object, opens and closes a socket, and
walks its retry state machine for every query; for 200 domains (~1,200 queries) that was most
of a run's CPU time (bench/dns_checks.py). Here each query is a 12-byte header in front of
the question and an EDNS(0) record offering 1,232 bytes — so answers of up to that size never
fall back to TCP, where a plain query was cut at 512 bytes. Replies are matched by ID and
question (a malformed one is ignored, as the resolver does); their answer section is read
with dnspython's wire parser (``_Reply``), a CNAME chain within it followed as the resolver
does.

Retries follow dnspython's rules: every nameserver in turn, each attempt bounded by
``timeout``, the lookup by ``lifetime``; SERVFAIL, REFUSED or a socket error rules a server
out for that lookup; TC (truncated) asks the same server again over TCP. IDs are random; the
source port is the kernel's choice once per run rather than once per query, so a forged
answer must still guess the port, the ID and repeat the question.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import struct

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.wire

from agent.dns.resolver import Answer, LookupFailed
from agent.dns.runsettings import RunSettings, Validated, for_run, split_host_port

EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: no IP fragmentation on common paths
# OPT pseudo-record: root owner, type 41, payload size, extended rcode/version/flags 0, no data
_OPT = b"\x00\x00\x29" + struct.pack("!H", EDNS_PAYLOAD) + b"\x00" * 6
_FLAGS_RD = 0x0100
_QR = 0x80  # in the third byte of the header


def server_addresses(settings: RunSettings) -> list[tuple[str, int]]:
    """(address, port) of the configured nameservers, else of resolv.conf's (read here)."""
    if settings.nameservers:
        return [split_host_port(text) for text in settings.nameservers]
    system = dns.resolver.Resolver()  # raises when resolv.conf names no nameserver
    return [
        (ns.address, ns.port)
        for ns in system.nameservers
        if isinstance(ns, dns.nameserver.Do53Nameserver)
    ]


def make_transport(given: RunSettings | Validated) -> Transport:
    settings = for_run(given)
    return Transport(server_addresses(settings), settings.timeout, settings.lifetime)


def absolute_name(name: str) -> dns.name.Name:
    """``name`` as an absolute name. A plain ASCII name is cut into labels here, which is what
    dnspython's ``from_text`` does too, a character at a time (a tenth of a run's DNS work);
    escapes and international names are left to it. Both refuse an empty or too long label."""
    text = name.rstrip(".")
    if text and text.isascii() and "\\" not in text:
        return dns.name.Name([label.encode() for label in text.split(".")] + [b""])
    return dns.name.from_text(text + ".")


class _ServerError(Exception):
    """One nameserver gave no usable answer to one query; ``kind`` as LookupFailed's."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Endpoint(asyncio.DatagramProtocol):
    """One connected UDP socket to one nameserver; replies handed to the waiting query."""

    def __init__(self) -> None:
        # unpredictable IDs without a system call each (os.urandom was 10 % of a run)
        self._ids = random.Random(secrets.randbits(64))
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[int, tuple[bytes, asyncio.Future[_Reply]]] = {}

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) < 12 or not data[2] & _QR:
            return
        entry = self.waiting.get(int.from_bytes(data[:2], "big"))
        if entry is None:
            return  # late (the query timed out) or not ours
        question, future = entry
        # the question echoed as asked (case aside): a reply to this query, not a stray one
        if data[12 : 12 + len(question)].lower() != question or future.done():
            return
        try:
            reply = _Reply(data, len(question))
        except _MALFORMED:
            return  # as dnspython's resolver does: keep waiting for a well-formed reply
        future.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the server, not one query, is at fault
        for _question, future in self.waiting.values():
            if not future.done():
                future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.error_received(exc or ConnectionError("socket closed"))

    def new_id(self) -> int:
        while True:
            qid = self._ids.getrandbits(16)
            if qid not in self.waiting:
                return qid


class Transport:
    """A run's queries to its nameservers. ``ask`` returns records or raises LookupFailed."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float, lifetime: float) -> None:
        self._servers = servers
        self._timeout = timeout
        self._lifetime = lifetime
        self._endpoints: dict[tuple[str, int], asyncio.Future[_Endpoint]] = {}

    def close(self) -> None:
        for opening in self._endpoints.values():
            if not opening.done():
                opening.cancel()
            elif not opening.cancelled() and opening.exception() is None:
                sock = opening.result().transport
                if sock is not None:
                    sock.close()
        self._endpoints.clear()

    async def ask(self, name: str, rdtype: str) -> Answer:
        qname = absolute_name(name)
        qtype = dns.rdatatype.from_text(rdtype)
        question = qname.to_digestable() + struct.pack("!HH", qtype, dns.rdataclass.IN)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lifetime
        live = list(self._servers)
        problems: list[_ServerError] = []
        while live:
            for server in list(live):
                left = deadline - loop.time()
                if left <= 0:
                    raise LookupFailed("timeout", name, rdtype, "lifetime exhausted")
                try:
                    reply = await self._attempt(server, question, min(self._timeout, left))
                    if reply.truncated:
                        reply = await self._over_tcp(server, qname, qtype, deadline - loop.time())
                    return reply.answer(qname, qtype, server)
                except TimeoutError:
                    continue
                except _ServerError as exc:
                    problems.append(exc)
                    live.remove(server)
        kinds = {p.kind for p in problems}
        kind = next((k for k in ("servfail", "refused") if k in kinds), "other")
        raise LookupFailed(kind, name, rdtype, "; ".join(str(p) for p in problems))

    async def _attempt(self, server: tuple[str, int], question: bytes, timeout: float) -> _Reply:
        endpoint = await self._endpoint(server)
        qid = endpoint.new_id()
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        endpoint.waiting[qid] = (question.lower(), future)
        try:
            header = struct.pack("!HHHHHH", qid, _FLAGS_RD, 1, 0, 0, 1)
            assert endpoint.transport is not None
            endpoint.transport.sendto(header + question + _OPT)
            async with asyncio.timeout(timeout):
                reply = await future
        except TimeoutError:
            raise  # an OSError too, but silence is not a socket error
        except OSError as exc:
            raise _ServerError("other", f"{server[0]}: {exc}") from None
        finally:
            endpoint.waiting.pop(qid, None)
        return _usable(server, reply)

    async def _over_tcp(
        self,
        server: tuple[str, int],
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        timeout: float,
    ) -> _Reply:
        query = dns.message.make_query(qname, qtype)
        try:
            reply = await dns.asyncquery.tcp(query, server[0], timeout, server[1])
        except (dns.exception.Timeout, TimeoutError):
            raise TimeoutError from None
        except (dns.exception.DNSException, OSError) as exc:
            raise _ServerError("other", f"{server[0]} over TCP: {exc}") from None
        question = qname.to_digestable() + struct.pack("!HH", qtype, dns.rdataclass.IN)
        try:
            return _usable(server, _Reply(reply.to_wire(), len(question)))
        except _MALFORMED as exc:
            raise _ServerError("other", f"{server[0]}: malformed reply ({exc})") from None

    async def _endpoint(self, server: tuple[str, int]) -> _Endpoint:
        opening = self._endpoints.get(server)
        if opening is None:
            opening = asyncio.ensure_future(self._open(server))
            self._endpoints[server] = opening
        elif opening.done() and not opening.cancelled() and opening.exception() is None:
            return opening.result()  # open already: no shield to wait through
        try:
            return await asyncio.shield(opening)
        except OSError as exc:
            raise _ServerError("other", f"{server[0]}: {exc}") from None

    async def _open(self, server: tuple[str, int]) -> _Endpoint:
        loop = asyncio.get_running_loop()
        sock, endpoint = await loop.create_datagram_endpoint(_Endpoint, remote_addr=server)
        endpoint.transport = sock
        return endpoint


class _Reply:
    """A reply's answer section, read with dnspython's wire parser: the question was compared
    byte for byte already, and the authority and additional sections are never needed, so
    they are not parsed (dns.message.from_wire parsing them was a third of a run's time)."""

    def __init__(self, data: bytes, question_length: int) -> None:
        self.truncated = bool(data[2] & 0x02)
        self.rcode = data[3] & 0x0F
        self.records: list[tuple[dns.name.Name | None, int, dns.rdata.Rdata]] = []
        if self.truncated:
            return
        parser = dns.wire.Parser(data, 12 + question_length)
        for _ in range(int.from_bytes(data[6:8], "big")):
            owner: dns.name.Name | None = None  # None: the name asked (compared already)
            if data[parser.current : parser.current + 2] == _TO_QUESTION:
                parser.current += 2
            else:
                owner = dns.name.from_wire_parser(parser)
            rdtype, rdclass, _ttl, size = parser.get_struct("!HHIH")
            with parser.restrict_to(size):
                rdata = dns.rdata.from_wire_parser(rdclass, rdtype, parser)
            if rdclass == dns.rdataclass.IN:
                self.records.append((owner, rdtype, rdata))

    def answer(self, qname: dns.name.Name, qtype: int, server: tuple[str, int]) -> Answer:
        """The records of ``qtype`` at ``qname``, following a CNAME chain within the reply."""
        if self.rcode == dns.rcode.NXDOMAIN:
            return Answer((), nxdomain=True)
        name = qname
        records = [(qname if o is None else o, t, r) for o, t, r in self.records]
        for _ in range(_MAX_CHAIN):
            found: list[dns.rdata.Rdata] = []
            for owner, rdtype, rdata in records:
                if rdtype == qtype and owner == name and rdata not in found:
                    found.append(rdata)
            if found:
                return Answer(tuple(found))
            target = next(
                (r for o, t, r in records if t == dns.rdatatype.CNAME and o == name), None
            )
            if target is None:
                return Answer(())
            name = target.target  # type: ignore[attr-defined]  # a CNAME's
        raise _ServerError("other", f"{server[0]}: CNAME chain longer than {_MAX_CHAIN}")


_MAX_CHAIN = 16
# A compression pointer to offset 12, where the question's name starts: the usual owner of an
# answer record. Reading it as the question's name saved a fifth of a reply's parsing.
_TO_QUESTION = b"\xc0\x0c"


_MALFORMED = (dns.exception.DNSException, ValueError, struct.error)


def _usable(server: tuple[str, int], reply: _Reply) -> _Reply:
    """The reply if it answers (records, no data, or no such name); else the server's error."""
    if reply.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return reply
    rcode = dns.rcode.Rcode.make(reply.rcode)
    kind = {dns.rcode.SERVFAIL: "servfail", dns.rcode.REFUSED: "refused"}.get(rcode, "other")
    raise _ServerError(kind, f"{server[0]} answered {dns.rcode.to_text(rcode)}")
