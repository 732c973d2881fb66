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

import dns.reversename

from agent.dns import dkimkeys, spfeval, tlsa
from agent.dns.dkimkeys import PublicKey, key_data
from agent.dns.model import CheckResult, DkimInfo, Finding, Status
from agent.dns.mtasts import PolicyError, PolicyFetcher
from agent.dns.resolver import Lookup, LookupFailed
from agent.dns.runsettings import RunSettings

log = logging.getLogger("dms_agent.dns")

P, W, F, E = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR


@dataclass(slots=True)
class Env:
    """What every check of one run shares."""

    settings: RunSettings
    lookup: Lookup
    spf_ask: spfeval.Ask  # pyspf's lookups, answered by ``lookup`` on the event loop
    http: PolicyFetcher | None = None
    http_problem: str | None = None  # why policies cannot be fetched (a bad CA bundle)
    dkim_keys: dict[str, dict[str, PublicKey]] = field(default_factory=dict)


def result(domain: str, check: str, *findings: Finding) -> CheckResult:
    return CheckResult(domain, check, tuple(findings))


def txt_line(name: str, value: str) -> str:
    """A TXT record as a zone-file line (character-strings of at most 255 bytes)."""
    parts = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return f"{name}. TXT " + " ".join(f'"{part}"' for part in parts)


def spaced(*words: str) -> str:
    """Words joined by single spaces, empty ones left out (no double spaces in a record)."""
    return " ".join(w for w in words if w)


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
    ours = f"{domain}. MX 10 {want}." if want else ""
    add = f"add `{domain}. MX 10 {want or '<your mail host>'}.`"
    mxs = sorted((r.preference, exchange(r)) for r in answer.records)
    found = ", ".join(f"{p} {x or '.'}" for p, x in mxs) or "no MX record"
    publish: tuple[str, ...] = (ours,) if ours else ()
    if answer.nxdomain:
        msg = f"{domain} does not exist in DNS"
        return result(domain, "mx", Finding(F, msg, found, "", add, publish))
    if not mxs:
        if send_only:
            null = f"{domain}. MX 0 ."
            fix = f"publish a null MX: `{null}`"
            finding = Finding(W, "no MX; senders fall back to A", found, "", fix, (null,))
            return result(domain, "mx", finding)
        return result(domain, "mx", Finding(F, "no MX record", found, want or "", add, publish))
    if mxs == [(0, "")]:
        if send_only:
            return result(domain, "mx", Finding(P, "null MX: send-only domain", found))
        fix = f"replace the null MX with `{domain}. MX 10 {want or '<your mail host>'}.`"
        msg = "null MX: the domain refuses all mail"
        gone = (f"{domain}. MX 0 .",)
        return result(domain, "mx", Finding(F, msg, found, want or "", fix, publish, gone))
    if send_only or want is None:
        return result(domain, "mx", Finding(P, "MX present", found))
    others = [(p, x) for p, x in mxs if x != want]
    if others:
        names = ", ".join(x or "." for _, x in others)
        fix = f"point the MX to {want}, `{ours}`, and remove {names}"
        elsewhere = tuple(f"{domain}. MX {p} {x or ''}." for p, x in others)
        keep = () if any(x == want for _, x in mxs) else publish
        msg = f"MX points elsewhere: {names}"
        return result(domain, "mx", Finding(F, msg, found, want, fix, keep, elsewhere))
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
        withdraw = tuple(f"{host}. {rtype} {a}" for a in got)
        return Finding(W, msg, shown, expected, fix, (), withdraw)
    fix = f"set the {rtype} record of {host}. to {expected}"
    publish = tuple(f"{host}. {rtype} {a}" for a in exp if a not in got)
    withdraw = tuple(f"{host}. {rtype} {a}" for a in got if a not in exp)
    return Finding(F, f"{rtype} of {host} is {shown}", shown, expected, fix, publish, withdraw)


