"""SPF evaluation with pyspf, in a worker thread, its lookups answered by OUR resolver.

pyspf looks names up through its module-level ``DNSLookup`` function, which by default uses
dnspython's process-wide resolver (``/etc/resolv.conf``). We replace that hook once with a
dispatcher that uses the lookup function the calling thread registered for the duration of
its evaluation (a thread-local), and falls back to pyspf's own function otherwise.

The agent registers a function that hands each lookup back to the event loop's ``Lookup``
(``run_coroutine_threadsafe``): the configured nameservers, port and timeouts apply, answers
are shared with the other checks of the run (an include used by 200 domains is asked once),
errors are counted in one place, and the thread holds the GIL only for pyspf's own parsing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import spf

from agent.dns.resolver import Answer, Lookup, LookupFailed

# An address nobody authorises (240.0.0.0/4 is reserved): evaluating it walks the whole record,
# so lookup limits, void lookups and include loops show even when the egress matches early.
PROBE_V4 = "240.0.0.1"
PROBE_V6 = "100::1"  # the IPv6 discard prefix (RFC 6666)

Ask = Callable[[str, str], Answer]  # (name, qtype) -> Answer; raises LookupFailed

_local = threading.local()
_original_lookup = spf.DNSLookup


def _value(rdata: Any, qtype: str) -> Any:
    if qtype in ("A", "AAAA"):
        return rdata.address
    if qtype == "MX":
        return (rdata.preference, rdata.exchange)
    if qtype == "PTR":
        return rdata.target.to_text(True)
    return tuple(rdata.strings)  # TXT / SPF: a list of character-strings, pyspf joins them


def _routed_lookup(name: str, qtype: str, strict: Any = True, timeout: float = 30) -> Any:
    ask: Ask | None = getattr(_local, "ask", None)
    if ask is None:
        return _original_lookup(name, qtype, strict, timeout)
    try:
        answer = ask(name, qtype)
    except LookupFailed as exc:
        raise spf.TempError(f"DNS {exc.kind} for {qtype} {name}") from None
    return [((name, qtype), _value(r, qtype)) for r in answer.records]


spf.DNSLookup = _routed_lookup


def loop_asker(lookup: Lookup, loop: asyncio.AbstractEventLoop, timeout: float) -> Ask:
    """An ``Ask`` for worker threads that runs each lookup on ``loop`` through ``lookup``."""

    def ask(name: str, qtype: str) -> Answer:
        known = lookup.done(name, qtype)  # most SPF lookups were answered already this run
        if known is not None:
            return known
        future = asyncio.run_coroutine_threadsafe(lookup.query(name, qtype), loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise LookupFailed("timeout", name, qtype, "no answer in time") from None

    return ask


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    address: str
    result: str  # pass fail softfail neutral none permerror temperror
    explanation: str
    lookups: int
    void_lookups: int


def evaluate(ask: Ask, domain: str, addresses: Sequence[str]) -> list[SpfOutcome]:
    """Blocking: evaluate ``domain``'s SPF for each address, its lookups through ``ask``."""
    _local.ask = ask
    try:
        outcomes = []
        cache: dict[Any, Any] = {}  # pyspf's answer cache, shared by the evaluations of a call
        for address in addresses:
            q = spf.query(i=address, s=f"postmaster@{domain}", h=domain, strict=True)
            q.cache = cache
            result, _code, explanation = q.check()
            outcomes.append(
                SpfOutcome(address, result, str(explanation), q.lookups, q.void_lookups)
            )
        return outcomes
    finally:
        _local.ask = None


def probe_for(addresses: Sequence[str]) -> str:
    """The probe of the family we send from (v4 if any)."""
    if not addresses or any(ipaddress.ip_address(a).version == 4 for a in addresses):
        return PROBE_V4
    return PROBE_V6
