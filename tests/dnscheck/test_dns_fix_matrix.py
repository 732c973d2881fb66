"""Every piece of advice a check can give is carried out, and the check then passes.

Each case breaks one thing (in zones served by a real knotd, an MTA-STS policy served over
HTTPS on loopback with a test CA, DMS's key folder, or the settings), runs the checks, takes
the advice as a person would — the records the finding names (``publish`` / ``withdraw``) or,
for advice in words, what the words say — and runs the checks again against a fresh knotd.
The last assertion lists every advising ``Finding(...)`` in agent/dns/checks.py
(``fixsites``): one that no case reached fails the test, so new advice needs a case here.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.dns import runner
from agent.dns.checks import txt_line
from agent.dns.config import DnsSettings, MtaStsSettings
from agent.dns.model import CheckResult, Finding, Status
from tests.dnscheck import fixsites, world
from tests.dnscheck.conftest import World
from tests.dnscheck.test_dns_fixes import Zones, apply, carry_out, world_zones
from tests.rig.ca import TestCA
from tests.rig.knot import KnotServer

HOST_CHECKS = ("mx-address", "ptr", "tlsa")
NONE_POLICY = "version: STSv1\nmode: none\nmax_age: 86400\n"
# advice that is not about DNS records at all
EXEMPT = {"guard#1": "a failed lookup or a crashed check: nothing is known about the records"}


def fx_records(domain: str, drop: str = "", extra: str = "", spf: str | None = None) -> str:
    """``world.base_records`` without the lines containing ``drop``, plus ``extra``."""
    rows = world.base_records(domain, spf).splitlines()
    return "\n".join(r for r in rows if not drop or drop not in r) + "\n" + extra


def extra_zones(keys: world.Keys) -> dict[str, str]:
    many = " ".join(f"a:h{i}.fx-spfmany.test" for i in range(11))
    dkim_mine = world.split_txt("v=DKIM1; k=rsa; p=" + keys.bad_disk_p)
    dkim_other = world.split_txt("v=DKIM1; k=rsa; p=" + keys.other_p)
    return {
        "fx-sendnomx.test": fx_records("fx-sendnomx.test", drop=" MX "),
        "fx-nospf.test": fx_records("fx-nospf.test", drop="v=spf1"),
        "fx-spfall.test": fx_records("fx-spfall.test", spf=f'"v=spf1 ip4:{world.V4} ?all"'),
        "fx-spfmany.test": fx_records(
            "fx-spfmany.test",
            spf=world.split_txt(f"v=spf1 ip4:{world.V4} {many} -all"),
            extra="".join(f"h{i} A 198.51.100.{i}\n" for i in range(11)),
        ),
        "fx-dkimunpub.test": fx_records("fx-dkimunpub.test"),
        "fx-dkimtwo.test": fx_records(
            "fx-dkimtwo.test",
            extra=f"mail._domainkey TXT {dkim_mine}\nmail._domainkey TXT {dkim_other}\n",
        ),
        "fx-dkimjunk.test": fx_records(
            "fx-dkimjunk.test", extra='mail._domainkey TXT "v=DKIM1; k=rsa; p=notbase64!!"\n'
        ),
        "fx-dmarcjunk.test": fx_records(
            "fx-dmarcjunk.test", drop="DMARC1", extra='_dmarc TXT "v=DMARC1; p"\n'
        ),
        "fx-dmarcp.test": fx_records(
            "fx-dmarcp.test", drop="DMARC1", extra='_dmarc TXT "v=DMARC1; p=maybe"\n'
        ),
        "fx-dmarcrua.test": fx_records(
            "fx-dmarcrua.test",
            drop="DMARC1",
            extra='_dmarc TXT "v=DMARC1; p=reject; rua=https://reports.example/dmarc"\n',
        ),
        "fx-dmarcext.test": fx_records(
            "fx-dmarcext.test",
            drop="DMARC1",
            extra='_dmarc TXT "v=DMARC1; p=reject; rua=mailto:d@reports2.hosting.test"\n',
        ),
        "fx-stsnone.test": fx_records("fx-stsnone.test", drop="STSv1"),
        "fx-ststwo.test": fx_records("fx-ststwo.test", extra='_mta-sts TXT "v=STSv1; id=2"\n'),
        "fx-stsid.test": fx_records(
            "fx-stsid.test", drop="STSv1", extra='_mta-sts TXT "v=STSv1; id=not-an-id!"\n'
        ),
        "fx-stsnoaddr.test": fx_records("fx-stsnoaddr.test"),
        "fx-sts404.test": fx_records("fx-sts404.test"),
        "fx-stscert.test": fx_records("fx-stscert.test"),
        "fx-stsmx.test": fx_records("fx-stsmx.test"),
        "fx-stsmodenone.test": fx_records("fx-stsmodenone.test"),
        "fx-tlsrptnone.test": fx_records("fx-tlsrptnone.test", drop="TLSRPTv1"),
        "fx-tlsrpttwo.test": fx_records(
            "fx-tlsrpttwo.test",
            extra='_smtp._tls TXT "v=TLSRPTv1; rua=mailto:x@fx-tlsrpttwo.test"\n',
        ),
    }


HOSTING_EXTRA = (
    f"extra6 A {world.V4}\nextra6 AAAA {world.V6}\n"
    "mail3 A 192.0.2.28\nalt A 192.0.2.28\n"  # the MX host's own address, PTR to another name
    f"dane-ca A 127.0.0.1\n_25._tcp.dane-ca TLSA 2 0 1 {'cd' * 32}\n"
)
REVERSE_EXTRA = "28 PTR alt.hosting.test.\n"


@dataclass
class Fix:
    """What a person can change to follow advice: zones, served policies, DMS's config."""

    finding: Finding
    zones: Zones
    policies: dict[str, str]
    config: Path

    def edit(self, publish: tuple[str, ...] = (), withdraw: tuple[str, ...] = ()) -> None:
        self.zones = apply(
            self.zones, [Finding(Status.WARN, "", publish=publish, withdraw=withdraw)]
        )

    def sts_id(self, domain: str, new_id: str) -> None:
        """Set the _mta-sts record's id (every policy change needs a new one)."""
        name = f"_mta-sts.{domain}"
        text = str(self.zones[domain])
        rows = [r for r in text.splitlines() if not r.lower().startswith(("_mta-sts ", name))]
        self.zones[domain] = "\n".join([*rows, f'{name}. TXT "v=STSv1; id={new_id}"']) + "\n"