async def check_ptr(env: Env, host: str) -> CheckResult:
    addresses = env.settings.egress_addresses()
    findings = await asyncio.gather(*(_ptr_one(env, str(a), host) for a in addresses))
    return result(host, "ptr", *findings)


async def _ptr_one(env: Env, address: str, host: str) -> Finding:
    rev = dns.reversename.from_address(address).to_text(True)
    answer = await env.lookup.query(rev, "PTR")
    names = [r.target.to_text(True).lower() for r in answer.records]
    host_v4, host_v6 = await env.lookup.addresses(host)
    mx_address = _among(address, host_v4 + host_v6)  # the MX host sends from its own address
    confirmed = []
    for name in names:
        v4, v6 = await env.lookup.addresses(name)
        if _among(address, v4 + v6):
            confirmed.append(name)
    shown = ", ".join(names) or "none"
    if host in confirmed or (confirmed and not mx_address):
        return Finding(P, f"PTR of {address} is {shown} and resolves back", shown, host)
    fix, publish = _ptr_fix(address, host, rev, mx_address)
    withdraw = tuple(f"{rev}. PTR {n}." for n in names)
    expected = publish[-1].rsplit(" ", 1)[1].rstrip(".")
    if not names:
        return Finding(F, f"no PTR for {address}", shown, expected, fix, publish)
    if not confirmed:
        msg = f"PTR of {address} is {shown}, which does not resolve back to {address}"
        return Finding(F, msg, shown, expected, fix, publish, withdraw)
    msg = f"PTR of {address} is {shown}, not the MX host {host}"
    return Finding(W, msg, shown, host, fix, publish, withdraw)


def _among(address: str, addresses: list[str]) -> bool:
    want = ipaddress.ip_address(address)
    return any(ipaddress.ip_address(a) == want for a in addresses)


def _ptr_fix(address: str, host: str, rev: str, mx_address: bool) -> tuple[str, tuple[str, ...]]:
    """The advice and its records: a PTR name that resolves back to ``address``. The MX
    host when it has that address; else a name of its own beside the MX host (giving the MX
    host a second address would send inbound mail there too)."""
    owner = f"ask the owner of {address} (your hosting provider)"
    if mx_address:
        return f"{owner} to set its PTR to {host}", (f"{rev}. PTR {host}.",)
    first, _, rest = host.partition(".")
    name = f"{first}-out.{rest}" if rest else f"{first}-out"
    rtype = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
    forward = f"{name}. {rtype} {address}"
    fix = f"publish `{forward}`, then {owner} to set its PTR to {name}"
    return fix, (forward, f"{rev}. PTR {name}.")


# ---------------------------------------------------------------- SPF

_SPF = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)


async def check_spf(env: Env, domain: str) -> CheckResult:
    records = [t for t in await env.lookup.txt(domain) if _SPF.match(t)]
    egress = [str(a) for a in env.settings.egress_addresses()]
    nets = [f"ip{ipaddress.ip_address(a).version}:{a}" for a in egress]
    want = spaced("v=spf1", *nets, "-all" if egress else "mx -all")
    if not records:
        fix = f'publish `{domain}. TXT "{want}"`'
        line = txt_line(domain, want)
        return result(domain, "spf", Finding(F, "no SPF record", "none", want, fix, (line,)))
    if len(records) > 1:
        merged = spfeval.merge(records)
        fix = f'merge them into one, `{domain}. TXT "{merged}"`: two are a permanent error'
        msg = f"{len(records)} SPF records"
        withdraw = tuple(txt_line(domain, r) for r in records)
        finding = Finding(
            F, msg, " | ".join(records), "one record", fix, (txt_line(domain, merged),), withdraw
        )
        return result(domain, "spf", finding)
    record = records[0]
    findings = [_spf_all(domain, record)]
    probe = spfeval.probe_for(egress)
    outcomes = await asyncio.to_thread(spfeval.evaluate, env.spf_ask, domain, [probe, *egress])
    findings.append(await _spf_limits(env, domain, record, outcomes[0]))
    findings.extend(_spf_egress(domain, record, o) for o in outcomes[1:])
    return result(domain, "spf", *findings)


