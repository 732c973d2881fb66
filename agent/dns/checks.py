"""The checks of one domain (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT) and of the MX host
(its addresses, PTR of the egress addresses, TLSA). Each returns a ``CheckResult``.

A failed lookup (timeout, SERVFAIL...) becomes an ``error`` result through ``guard``: it says
nothing about the records, so it is never a ``fail``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import dns.reversename

from agent.dns import dkimkeys, spfeval, tlsa
from agent.dns.config import DnsSettings
from agent.dns.dkimkeys import PublicKey, key_data
from agent.dns.model import CheckResult, DkimInfo, Finding, Status
from agent.dns.mtasts import PolicyError, fetch_policy
from agent.dns.resolver import Lookup, LookupFailed

log = logging.getLogger("dms_agent.dns")

P, W, F, E = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR


@dataclass(slots=True)
class Env:
    """What every check of one run shares."""

    settings: DnsSettings
    lookup: Lookup
    spf_ask: spfeval.Ask  # pyspf's lookups, answered by ``lookup`` on the event loop
    http: aiohttp.ClientSession | None = None
    http_problem: str | None = None  # why policies cannot be fetched (a bad CA bundle)
    dkim_keys: dict[str, dict[str, PublicKey]] = field(default_factory=dict)


def result(domain: str, check: str, *findings: Finding) -> CheckResult:
    return CheckResult(domain, check, tuple(findings))


async def guard(domain: str, check: str, body: Awaitable[CheckResult]) -> CheckResult:
    """Run one check; a failed lookup, or a bug in one check, is that check's ``error``."""
    try:
        return await body
    except LookupFailed as exc:
        msg = f"DNS lookup failed ({exc}); nothing can be said about the record"
        fix = "check that the configured nameservers answer, then re-run the check"
    except Exception as exc:  # one broken check must not take the others down
        log.exception("dns check %s of %s crashed", check, domain)
        msg = f"the check itself failed ({type(exc).__name__}: {exc})"
        fix = "report this as a dms-agent bug, with the log line"
    return result(domain, check, Finding(E, msg, fix=fix))


# ---------------------------------------------------------------- MX


def exchange(mx: Any) -> str:
    """An MX exchange as a lower-case name without the final dot; "" for a null MX."""
    return str(mx.exchange.to_text(True)).lower().rstrip(".")


async def check_mx(env: Env, domain: str, send_only: bool) -> CheckResult:
    answer = await env.lookup.query(domain, "MX")
    want = env.settings.mx_host
    add = f"add `{domain}. MX 10 {want or '<your mail host>'}.`"
    mxs = sorted((r.preference, exchange(r)) for r in answer.records)
    found = ", ".join(f"{p} {x or '.'}" for p, x in mxs) or "no MX record"
    if answer.nxdomain:
        return result(domain, "mx", Finding(F, f"{domain} does not exist in DNS", found, "", add))
    if not mxs:
        if send_only:
            fix = f"publish a null MX: `{domain}. MX 0 .`"
            return result(domain, "mx", Finding(W, "no MX; senders fall back to A", found, "", fix))
        return result(domain, "mx", Finding(F, "no MX record", found, want or "", add))
    if mxs == [(0, "")]:
        if send_only:
            return result(domain, "mx", Finding(P, "null MX: send-only domain", found))
        fix = f"replace the null MX with `{domain}. MX 10 {want or '<your mail host>'}.`"
        msg = "null MX: the domain refuses all mail"
        return result(domain, "mx", Finding(F, msg, found, want or "", fix))
    if send_only or want is None:
        return result(domain, "mx", Finding(P, "MX present", found))
    others = [x for _, x in mxs if x != want]
    if others:
        fix = f"point the MX to {want}. and remove {', '.join(others)}"
        msg = f"MX points elsewhere: {', '.join(others)}"
        return result(domain, "mx", Finding(F, msg, found, want, fix))
    return result(domain, "mx", Finding(P, "every MX is ours", found, want))


# ---------------------------------------------------------------- MX host: A/AAAA, PTR


async def check_mx_address(env: Env, host: str) -> CheckResult:
    s = env.settings
    v4, v6 = await env.lookup.addresses(host)
    findings = [
        _compare_addresses(host, "A", v4, [str(a) for a in s.ipv4]),
        _compare_addresses(host, "AAAA", v6, [str(a) for a in s.ipv6]),
    ]
    return result(host, "mx-address", *findings)


