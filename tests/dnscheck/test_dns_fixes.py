"""The advice fixes the problem: each fix a check gives as DNS records (``publish`` /
``withdraw``, the same records its text names) is applied to the zones of a fresh knotd, and
the check run again passes. The DKIM key fix, a `setup config dkim` line, is carried out as
DMS would (opendkim-genkey) before its record is published."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from agent.dns import runner
from agent.dns.model import DomainReport, Finding, Status
from tests.dnscheck import world
from tests.dnscheck.conftest import World
from tests.rig.knot import KnotServer
from tests.rig.proc import require_binary

Zones = dict[str, str | None]


def _records(lines: tuple[str, ...]) -> list[tuple[dns.name.Name, object]]:
    text = "$TTL 300\n" + "\n".join(lines)
    parsed = dns.zone.from_text(text, origin=".", relativize=False, check_origin=False)
    return [(name, rdata) for name, _ttl, rdata in parsed.iterate_rdatas()]


def _same(a: object, b: object) -> bool:
    if getattr(a, "rdtype", None) == dns.rdatatype.TXT == getattr(b, "rdtype", None):
        return b"".join(a.strings) == b"".join(b.strings)  # type: ignore[attr-defined]
    return a == b


class ZoneSet:
    """The world's zone texts; a zone is parsed (dnspython) only when a fix touches it."""

    def __init__(self, zones: Zones) -> None:
        self.texts = dict(zones)
        self.parsed: dict[str, dns.zone.Zone] = {}

    def zone(self, name: dns.name.Name) -> dns.zone.Zone:
        owners = [
            z for z, t in self.texts.items() if t and name.is_subdomain(dns.name.from_text(z))
        ]
        origin = max(owners, key=len)
        if origin not in self.parsed:
            text = "$TTL 300\n" + str(self.texts[origin])
            self.parsed[origin] = dns.zone.from_text(
                text, origin=origin, relativize=False, check_origin=False
            )
        return self.parsed[origin]

    def render(self) -> Zones:
        out = dict(self.texts)
        for z, zone in self.parsed.items():
            rows = [
                f"{n} 300 IN {r.rdtype.name} {r.to_text()}" for n, _t, r in zone.iterate_rdatas()
            ]
            out[z] = "\n".join(rows) + "\n"
        return out


def apply(zones: Zones, fixes: list[Finding]) -> Zones:
    """``zones`` with every fix's records withdrawn and published."""
    world_set = ZoneSet(zones)
    for fix in fixes:
        for name, rdata in _records(fix.withdraw):
            node = world_set.zone(name).get_node(name)
            rdtype = rdata.rdtype  # type: ignore[attr-defined]
            rds = node.get_rdataset(dns.rdataclass.IN, rdtype) if node else None
            assert rds is not None, f"{fix.fix}: nothing at {name} to withdraw"
            gone = [r for r in rds if _same(r, rdata)]
            assert gone, f"{fix.fix}: {name} {rdata} not in the zone"
            for r in gone:
                rds.remove(r)
        for name, rdata in _records(fix.publish):
            zone = world_set.zone(name)
            rds = zone.find_rdataset(name, rdata.rdtype, create=True)  # type: ignore[attr-defined]
            rds.add(rdata, 300)
    return world_set.render()


def world_zones(w: World) -> Zones:
    return world.zones(w.keys, world.cert_der(w.ca))


async def _rerun(
    w: World, knot: KnotServer, domains: list[str], **settings: object
) -> dict[str, DomainReport]:
    s = w.settings(nameservers=[knot.nameserver], **settings)
    return await runner.run(s, runner.plan_from(s, None, domains), w.config_dir)


async def test_every_record_fix_makes_its_check_pass(
    dns_world: World,
    reports: dict[str, DomainReport],
    knot_factory: Callable[[Zones], KnotServer],
) -> None:
    broken = {
        (d, c): r.headline
        for d, rep in reports.items()
        for c, r in rep.results.items()
        if r.status in (Status.FAIL, Status.WARN) and (r.headline.publish or r.headline.withdraw)
    }
    # the cases the advice must cover, among others
    for case in [
        ("nomx.test", "mx"),
        ("mxelse.test", "mx"),
        ("nullmx.test", "mx"),
        ("twospf.test", "spf"),
        ("spfvoid.test", "spf"),
        ("spfloop.test", "spf"),
        ("spfmiss.test", "spf"),
        ("dkimbad.test", "dkim"),
        ("dmarcnone.test", "dmarc"),
        ("nodmarc.test", "dmarc"),
        ("twodmarc.test", "dmarc"),
        ("spf11.test", "spf"),
        ("tlsrptbad.test", "tls-rpt"),
    ]:
        assert case in broken, f"{case}: no record fix ({reports[case[0]].results[case[1]]})"
    for fix in broken.values():  # the text names what the records say
        for line in fix.publish:
            assert line in fix.fix or " TXT " in line, (line, fix.fix)
    knot = knot_factory(apply(world_zones(dns_world), list(broken.values())))
    domains = sorted({d for d, _ in broken} - {world.MX})
    after = await _rerun(dns_world, knot, domains)
    still = {
        f"{d}/{c}": after[d].results[c].as_dict()
        for d, c in broken
        if after[d].results[c].status != Status.PASS
    }
    assert not still, still


async def test_no_double_spaces_in_any_advice(reports: dict[str, DomainReport]) -> None:
    for rep in reports.values():
        for res in rep.results.values():
            for f in res.findings:
                for text in (f.fix, f.expected, *f.publish, *f.withdraw):
                    assert "  " not in text, (rep.domain, res.check, text)


