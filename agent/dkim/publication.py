"""Is a DKIM key published? The TXT at ``<selector>._domainkey.<domain>.`` must carry our p=.

Returns True (published and matching), False (absent or a different key), None (could not
tell: timeout, SERVFAIL). A lookup problem never counts as "not published".
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from agent.dkim.keys import PublicKey, record_tags


def make_resolver(nameservers: list[str], timeout: float) -> dns.asyncresolver.Resolver:
    """A resolver of our own (never the process-wide one); ``host`` or ``host:port`` entries."""
    if not nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        hosts, port = [], 53
        for entry in nameservers:
            host, sep, p = entry.rpartition(":") if entry.count(":") == 1 else ("", "", "")
            hosts.append(host if sep else entry)
            port = int(p) if sep else port
        resolver.nameservers = hosts
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


async def is_published(resolver: dns.asyncresolver.Resolver, key: PublicKey) -> bool | None:
    qname = dns.name.from_text(f"{key.selector}._domainkey.{key.domain}.")  # absolute: no ndots
    try:
        answer = await resolver.resolve(qname, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return False
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException):
        return None
    for rdata in answer:
        text = b"".join(rdata.strings).decode(errors="replace")
        if record_tags(text).get("p") == key.p:
            return True
    return False