def _compare_addresses(host: str, rtype: str, found: list[str], want: list[str]) -> Finding:
    got = sorted(str(ipaddress.ip_address(a)) for a in found)
    exp = sorted(want)
    shown, expected = ", ".join(got) or "none", ", ".join(exp) or "none"
    if got == exp:
        return Finding(P, f"{rtype} of {host} is as expected", shown, expected)
    if not exp:
        fix = f"remove the {rtype} of {host}, or add it to dns.ipv{4 if rtype == 'A' else 6}"
        msg = f"{host} has {rtype} {shown} but no such address is configured"
        return Finding(W, msg, shown, expected, fix)
    fix = f"set the {rtype} record of {host}. to {expected}"
    return Finding(F, f"{rtype} of {host} is {shown}", shown, expected, fix)


async def check_ptr(env: Env, host: str) -> CheckResult:
    addresses = env.settings.egress_addresses()
    findings = await asyncio.gather(*(_ptr_one(env, str(a), host) for a in addresses))
    return result(host, "ptr", *findings)


async def _ptr_one(env: Env, address: str, host: str) -> Finding:
    rev = dns.reversename.from_address(address).to_text(True)
    answer = await env.lookup.query(rev, "PTR")
    names = [r.target.to_text(True).lower() for r in answer.records]
    ask = f"ask the owner of {address} (your hosting provider) to set its PTR to {host}"
    if not names:
        return Finding(F, f"no PTR for {address}", "none", host, ask)
    confirmed = []
    for name in names:
        v4, v6 = await env.lookup.addresses(name)
        if any(ipaddress.ip_address(a) == ipaddress.ip_address(address) for a in v4 + v6):
            confirmed.append(name)
    shown = ", ".join(names)
    if not confirmed:
        msg = f"PTR of {address} is {shown}, which does not resolve back to {address}"
        return Finding(F, msg, shown, host, ask)
    if host not in confirmed:
        msg = f"PTR of {address} is {shown}, not the MX host {host}"
        return Finding(W, msg, shown, host, ask)
    return Finding(P, f"PTR of {address} is {host} and resolves back", shown, host)


# ---------------------------------------------------------------- SPF

_SPF = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)


async def check_spf(env: Env, domain: str) -> CheckResult:
    records = [t for t in await env.lookup.txt(domain) if _SPF.match(t)]
    egress = [str(a) for a in env.settings.egress_addresses()]
    want = "v=spf1 " + " ".join(f"ip{ipaddress.ip_address(a).version}:{a}" for a in egress)
    want += " -all" if egress else " mx -all"
    if not records:
        fix = f'publish `{domain}. TXT "{want}"`'
        return result(domain, "spf", Finding(F, "no SPF record", "none", want, fix))
    if len(records) > 1:
        fix = "merge them into one v=spf1 record: receivers treat two as a permanent error"
        msg = f"{len(records)} SPF records"
        return result(domain, "spf", Finding(F, msg, " | ".join(records), "one record", fix))
    record = records[0]
    findings = [_spf_all(record)]
    probe = spfeval.probe_for(egress)
    outcomes = await asyncio.to_thread(spfeval.evaluate, env.spf_ask, domain, [probe, *egress])
    findings.append(_spf_limits(record, outcomes[0]))
    findings.extend(_spf_egress(domain, record, o) for o in outcomes[1:])
    return result(domain, "spf", *findings)


def _spf_all(record: str) -> Finding:
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        fix = "end the record with -all (or ~all): +all lets anyone send as this domain"
        return Finding(W, "SPF authorises every host (+all)", record, "-all or ~all", fix)
    if "?all" in terms:
        fix = "end the record with -all (or ~all): ?all gives receivers nothing to act on"
        return Finding(W, "SPF ends in ?all (neutral)", record, "-all or ~all", fix)
    return Finding(P, "SPF record present", record)


def _spf_limits(record: str, probe: spfeval.SpfOutcome) -> Finding:
    found = f"{probe.lookups} DNS-querying terms, {probe.void_lookups} void lookups"
    expected = "at most 10 DNS-querying terms and 2 void lookups"
    if probe.result == "temperror":
        raise LookupFailed("other", record, "SPF", probe.explanation)
    if probe.result == "permerror":
        fix = (
            "flatten includes into ip4:/ip6: terms, remove includes of names without records, "
            "and break include loops"
        )
        return Finding(F, f"SPF is broken: {probe.explanation}", found, expected, fix)
    return Finding(P, "SPF stays within the lookup limits", found, expected)