def quoted(fix: str) -> list[str]:
    return re.findall(r"`([^`]*)`", fix)


def _publish_quoted(fx: Fix) -> None:
    fx.edit(publish=tuple(q for q in quoted(fx.finding.fix) if " TXT " in q))


def _serve(domain: str) -> Callable[[Fix], None]:
    def act(fx: Fix) -> None:
        fx.policies[domain] = world.GOOD_POLICY
        fx.sts_id(domain, "20261204")

    return act


def _stsnone(fx: Fix) -> None:
    _publish_quoted(fx)
    fx.policies["fx-stsnone.test"] = world.GOOD_POLICY


def _stsid(fx: Fix) -> None:
    assert "id=" in fx.finding.fix
    fx.sts_id("fx-stsid.test", "20261204")


def _stsnoaddr(fx: Fix) -> None:
    assert "publish an A/AAAA record for mta-sts.fx-stsnoaddr.test" in fx.finding.fix
    fx.edit(publish=("mta-sts.fx-stsnoaddr.test. A 127.0.0.1",))


def _spfmany(fx: Fix) -> None:
    """Replace the a: terms by the ip4: terms they stand for, as the advice says."""
    assert "ip4:/ip6: terms" in fx.finding.fix
    many = " ".join(f"a:h{i}.fx-spfmany.test" for i in range(11))
    nets = " ".join(f"ip4:198.51.100.{i}" for i in range(11))
    old, new = (
        txt_line("fx-spfmany.test", f"v=spf1 ip4:{world.V4} {t} -all") for t in (many, nets)
    )
    fx.edit(publish=(new,), withdraw=(old,))


