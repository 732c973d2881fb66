"""SPF evaluation with pyspf, in a worker thread, asking OUR nameservers.

pyspf looks names up through its module-level ``DNSLookup`` function, which by default uses
dnspython's process-wide resolver (``/etc/resolv.conf``). We replace that hook once with a
dispatcher that uses the resolver the calling thread registered for the duration of its
evaluation (a thread-local), and falls back to pyspf's own function otherwise. So each
evaluation uses the configured nameservers, port and timeouts, and concurrent evaluations with
different settings do not interfere.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver
import spf

from agent.dns.resolver import absolute, classify

# An address nobody authorises (240.0.0.0/4 is reserved): evaluating it walks the whole record,
# so lookup limits, void lookups and include loops show even when the egress matches early.
PROBE_V4 = "240.0.0.1"
PROBE_V6 = "100::1"  # the IPv6 discard prefix (RFC 6666)

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
    resolver: dns.resolver.Resolver | None = getattr(_local, "resolver", None)
    if resolver is None:
        return _original_lookup(name, qtype, strict, timeout)
    try:
        answer = resolver.resolve(
            absolute(name), qtype, search=False, raise_on_no_answer=False, lifetime=timeout
        )
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError) as exc:
        _local.error_kinds.append(classify(exc))
        raise spf.TempError(f"DNS {classify(exc)} for {qtype} {name}") from None
    if answer.rrset is None:
        return []
    return [((name, qtype), _value(r, qtype)) for r in answer.rrset]


spf.DNSLookup = _routed_lookup


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    address: str
    result: str  # pass fail softfail neutral none permerror temperror
    explanation: str
    lookups: int
    void_lookups: int


def evaluate(
    resolver: dns.resolver.Resolver,
    domain: str,
    addresses: Sequence[str],
    timeout: float,
) -> tuple[list[SpfOutcome], list[str]]:
    """Blocking: evaluate ``domain``'s SPF for each address; also return DNS error kinds.

    The evaluations share one answer cache (pyspf's, per query object), so the record tree
    is asked once per call.
    """
    _local.resolver = resolver
    _local.error_kinds = []
    try:
        outcomes = []
        cache: dict[Any, Any] = {}
        for address in addresses:
            q = spf.query(
                i=address, s=f"postmaster@{domain}", h=domain, strict=True, timeout=timeout
            )
            q.cache = cache
            result, _code, explanation = q.check()
            outcomes.append(
                SpfOutcome(address, result, str(explanation), q.lookups, q.void_lookups)
            )
        return outcomes, list(_local.error_kinds)
    finally:
        _local.resolver = None


def probe_for(addresses: Sequence[str]) -> str:
    """The probe of the family we send from (v4 if any)."""
    if not addresses or any(ipaddress.ip_address(a).version == 4 for a in addresses):
        return PROBE_V4
    return PROBE_V6
