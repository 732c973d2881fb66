"""Is a DKIM key published? The TXT at ``<selector>._domainkey.<domain>.`` must carry our p=.

Returns True (published and matching), False (absent or a different key), None (could not
tell: timeout, SERVFAIL). A lookup problem never counts as "not published".
Runs in the DKIM worker process (agent/dkim/worker.py), so dnspython stays out of the agent.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from agent.dkim.keys import record_tags


def make_resolver(nameservers: list[tuple[str, int]], timeout: float) -> dns.asyncresolver.Resolver:
    """A resolver of our own (never the process-wide one) asking ``nameservers`` (host, port),
    as the agent split them from the settings. Empty: the system's servers."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


async def is_published(
    resolver: dns.asyncresolver.Resolver, domain: str, selector: str, p: str
) -> bool | None:
    """Does DNS serve ``p`` (a public key's ``p=``) at ``selector._domainkey.domain``?"""
    qname = dns.name.from_text(f"{selector}._domainkey.{domain}.")  # absolute: no ndots
    try:
        answer = await resolver.resolve(qname, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return False
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException):
        return None
    for rdata in answer:
        text = b"".join(rdata.strings).decode(errors="replace")
        if record_tags(text).get("p") == p:
            return True
    return False