def _dkim_setup(fx: Fix) -> None:
    carry_out(fx.finding.fix, fx.config, fx.zones)


@dataclass
class Case:
    subject: str  # a mail domain, or for the MX host's checks the MX host
    check: str
    before: dict[str, Any] = field(default_factory=dict)  # settings changes, both runs
    after: dict[str, Any] | None = None  # settings for the second run, if they differ
    act: Callable[[Fix], None] | None = None  # advice in words; else its records
    config: bool = True  # DMS's config folder given to the first run
    error: bool = False  # the advice is about the checker's own settings or reach (an error)

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.check}"


def _config_fix(fx: Fix) -> None:
    assert "dms.configDir" in fx.finding.fix


CASES = [
    Case("gone.hosting.test", "mx"),  # NXDOMAIN
    Case("fx-sendnomx.test", "mx", {"send_only_domains": ["fx-sendnomx.test"]}),
    Case("nomx.test", "mx"),
    Case("nullmx.test", "mx"),
    Case("mxelse.test", "mx"),
    Case("fx-nospf.test", "spf"),
    Case("twospf.test", "spf"),
    Case("fx-spfall.test", "spf"),
    Case("spfloop.test", "spf"),
    Case("spfvoid.test", "spf"),
    Case("spf11.test", "spf"),
    Case("fx-spfmany.test", "spf", act=_spfmany),
    Case("spfmiss.test", "spf"),
    Case("nomx.test", "dkim", act=_dkim_setup),
    Case("dkimrevoked.test", "dkim", act=_dkim_setup),
    Case("dkim1024.test", "dkim", act=_dkim_setup),
    Case("dkimbad.test", "dkim"),
    Case("fx-dkimunpub.test", "dkim"),
    Case("fx-dkimtwo.test", "dkim"),
    Case("fx-dkimjunk.test", "dkim"),
    Case("good.test", "dkim", act=_config_fix, config=False),
    Case("nodmarc.test", "dmarc"),
    Case("twodmarc.test", "dmarc"),
    Case("fx-dmarcjunk.test", "dmarc"),
    Case("fx-dmarcp.test", "dmarc"),
    Case("dmarcnone.test", "dmarc"),
    Case("fx-dmarcrua.test", "dmarc"),
    Case("fx-dmarcext.test", "dmarc"),
    Case("fx-stsnone.test", "mta-sts", act=_stsnone),
    Case("fx-ststwo.test", "mta-sts"),
    Case("fx-stsid.test", "mta-sts", act=_stsid),
    Case(
        "good.test",
        "mta-sts",
        {"sts": {"ca_bundle": "missing"}},
        {},
        act=lambda fx: None,
        error=True,
    ),
    Case("fx-stsnoaddr.test", "mta-sts", {"sts": {"connect_to": None}}, act=_stsnoaddr),
    Case("fx-sts404.test", "mta-sts", act=_serve("fx-sts404.test")),
    Case("fx-stscert.test", "mta-sts", act=lambda fx: None),  # the second server's certificate
    Case("fx-stsmx.test", "mta-sts", act=_serve("fx-stsmx.test")),
    Case("fx-stsmodenone.test", "mta-sts", act=_serve("fx-stsmodenone.test")),
    Case("fx-tlsrptnone.test", "tls-rpt"),
    Case("fx-tlsrpttwo.test", "tls-rpt"),
    Case("tlsrptbad.test", "tls-rpt"),
    Case("wrong-a.hosting.test", "mx-address", {"ipv6": [], "egress": []}),
    Case("extra6.hosting.test", "mx-address", {"ipv6": [], "egress": []}),
    Case(world.MX, "ptr", {"egress": ["192.0.2.27"]}),  # no PTR at all
    Case(world.MX, "ptr", {"egress": ["192.0.2.26"]}),  # a PTR that does not resolve back
    Case("mail3.hosting.test", "ptr", {"ipv4": ["192.0.2.28"], "ipv6": [], "egress": []}),
    Case("dane-bad.hosting.test", "tlsa", {"ipv4": ["127.0.0.1"], "ipv6": [], "egress": []}),
    Case("dane-ca.hosting.test", "tlsa", {"ipv4": ["127.0.0.1"], "ipv6": [], "egress": []}),
    Case(
        "dane-ok.hosting.test",
        "tlsa",
        {"ipv4": ["127.0.0.1"], "ipv6": [], "egress": [], "smtp_port": "closed"},
        {"ipv4": ["127.0.0.1"], "ipv6": [], "egress": []},
        act=lambda fx: None,  # SMTP answers again
        error=True,
    ),
]