def _spf_all(domain: str, record: str) -> Finding:
    terms = record.split()
    lowered = [t.lower() for t in terms]
    for bad, why in (
        ("+all", "lets anyone send as this domain"),
        ("all", "lets anyone send as this domain"),
        ("?all", "gives receivers nothing to act on"),
    ):
        if bad in lowered:
            fixed = " ".join("-all" if t.lower() == bad else t for t in terms)
            fix = f'end the record with -all (or ~all), `{domain}. TXT "{fixed}"`: {bad} {why}'
            msg = (
                "SPF ends in ?all (neutral)"
                if bad == "?all"
                else "SPF authorises every host (+all)"
            )
            change = (txt_line(domain, fixed),), (txt_line(domain, record),)
            return Finding(W, msg, record, "-all or ~all", fix, *change)
    return Finding(P, "SPF record present", record)


async def _spf_limits(env: Env, domain: str, record: str, probe: spfeval.SpfOutcome) -> Finding:
    found = f"{probe.lookups} DNS-querying terms, {probe.void_lookups} void lookups"
    expected = "at most 10 DNS-querying terms and 2 void lookups"
    if probe.result == "temperror":
        raise LookupFailed("other", record, "SPF", probe.explanation)
    if probe.result != "permerror":
        return Finding(P, "SPF stays within the lookup limits", found, expected)
    faults = await spfeval.faults(env.lookup, domain)
    if faults.loop:
        chain = " → ".join(faults.loop)
        owner, term = faults.loop_term
        return _spf_remove(
            F,
            f"SPF include loop: {chain}",
            found,
            expected,
            owner,
            [term],
            faults,
            "break the loop",
        )
    if faults.void:
        owner = faults.void[0][0]
        terms = [t for o, t in faults.void if o == owner]
        msg = f"SPF is broken: {probe.explanation}; terms that find nothing: {' '.join(terms)}"
        return _spf_remove(F, msg, found, expected, owner, terms, faults, "they find nothing")
    msg = f"SPF is broken: {probe.explanation}"
    flat = spfeval.flatten(faults, domain.lower())
    if flat is None:
        fix = (
            "replace DNS-querying terms (include:, a, mx, exists:) by the ip4:/ip6: terms "
            "they stand for: at most 10 terms may query DNS"
        )
        return Finding(F, msg, found, expected, fix)
    fix = f'flatten includes into their ip4:/ip6: terms, `{domain}. TXT "{flat}"`'
    return Finding(
        F, msg, found, expected, fix, (txt_line(domain, flat),), (txt_line(domain, record),)
    )


def _spf_remove(
    status: Status,
    msg: str,
    found: str,
    expected: str,
    owner: str,
    terms: list[str],
    faults: spfeval.Faults,
    why: str,
) -> Finding:
    old = faults.records[owner]
    new = " ".join(t for t in old.split() if t not in terms)
    fix = f'remove {" ".join(terms)} from the SPF record of {owner} ({why}): `{owner}. TXT "{new}"`'
    return Finding(
        status, msg, found, expected, fix, (txt_line(owner, new),), (txt_line(owner, old),)
    )