def _spf_egress(domain: str, record: str, o: spfeval.SpfOutcome) -> Finding:
    net = f"ip{ipaddress.ip_address(o.address).version}:{o.address}"
    if o.result == "pass":
        return Finding(P, f"SPF passes mail from {o.address}", "pass", "pass")
    if o.result == "temperror":
        raise LookupFailed("other", domain, "SPF", o.explanation)
    fix = f"add {net} to the SPF record of {domain} before its all term"
    msg = f"SPF gives {o.result} for the egress address {o.address}"
    return Finding(F, msg, f"{o.result}: {record}", "pass", fix)


# ---------------------------------------------------------------- DKIM


async def check_dkim(
    env: Env, domain: str, declared: set[str]
) -> tuple[CheckResult, dict[str, DkimInfo]]:
    keys = env.dkim_keys.get(domain, {})
    selectors = sorted(set(keys) | declared) or list(env.settings.default_dkim_selectors)
    outcomes = await asyncio.gather(*(_dkim_one(env, domain, s, keys.get(s)) for s in selectors))
    findings = [f for f, _ in outcomes]
    infos = {info.selector: info for _, info in outcomes}
    return result(domain, "dkim", *findings), infos


async def _dkim_one(
    env: Env, domain: str, selector: str, key: PublicKey | None
) -> tuple[Finding, DkimInfo]:
    name = f"{selector}._domainkey.{domain}"
    records = await env.lookup.txt(name)  # the name is DKIM's alone: every TXT there counts
    source = key.source if key else None
    if not records:
        if key is None:
            fix = f"create a key (`setup config dkim selector {selector}`) and publish its TXT"
            return Finding(F, f"no DKIM key for {selector}", "none", name, fix), DkimInfo(
                selector, False, None
            )
        fix = f"publish `{name}. TXT` with the value in {key.source}"
        msg = f"DKIM selector {selector} is not published"
        return Finding(F, msg, "none", f"p=...{key.p[-16:]}", fix), DkimInfo(
            selector, False, False, key_source=source
        )
    if len(records) > 1:
        fix = f"keep exactly one TXT at {name}: receivers cannot tell which key is meant"
        msg = f"{len(records)} TXT records at {name}"
        finding = Finding(F, msg, " | ".join(r[:40] for r in records), "one record", fix)
        return finding, DkimInfo(selector, True, None, key_source=source)
    return _dkim_compare(env, name, records[0], selector, key)


def _dkim_compare(
    env: Env, name: str, record: str, selector: str, key: PublicKey | None
) -> tuple[Finding, DkimInfo]:
    """One published DKIM record against the key DMS holds (if any)."""
    source = key.source if key else None
    published = key_data(record)
    bits = None
    try:
        if published == "":
            raise ValueError("revoked (empty p=)")
        bits = dkimkeys.key_bits(record)
    except ValueError as exc:
        info = DkimInfo(selector, True, False if key else None, key_source=source)
        msg = f"DKIM key {selector} is {exc}" if published == "" else f"{name}: {exc}"
        return Finding(F, msg, record[:80], "v=DKIM1; k=rsa; p=<key>", _dkim_fix(name, key)), info
    matches = None if key is None else published == key.p
    info = DkimInfo(selector, True, matches, bits, source)
    shown = f"{bits}-bit key p=...{(published or '')[-16:]}"
    expected = f"p=...{key.p[-16:]}" if key else "a key in DMS's config folder"
    if matches is False:
        msg = f"DKIM key {selector} in DNS is not the key DMS signs with"
        return Finding(F, msg, shown, expected, _dkim_fix(name, key)), info
    minimum = env.settings.min_dkim_bits
    if dkimkeys.key_type(record) == "rsa" and bits is not None and bits < minimum:
        fix = f"make a {minimum}-bit key (`setup config dkim keysize {minimum}`) and publish it"
        msg = f"DKIM key {selector} has only {bits} bits"
        return Finding(W, msg, shown, f"{minimum} bits", fix), info
    if matches is None:
        fix = "check dms.configDir: the agent found no public key file for this selector"
        msg = f"DKIM {selector} published; DMS holds no key to compare"
        return Finding(W, msg, shown, expected, fix), info
    return Finding(P, f"DKIM {selector} matches DMS's key", shown, expected), info


def _dkim_fix(name: str, key: PublicKey | None) -> str:
    if key is not None:
        return f"replace the TXT at {name} with the value in {key.source}"
    return f"publish at {name} the public key DMS signs with (`setup config dkim` makes one)"


# ---------------------------------------------------------------- DMARC