@dataclass
class Rig:
    """One phase's servers: knotd, the MTA-STS policy server, DMS's config folder."""

    w: World
    knot: KnotServer
    https_port: int
    ca_pem: Path
    config: Path
    smtp_port: int
    closed_port: int

    def settings(self, case: Case, changes: dict[str, Any]) -> DnsSettings:
        changes = dict(changes)
        sts: dict[str, Any] = {
            "ca_bundle": self.ca_pem,
            "port": self.https_port,
            "connect_to": "127.0.0.1",
        }
        for k, v in changes.pop("sts", {}).items():
            sts[k] = self.config / "missing.pem" if v == "missing" else v
        if changes.get("smtp_port") == "closed":
            changes["smtp_port"] = self.closed_port
        changes.setdefault("smtp_port", self.smtp_port)
        if case.check in HOST_CHECKS:
            changes.setdefault("mx_host", case.subject)
        base = self.w.settings(nameservers=[self.knot.nameserver], **changes)
        return base.model_copy(update={"mta_sts": MtaStsSettings(**sts)})

    async def result(self, case: Case, changes: dict[str, Any], config: bool) -> CheckResult:
        s = self.settings(case, changes)
        host = case.check in HOST_CHECKS
        plan = runner.Plan([]) if host else runner.plan_from(s, None, [case.subject])
        reports = await runner.run(s, plan, self.config if config else None)
        return reports[case.subject].results[case.check]


def sts_names(extra: list[str]) -> list[str]:
    names = ["good.test", "fx-stsnone.test", "fx-ststwo.test", "fx-stsid.test"]
    names += ["fx-stsnoaddr.test", "fx-sts404.test", "fx-stsmx.test", "fx-stsmodenone.test"]
    return [f"mta-sts.{n}" for n in [*names, *extra]]


async def test_every_advice_carried_out_makes_its_check_pass(
    dns_world: World,
    knot_factory: Callable[[Zones], KnotServer],
    test_ca: TestCA,
    tmp_path: Path,
) -> None:
    zones = world_zones(dns_world)
    keys = dns_world.keys
    zones.update(extra_zones(keys))
    zones["hosting.test"] = str(zones["hosting.test"]) + HOSTING_EXTRA
    zones["2.0.192.in-addr.arpa"] = str(zones["2.0.192.in-addr.arpa"]) + REVERSE_EXTRA
    config = tmp_path / "dms"
    shutil.copytree(dns_world.config_dir, config)
    rspamd = config / "rspamd" / "dkim"
    for domain, p in [
        ("fx-dkimunpub.test", keys.split_p),
        ("fx-dkimtwo.test", keys.bad_disk_p),
        ("fx-dkimjunk.test", keys.split_p),
    ]:
        (rspamd / f"rsa-2048-mail-{domain}.public.dns.txt").write_text(f"v=DKIM1; k=rsa; p={p}\n")
    policies = {n.removeprefix("mta-sts."): world.GOOD_POLICY for n in sts_names([])}
    policies["fx-stsmx.test"] = world.BAD_POLICY
    policies["fx-stsmodenone.test"] = NONE_POLICY
    policies["fx-stscert.test"] = world.GOOD_POLICY
    del policies["fx-sts404.test"]
    smtp = await world.starttls_server(dns_world.ca)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
    try:
        before, created = await _first_run(
            dns_world, knot_factory, test_ca, zones, policies, config, smtp, closed
        )
        fixes = _carry_out(before, zones, policies, config)
        after = await _second_run(dns_world, knot_factory, test_ca, fixes, smtp, closed)
    finally:
        closed.close()
        smtp.close()
        await smtp.wait_closed()
    still = {k: r.as_dict() for k, r in after.items() if r.status != Status.PASS}
    assert not still, still
    reached = {created.site(r.headline) for r in before.values()}
    missing = set(fixsites.sites()) - reached - set(EXEMPT)
    assert not missing, f"advice without a carried-out case: {sorted(missing)}"