def _spf_egress(domain: str, record: str, o: spfeval.SpfOutcome) -> Finding:
    net = f"ip{ipaddress.ip_address(o.address).version}:{o.address}"
    if o.result == "pass":
        return Finding(P, f"SPF passes mail from {o.address}", "pass", "pass")
    if o.result == "temperror":
        raise LookupFailed("other", domain, "SPF", o.explanation)
    fixed = spfeval.with_term(record, net)
    fix = f'add {net} to the SPF record of {domain} before its all term: `{domain}. TXT "{fixed}"`'
    msg = f"SPF gives {o.result} for the egress address {o.address}"
    change = (txt_line(domain, fixed),), (txt_line(domain, record),)
    return Finding(F, msg, f"{o.result}: {record}", "pass", fix, *change)


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
            fix = f"{_dkim_setup(name)} and publish its TXT at {name}"
            return Finding(F, f"no DKIM key for {selector}", "none", name, fix), DkimInfo(
                selector, False, None
            )
        fix = f"publish `{name}. TXT` with the value in {key.source}"
        msg = f"DKIM selector {selector} is not published"
        pub = (txt_line(name, key.record),)
        return Finding(F, msg, "none", f"p=...{key.p[-16:]}", fix, pub), DkimInfo(
            selector, False, False, key_source=source
        )
    if len(records) > 1:
        msg = f"{len(records)} TXT records at {name}"
        fix, publish, withdraw = _dkim_one_record(name, records, key)
        shown = " | ".join(r[:40] for r in records)
        finding = Finding(F, msg, shown, "one record", fix, publish, withdraw)
        return finding, DkimInfo(selector, True, None, key_source=source)
    return _dkim_compare(env, name, records[0], selector, key)