async def check_dmarc(env: Env, domain: str) -> CheckResult:
    name = f"_dmarc.{domain}"
    records = [t for t in await env.lookup.txt(name) if t.lower().startswith("v=dmarc1")]
    want = f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"
    if not records:
        fix = f'publish `{name}. TXT "{want}"`'
        return result(domain, "dmarc", Finding(F, "no DMARC record", "none", want, fix))
    if len(records) > 1:
        fix = f"keep exactly one v=DMARC1 TXT at {name}: receivers ignore all of them"
        msg = f"{len(records)} DMARC records"
        return result(domain, "dmarc", Finding(F, msg, " | ".join(records), "one", fix))
    record = records[0]
    try:
        tags = dkimkeys.tags(record)
    except ValueError as exc:
        fix = f'replace it with "{want}"'
        return result(
            domain, "dmarc", Finding(F, f"DMARC does not parse: {exc}", record, want, fix)
        )
    findings = [_dmarc_policy(domain, record, tags.get("p", "").lower(), want)]
    uris = [u.strip() for u in tags.get("rua", "").split(",") if u.strip()]
    findings.extend(await asyncio.gather(*(_dmarc_rua(env, domain, u) for u in uris)))
    return result(domain, "dmarc", *findings)


def _dmarc_policy(domain: str, record: str, policy: str, want: str) -> Finding:
    if policy not in ("none", "quarantine", "reject"):
        msg = f"DMARC policy p={policy or '(missing)'} is invalid"
        return Finding(F, msg, record, "p=quarantine or p=reject", f'use "{want}"')
    if policy == "none":
        fix = "once reports look clean, raise the policy to p=quarantine, then p=reject"
        return Finding(W, "DMARC p=none: spoofed mail is still delivered", record, want, fix)
    return Finding(P, f"DMARC p={policy}", record)


async def _dmarc_rua(env: Env, domain: str, uri: str) -> Finding:
    if not uri.lower().startswith("mailto:"):
        return Finding(W, f"rua {uri} is not a mailto: URI", uri, "mailto:...", "use mailto:")
    target = uri[7:].split("!")[0].rpartition("@")[2].lower().rstrip(".")
    if not target or target == domain or target.endswith("." + domain):
        return Finding(P, f"reports go to {target or uri}", uri)
    if domain.endswith("." + target):
        return Finding(P, f"reports go to the parent domain {target}", uri)
    name = f"{domain}._report._dmarc.{target}"
    ok = any(t.lower().startswith("v=dmarc1") for t in await env.lookup.txt(name))
    if ok:
        return Finding(P, f"{target} accepts DMARC reports for {domain}", uri, name)
    fix = f'ask the owner of {target} to publish `{name}. TXT "v=DMARC1"`'
    msg = f"{target} has not authorised reports for {domain}; they will be dropped"
    return Finding(W, msg, "none", name, fix)


# ---------------------------------------------------------------- MTA-STS, TLS-RPT

_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


async def check_mta_sts(env: Env, domain: str) -> CheckResult:
    name = f"_mta-sts.{domain}"
    records = [t for t in await env.lookup.txt(name) if t.startswith("v=STSv1")]
    example = f'`{name}. TXT "v=STSv1; id=20260101"` and a policy at mta-sts.{domain}'
    if not records:
        msg = "MTA-STS not published (optional: senders may deliver without TLS)"
        return result(domain, "mta-sts", Finding(W, msg, "none", "v=STSv1; id=...", example))
    if len(records) > 1:
        fix = f"keep exactly one v=STSv1 TXT at {name}"
        msg = f"{len(records)} MTA-STS records"
        return result(domain, "mta-sts", Finding(F, msg, " | ".join(records), "one", fix))
    try:
        sts_id = dkimkeys.tags(records[0]).get("id", "")
    except ValueError:
        sts_id = ""
    if not _STS_ID.match(sts_id):
        fix = "set id= to 1-32 letters or digits and change it with every policy change"
        msg = "MTA-STS record has no valid id="
        return result(domain, "mta-sts", Finding(F, msg, records[0], "v=STSv1; id=...", fix))
    if env.http_problem is not None:
        fix = "point dns.mtaSts.caBundle at a readable PEM file, or remove it"
        msg = f"cannot fetch the policy: {env.http_problem}"
        return result(domain, "mta-sts", Finding(E, msg, records[0], "", fix))
    return result(domain, "mta-sts", await _mta_sts_policy(env, domain))