async def _first_run(
    w: World,
    knot_factory: Callable[[Zones], KnotServer],
    ca: TestCA,
    zones: Zones,
    policies: dict[str, str],
    config: Path,
    smtp: Any,
    closed: socket.socket,
) -> tuple[dict[str, CheckResult], fixsites.Created]:
    knot = knot_factory(zones)
    cert, key = ca.issue(sts_names([]))  # not mta-sts.fx-stscert.test
    results: dict[str, CheckResult] = {}
    served = world.TestCA(ca.ca_cert_path, cert, key)
    with world.PolicyServer(served, policies) as server, fixsites.tracing() as created:
        rig = Rig(w, knot, server.port, ca.ca_cert_path, config, _port(smtp), _port(closed))
        for case in CASES:
            res = await rig.result(case, case.before, case.config)
            wanted = {Status.ERROR} if case.error else {Status.FAIL, Status.WARN}
            assert res.status in wanted, (case.key, res.as_dict())
            assert res.headline.fix, (case.key, res.as_dict())
            if case.act is None:
                assert res.headline.publish or res.headline.withdraw, (case.key, res.as_dict())
                _says_its_records(res.headline)
            results[case.key + "#" + str(CASES.index(case))] = res
    knot.stop()
    return results, created


def _says_its_records(finding: Finding) -> None:
    """The words name what each published record holds (or the file that holds it)."""
    for line in finding.publish:
        value = _joined(line) if " TXT " in line else line.split(" ", 2)[2].rstrip(".")
        named = value in finding.fix or " with the value in " in finding.fix
        assert named, f"{finding.fix!r} does not say {line!r}"


def _joined(txt_line: str) -> str:
    return "".join(re.findall(r'"([^"]*)"', txt_line))


@dataclass
class Changed:
    zones: Zones
    policies: dict[str, str]
    config: Path


def _carry_out(
    before: dict[str, CheckResult], zones: Zones, policies: dict[str, str], config: Path
) -> Changed:
    records = [before[f"{c.key}#{i}"].headline for i, c in enumerate(CASES) if c.act is None]
    fx = Fix(records[0], apply(zones, records), dict(policies), config)
    for i, case in enumerate(CASES):
        if case.act is not None:
            fx.finding = before[f"{case.key}#{i}"].headline
            case.act(fx)
    return Changed(fx.zones, fx.policies, fx.config)


async def _second_run(
    w: World,
    knot_factory: Callable[[Zones], KnotServer],
    ca: TestCA,
    fixes: Changed,
    smtp: Any,
    closed: socket.socket,
) -> dict[str, CheckResult]:
    knot = knot_factory(fixes.zones)
    cert, key = ca.issue(sts_names(["fx-stscert.test"]))
    served = world.TestCA(ca.ca_cert_path, cert, key)
    results = {}
    with world.PolicyServer(served, fixes.policies) as server:
        rig = Rig(w, knot, server.port, ca.ca_cert_path, fixes.config, _port(smtp), _port(closed))
        for i, case in enumerate(CASES):
            changes = case.before if case.after is None else case.after
            results[f"{case.key}#{i}"] = await rig.result(case, changes, True)
    knot.stop()
    return results


def _port(server: Any) -> int:
    if isinstance(server, socket.socket):
        return int(server.getsockname()[1])
    return int(server.sockets[0].getsockname()[1])