def _dkim_one_record(
    name: str, records: list[str], key: PublicKey | None
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Advice for several TXT records at one selector: keep DMS's key, if DMS holds one."""
    why = "receivers cannot tell which key is meant"
    if key is None:
        return f"keep exactly one TXT at {name}: {why}", (), ()
    ours = [r for r in records if key_data(r) == key.p]
    withdraw = tuple(txt_line(name, r) for r in records if r not in ours[:1])
    publish = () if ours else (txt_line(name, key.record),)
    return f"keep only the TXT at {name} with the value in {key.source}: {why}", publish, withdraw


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
        change = ((txt_line(name, key.record),), (txt_line(name, record),)) if key else ((), ())
        expected = "v=DKIM1; k=rsa; p=<key>"
        return Finding(F, msg, record[:80], expected, _dkim_fix(name, key), *change), info
    matches = None if key is None else published == key.p
    info = DkimInfo(selector, True, matches, bits, source)
    shown = f"{bits}-bit key p=...{(published or '')[-16:]}"
    expected = f"p=...{key.p[-16:]}" if key else "a key in DMS's config folder"
    if matches is False and key is not None:
        msg = f"DKIM key {selector} in DNS is not the key DMS signs with"
        change = (txt_line(name, key.record),), (txt_line(name, record),)
        return Finding(F, msg, shown, expected, _dkim_fix(name, key), *change), info
    minimum = env.settings.min_dkim_bits
    if dkimkeys.key_type(record) == "rsa" and bits is not None and bits < minimum:
        msg = f"DKIM key {selector} has only {bits} bits"
        return Finding(W, msg, shown, f"{minimum} bits", _dkim_new_selector(name, minimum)), info
    if matches is None:
        fix = "check dms.configDir: the agent found no public key file for this selector"
        msg = f"DKIM {selector} published; DMS holds no key to compare"
        return Finding(W, msg, shown, expected, fix), info
    return Finding(P, f"DKIM {selector} matches DMS's key", shown, expected), info


def _dkim_new_selector(name: str, bits: int) -> str:
    """DMS never replaces an existing key (``config dkim`` skips or refuses it): a stronger
    key needs a new selector."""
    selector, _, domain = name.partition("._domainkey.")
    new = f"{selector}{bits}" if not selector.endswith(str(bits)) else f"{selector}-new"
    return (
        f"make a key under a new selector, `setup config dkim keysize {bits} selector {new} "
        f"domain {domain}`, publish its TXT at {new}._domainkey.{domain}, then remove "
        f"selector {selector}'s key files from DMS's config folder (its TXT a day later)"
    )


def _dkim_fix(name: str, key: PublicKey | None) -> str:
    if key is not None:
        return f"replace the TXT at {name} with the value in {key.source}"
    return f"{_dkim_setup(name)} and publish its TXT at {name} in place of this one"


def _dkim_setup(name: str) -> str:
    selector, _, domain = name.partition("._domainkey.")
    return f"make a key, `setup config dkim selector {selector} domain {domain}`,"


# ---------------------------------------------------------------- DMARC


async def check_dmarc(env: Env, domain: str) -> CheckResult:
    name = f"_dmarc.{domain}"
    records = [t for t in await env.lookup.txt(name) if t.lower().startswith("v=dmarc1")]
    want = f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"
    if not records:
        fix = f'publish `{name}. TXT "{want}"`'
        finding = Finding(F, "no DMARC record", "none", want, fix, (txt_line(name, want),))
        return result(domain, "dmarc", finding)
    if len(records) > 1:
        keep = max(records, key=_dmarc_strength)
        fix = f'keep one v=DMARC1 TXT at {name}, "{keep}": receivers ignore them all'
        msg = f"{len(records)} DMARC records"
        drop = tuple(txt_line(name, r) for r in records if r != keep)
        finding = Finding(F, msg, " | ".join(records), "one", fix, (), drop)
        return result(domain, "dmarc", finding)
    record = records[0]
    try:
        tags = dkimkeys.tags(record)
    except ValueError as exc:
        fix = f'replace it with `{name}. TXT "{want}"`'
        change = (txt_line(name, want),), (txt_line(name, record),)
        finding = Finding(F, f"DMARC does not parse: {exc}", record, want, fix, *change)
        return result(domain, "dmarc", finding)
    findings = [_dmarc_policy(name, record, tags.get("p", "").lower(), want)]
    uris = [u.strip() for u in tags.get("rua", "").split(",") if u.strip()]
    findings.extend(await asyncio.gather(*(_dmarc_rua(env, domain, record, u) for u in uris)))
    return result(domain, "dmarc", *findings)


def _dmarc_strength(record: str) -> int:
    try:
        policy = dkimkeys.tags(record).get("p", "").strip().lower()
    except ValueError:
        return -1
    return (
        ("none", "quarantine", "reject").index(policy)
        if policy in ("none", "quarantine", "reject")
        else -1
    )


def _dmarc_policy(name: str, record: str, policy: str, want: str) -> Finding:
    old = (txt_line(name, record),)
    if policy not in ("none", "quarantine", "reject"):
        msg = f"DMARC policy p={policy or '(missing)'} is invalid"
        fix = f'use `{name}. TXT "{want}"`'
        return Finding(
            F, msg, record, "p=quarantine or p=reject", fix, (txt_line(name, want),), old
        )
    if policy == "none":
        raised = re.sub(r"(?i)\bp\s*=\s*none", "p=quarantine", record, count=1)
        fix = f'once reports look clean, raise the policy, `{name}. TXT "{raised}"`, later p=reject'
        msg = "DMARC p=none: spoofed mail is still delivered"
        return Finding(W, msg, record, want, fix, (txt_line(name, raised),), old)
    return Finding(P, f"DMARC p={policy}", record)


async def _dmarc_rua(env: Env, domain: str, record: str, uri: str) -> Finding:
    if not uri.lower().startswith("mailto:"):
        name, mailto = f"_dmarc.{domain}", f"mailto:postmaster@{domain}"
        fixed = record.replace(uri, mailto, 1)
        fix = f'report to a mailto: URI, `{name}. TXT "{fixed}"`: receivers send reports by mail'
        change = (txt_line(name, fixed),), (txt_line(name, record),)
        return Finding(W, f"rua {uri} is not a mailto: URI", uri, mailto, fix, *change)
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
    return Finding(W, msg, "none", name, fix, (txt_line(name, "v=DMARC1"),))


# ---------------------------------------------------------------- MTA-STS, TLS-RPT

_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


async def check_mta_sts(env: Env, domain: str) -> CheckResult:
    name = f"_mta-sts.{domain}"
    records = [t for t in await env.lookup.txt(name) if t.startswith("v=STSv1")]
    example = f'`{name}. TXT "v=STSv1; id=20260101"` and a policy at mta-sts.{domain}'
    mxs = [exchange(r) for r in (await env.lookup.query(domain, "MX")).records]
    if not [x for x in mxs if x]:  # no MX, or a null MX: no mail comes in to protect
        why = "null MX" if mxs else "the domain has no MX"
        msg = f"MTA-STS does not apply: {why} (see the MX check)"
        return result(domain, "mta-sts", Finding(P, msg, " | ".join(records) or "none"))
    if not records:
        msg = "MTA-STS not published (optional: senders may deliver without TLS)"
        return result(domain, "mta-sts", Finding(W, msg, "none", "v=STSv1; id=...", example))
    if len(records) > 1:
        fix = f"keep exactly one v=STSv1 TXT at {name}, {records[0]!r}"
        msg = f"{len(records)} MTA-STS records"
        drop = tuple(txt_line(name, r) for r in records[1:])
        finding = Finding(F, msg, " | ".join(records), "one", fix, (), drop)
        return result(domain, "mta-sts", finding)
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
        raise RuntimeError("no policy fetcher")  # the runner always makes one
    s = env.settings.mta_sts
    serve = f"serve the policy over HTTPS at https://mta-sts.{domain}/.well-known/mta-sts.txt"
    if s.connect_to is None:
        v4, v6 = await env.lookup.addresses(f"mta-sts.{domain}")
        if not v4 + v6:
            fix = f"publish an A/AAAA record for mta-sts.{domain} (a web server for the policy)"
            msg = f"mta-sts.{domain} has no address: the policy cannot be fetched"
            return Finding(F, msg, "none", f"A/AAAA of mta-sts.{domain}", fix)
    try:
        policy = await env.http.fetch(domain, s.port, s.timeout)
    except PolicyError as exc:
        status = E if exc.temporary else F
        if str(exc).startswith("certificate of"):  # the fix is the certificate, not the file
            serve = (
                f"serve mta-sts.{domain} with a certificate valid for that name from a CA "
                "senders trust (ACME: Let's Encrypt); a self-signed one counts as no policy"
            )
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
    publish = (txt_line(name, want),)
    if not records:
        fix = f'publish `{name}. TXT "{want}"` to hear about TLS failures'
        msg = f"TLS-RPT not published at {name} (optional)"
        return result(domain, "tls-rpt", Finding(W, msg, "none", want, fix, publish))
    if len(records) > 1:
        fix = f"keep exactly one v=TLSRPTv1 TXT at {name}, {records[0]!r}"
        msg = f"{len(records)} TLS-RPT records at {name}"
        drop = tuple(txt_line(name, r) for r in records[1:])
        finding = Finding(F, msg, " | ".join(records), "one", fix, (), drop)
        return result(domain, "tls-rpt", finding)
    try:
        rua = dkimkeys.tags(records[0]).get("rua", "")
    except ValueError:
        rua = ""
    uris = [u.strip() for u in rua.split(",") if u.strip()]
    if not uris or not all(u.startswith(("mailto:", "https:")) for u in uris):
        fix = f'replace it with `{name}. TXT "{want}"`'
        msg = f"TLS-RPT at {name} needs rua= with mailto: or https: URIs"
        old = (txt_line(name, records[0]),)
        return result(domain, "tls-rpt", Finding(F, msg, records[0], want, fix, publish, old))
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
        record = f"{name}. TLSA {want}"
        fix = f"add a record for the served certificate itself, `{record}`"
        return result(host, "tlsa", Finding(W, msg, shown, want, fix, (record,)))
    fix = f"publish `{name}. TLSA {want}` (and remove the stale records)"
    msg = "TLSA does not match the served certificate: DANE senders will not deliver"
    stale = tuple(f"{name}. TLSA {r}" for r in records if r.usage in (1, 3))
    return result(host, "tlsa", Finding(F, msg, shown, want, fix, (f"{name}. TLSA {want}",), stale))
