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
import re
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


# ---------------------------------------------------------------- faults a person can fix

_ALL = re.compile(r"^[+?~-]?all$", re.IGNORECASE)
_TARGET = re.compile(r"^[+?~-]?(include|a|mx|exists):([^/\s]+)", re.IGNORECASE)
_BARE = re.compile(r"^[+?~-]?(a|mx)(/\S*)?$", re.IGNORECASE)
_REDIRECT = re.compile(r"^redirect=(\S+)$", re.IGNORECASE)


@dataclass(slots=True)
class Faults:
    """What a walk of an SPF record and its includes found: ``records`` (owner -> record),
    ``loop`` (the names of an include loop, first repeated at the end, and the term that
    closes it), ``void`` ((owner, term) pairs whose lookup finds nothing)."""

    records: dict[str, str]
    loop: list[str]
    loop_term: tuple[str, str]
    void: list[tuple[str, str]]


async def faults(lookup: Lookup, domain: str) -> Faults:
    found = Faults({}, [], ("", ""), [])
    await _walk(lookup, domain.lower(), [], found)
    return found


async def _walk(lookup: Lookup, owner: str, path: list[str], found: Faults) -> None:
    if found.loop or len(path) > 10:
        return
    records = [t for t in await lookup.txt(owner) if t.lower().startswith("v=spf1")]
    if len(records) != 1:
        return
    found.records[owner] = records[0]
    for term in records[0].split()[1:]:
        target, kind = _target(term, owner)
        if target is None or "%" in target:
            continue  # a macro: known only for one message
        if kind in ("include", "redirect"):
            if target in (*path, owner):
                found.loop, found.loop_term = [*path, owner, target], (owner, term)
                return
            spf = [t for t in await lookup.txt(target) if t.lower().startswith("v=spf1")]
            if not spf:
                found.void.append((owner, term))
                continue
            await _walk(lookup, target, [*path, owner], found)
            if found.loop:
                return
        elif await _finds_nothing(lookup, target, kind):
            found.void.append((owner, term))


def _target(term: str, owner: str) -> tuple[str | None, str]:
    if m := _TARGET.match(term):
        return m.group(2).lower().rstrip("."), m.group(1).lower()
    if m := _REDIRECT.match(term):
        return m.group(1).lower().rstrip("."), "redirect"
    if m := _BARE.match(term):
        return owner, m.group(1).lower()
    return None, ""


async def _finds_nothing(lookup: Lookup, name: str, kind: str) -> bool:
    if kind == "mx":
        return not (await lookup.query(name, "MX")).records
    v4, v6 = await lookup.addresses(name)
    return not v4 + v6


def merge(records: Sequence[str]) -> str:
    """One record from several: every term once, in order, and one all term (the first
    record's, else -all)."""
    terms: list[str] = []
    final = ""
    for record in records:
        for term in record.split()[1:]:
            if _ALL.match(term):
                final = final or term
            elif term.lower() not in (t.lower() for t in terms):
                terms.append(term)
    return " ".join(["v=spf1", *terms, final or "-all"])


def with_term(record: str, term: str) -> str:
    """``record`` with ``term`` inserted before its all term (or a redirect), else at the end."""
    words = record.split()
    for i, word in enumerate(words):
        if _ALL.match(word) or _REDIRECT.match(word):
            return " ".join([*words[:i], term, *words[i:]])
    return " ".join([*words, term])


_IP = re.compile(r"^\+?ip[46]:\S+$", re.IGNORECASE)


def flatten(found: Faults, domain: str) -> str | None:
    """``domain``'s record with each include whose record is only ip4:/ip6: terms (and an all
    term) replaced by those terms; None when no include can be flattened so."""
    record = found.records.get(domain)
    if record is None:
        return None
    out: list[str] = []
    changed = False
    for term in record.split():
        target, kind = _target(term, domain)
        inner = found.records.get(target or "", "").split()[1:] if kind == "include" else []
        nets = [t for t in inner if _IP.match(t)]
        plain = not term.startswith(("-", "~", "?"))  # a "+include" (the default) only
        if plain and inner and len(nets) == len(inner) - 1 and _ALL.match(inner[-1]):
            out.extend(n for n in nets if n.lower() not in (o.lower() for o in out))
            changed = True
        elif term.lower() not in (o.lower() for o in out):
            out.append(term)
    return " ".join(out) if changed else None