async def test_no_egress_spf_advice_has_single_spaces(dns_world: World) -> None:
    settings = dns_world.settings(ipv4=[], ipv6=[], egress=[])
    plan = runner.plan_from(settings, None, ["elsewhere.test"])
    reports = await runner.run(settings, plan, None)
    fix = reports["elsewhere.test"].results["spf"].headline
    assert fix.expected == "v=spf1 mx -all" and "  " not in fix.fix


async def test_ptr_advice_resolves_back(
    dns_world: World, knot_factory: Callable[[Zones], KnotServer]
) -> None:
    """Egress 192.0.2.26 is not the MX host's address: the advice is a name of its own that
    resolves back (pointing the PTR at the MX host would fail again)."""
    egress = {"egress": ["192.0.2.26"]}
    first = await runner.run(dns_world.settings(**egress), runner.Plan([]), None)
    head = first[world.MX].results["ptr"].headline
    assert head.status == Status.FAIL and head.expected == "mail-out.hosting.test"
    assert "publish `mail-out.hosting.test. A 192.0.2.26`" in head.fix
    knot = knot_factory(apply(world_zones(dns_world), [head]))
    after = await _rerun(dns_world, knot, [], **egress)
    assert after[world.MX].results["ptr"].status == Status.PASS, after[world.MX].as_dict()


SETUP = re.compile(r"`setup config dkim ([^`]*)`")


def carry_out(fix: str, config: Path, zones: Zones) -> str:
    """Do what a `setup config dkim` fix says, as DMS (OpenDKIM) and the operator would: a
    new key, its TXT published in place of what the selector had, and (a new selector) the
    old selector's key files removed. The new selector's name."""
    line = SETUP.search(fix)
    assert line is not None, fix
    options = dict(zip(*[iter(line.group(1).split())] * 2, strict=True))
    domain, selector = options["domain"], options["selector"]
    keydir = config / "opendkim" / "keys" / domain
    keydir.mkdir(parents=True, exist_ok=True)
    genkey = require_binary("opendkim-genkey", "opendkim-tools")
    bits = options.get("keysize", "2048")
    world.run([genkey, "-b", bits, "-d", domain, "-s", selector, "-D", str(keydir)])
    retired = re.search(r"remove selector (\S+)'s key files", fix)
    if retired:
        for old in config.rglob(f"*{retired.group(1)}*{domain}*"):
            old.unlink()
    kept = [
        row
        for row in str(zones[domain]).splitlines()
        if not row.startswith(f"{selector}._domainkey")
    ]
    zones[domain] = "\n".join([*kept, (keydir / f"{selector}.txt").read_text()]) + "\n"
    return selector


async def test_every_setup_line_fix_makes_the_dkim_check_pass(
    dns_world: World,
    reports: dict[str, DomainReport],
    knot_factory: Callable[[Zones], KnotServer],
    tmp_path: Path,
) -> None:
    """Weak key (a new selector: DMS never replaces a key), no key, a revoked key."""
    fixes = {
        d: rep.results["dkim"].headline.fix
        for d, rep in reports.items()
        if "dkim" in rep.results and SETUP.search(rep.results["dkim"].headline.fix)
    }
    assert {"dkim1024.test", "dkimrevoked.test", "nomx.test"} <= set(fixes)
    weak = SETUP.search(fixes["dkim1024.test"])
    assert weak is not None
    assert weak.group(1) == "keysize 2048 selector mail2048 domain dkim1024.test"
    config = tmp_path / "dms"
    shutil.copytree(dns_world.config_dir, config)
    zones = world_zones(dns_world)
    selectors = {d: carry_out(fix, config, zones) for d, fix in fixes.items()}
    knot = knot_factory(zones)
    s = dns_world.settings(nameservers=[knot.nameserver])
    after = await runner.run(s, runner.plan_from(s, None, sorted(fixes)), config)
    still = {d: after[d].results["dkim"].as_dict() for d in fixes}
    assert all(r["status"] == "pass" for r in still.values()), still
    assert selectors["dkim1024.test"] in after["dkim1024.test"].dkim


async def test_the_mx_hosts_own_fixes_make_its_checks_pass(
    dns_world: World, knot_factory: Callable[[Zones], KnotServer]
) -> None:
    """A wrong A record of the MX host, and a stale TLSA record (DANE)."""
    server = await world.starttls_server(dns_world.ca)
    port = server.sockets[0].getsockname()[1]
    cases = {
        "wrong-a.hosting.test": ("mx-address", {"ipv6": [], "egress": []}),
        "dane-bad.hosting.test": ("tlsa", {"ipv4": ["127.0.0.1"], "ipv6": [], "egress": []}),
    }

    async def run(knot: KnotServer | None, host: str) -> DomainReport:
        _check, extra = cases[host]
        ns = {"nameservers": [knot.nameserver]} if knot else {}
        settings = dns_world.settings(mx_host=host, **extra, **ns)
        settings = settings.model_copy(update={"smtp_port": port})
        return (await runner.run(settings, runner.Plan([]), None))[host]

    try:
        heads = {}
        for host, (check, _) in cases.items():
            res = (await run(None, host)).results[check]
            assert res.status == Status.FAIL and res.headline.publish, res.as_dict()
            heads[host] = res.headline
        knot = knot_factory(apply(world_zones(dns_world), list(heads.values())))
        after = {host: (await run(knot, host)).results[cases[host][0]] for host in cases}
    finally:
        server.close()
        await server.wait_closed()
    assert {h: r.status for h, r in after.items()} == dict.fromkeys(cases, Status.PASS), {
        h: r.as_dict() for h, r in after.items()
    }