async def _mta_sts_policy(env: Env, domain: str) -> Finding:
    if env.http is None:
        raise RuntimeError("no HTTP session")  # the runner always opens one
    s = env.settings.mta_sts
    serve = f"serve the policy over HTTPS at https://mta-sts.{domain}/.well-known/mta-sts.txt"
    if s.connect_to is None:
        v4, v6 = await env.lookup.addresses(f"mta-sts.{domain}")
        if not v4 + v6:
            fix = f"publish an A/AAAA record for mta-sts.{domain} (a web server for the policy)"
            msg = f"mta-sts.{domain} has no address: the policy cannot be fetched"
            return Finding(F, msg, "none", f"A/AAAA of mta-sts.{domain}", fix)
    try:
        policy = await fetch_policy(env.http, domain, s.port, s.timeout)
    except PolicyError as exc:
        status = E if exc.temporary else F
        return Finding(status, f"MTA-STS policy: {exc}", "", "a valid STSv1 policy", serve)
    mx_answer = await env.lookup.query(domain, "MX")
    hosts = {exchange(r) for r in mx_answer.records} - {""}
    if env.settings.mx_host:
        hosts.add(env.settings.mx_host)
    shown = f"mode: {policy.mode}; mx: {', '.join(policy.mx) or 'none'}"
    uncovered = sorted(h for h in hosts if not policy.covers(h))
    if policy.mode != "none" and uncovered:
        fix = f"add `mx: {uncovered[0]}` to the policy and change the id in _mta-sts.{domain}"
        msg = f"MTA-STS policy does not cover {', '.join(uncovered)}: delivery will be refused"
        return Finding(F, msg, shown, ", ".join(sorted(hosts)), fix)
    if policy.mode == "none":
        fix = "set mode: testing, then mode: enforce"
        return Finding(W, "MTA-STS mode is none (policy withdrawn)", shown, "enforce", fix)
    return Finding(P, f"MTA-STS policy in {policy.mode} mode covers every MX", shown)


async def check_tls_rpt(env: Env, domain: str) -> CheckResult:
    name = f"_smtp._tls.{domain}"
    records = [t for t in await env.lookup.txt(name) if t.startswith("v=TLSRPTv1")]
    want = f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"
    if not records:
        fix = f'publish `{name}. TXT "{want}"` to hear about TLS failures'
        msg = "TLS-RPT not published (optional)"
        return result(domain, "tls-rpt", Finding(W, msg, "none", want, fix))
    if len(records) > 1:
        fix = f"keep exactly one v=TLSRPTv1 TXT at {name}"
        msg = f"{len(records)} TLS-RPT records"
        return result(domain, "tls-rpt", Finding(F, msg, " | ".join(records), "one", fix))
    try:
        rua = dkimkeys.tags(records[0]).get("rua", "")
    except ValueError:
        rua = ""
    uris = [u.strip() for u in rua.split(",") if u.strip()]
    if not uris or not all(u.startswith(("mailto:", "https:")) for u in uris):
        fix = f'use "{want}"'
        msg = "TLS-RPT needs rua= with mailto: or https: URIs"
        return result(domain, "tls-rpt", Finding(F, msg, records[0], want, fix))
    return result(domain, "tls-rpt", Finding(P, "TLS-RPT record valid", records[0]))


# ---------------------------------------------------------------- TLSA (DANE)


async def check_tlsa(env: Env, host: str) -> CheckResult:
    name = f"_25._tcp.{host}"
    answer = await env.lookup.query(name, "TLSA")
    records = [tlsa.Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in answer.records]
    if not records:
        return result(host, "tlsa", Finding(P, "no TLSA record (DANE not in use)", "none"))
    shown = " | ".join(str(r) for r in records)
    v4, v6 = await env.lookup.addresses(host)
    if not v4 + v6:
        raise LookupFailed("other", host, "A", "the MX host has no address")
    try:
        cert = await tlsa.served_certificate((v4 + v6)[0], env.settings.smtp_port, host)
    except tlsa.SmtpTlsError as exc:
        msg = f"cannot read the certificate served on port 25: {exc}"
        return result(host, "tlsa", Finding(E, msg, shown, "", "check that SMTP answers"))
    want = tlsa.suggested(cert)
    end_entity = [r for r in records if r.usage in (1, 3)]
    if any(tlsa.matches(r, cert) for r in end_entity):
        return result(host, "tlsa", Finding(P, "TLSA matches the served certificate", shown))
    if not end_entity:
        msg = "only CA (usage 0/2) TLSA records: not verifiable from here"
        return result(host, "tlsa", Finding(W, msg, shown, want, f"consider `{name}. TLSA {want}`"))
    fix = f"publish `{name}. TLSA {want}` (and remove the stale records)"
    msg = "TLSA does not match the served certificate: DANE senders will not deliver"
    return result(host, "tlsa", Finding(F, msg, shown, want, fix))
