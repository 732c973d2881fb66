"""Every deliberate DNS mistake is found, against the real knotd; correct records pass."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.dns import runner
from agent.dns.model import DomainReport, Status
from tests.dnscheck import world
from tests.dnscheck.conftest import World

P, W, F, E = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR


def test_correct_domain_passes_every_check(reports: dict[str, DomainReport]) -> None:
    good = reports["good.test"]
    assert set(good.results) == {"mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt"}
    bad = {k: r.as_dict() for k, r in good.results.items() if r.status != P}
    assert not bad
    host = reports[world.MX]
    statuses = {k: r.status for k, r in host.results.items()}
    assert statuses == {"mx-address": P, "tlsa": P, "ptr": P}
    assert host.results["tlsa"].headline.message.startswith("no TLSA record")


def test_dkim_info_is_published_for_the_dkim_capability(
    reports: dict[str, DomainReport],
) -> None:
    info = reports["good.test"].dkim["mail"]
    assert info.published and info.matches and info.bits == 2048
    assert info.key_source and info.key_source.endswith("opendkim/keys/good.test/mail.txt")
    assert reports["dkimbad.test"].dkim["mail"].matches is False


@pytest.mark.parametrize(
    ("domain", "check", "status", "words"),
    [
        ("nomx.test", "mx", F, "no MX record"),
        ("mxelse.test", "mx", F, "MX points elsewhere: mx.elsewhere.test"),
        ("nullmx.test", "mx", F, "null MX"),
        ("sendonly.test", "mx", P, "null MX: send-only"),
        ("twospf.test", "spf", F, "2 SPF records"),
        ("spf11.test", "spf", F, "Too many DNS lookups"),
        ("spfvoid.test", "spf", F, "Void lookup limit"),
        ("spfloop.test", "spf", F, "SPF include loop: spfloop.test → loop.spfloop.test → spf"),
        ("spfmiss.test", "spf", F, "SPF gives fail for the egress address 192.0.2.25"),
        ("dkimbad.test", "dkim", F, "not the key DMS signs with"),
        ("dkim1024.test", "dkim", W, "only 1024 bits"),
        ("dkimsplit.test", "dkim", P, "DKIM dkim matches DMS's key"),
        ("dkimrevoked.test", "dkim", F, "revoked (empty p=)"),
        ("dkimed.test", "dkim", P, "DKIM mail matches DMS's key"),  # 256 bits is right here
        ("dmarcnone.test", "dmarc", W, "p=none"),
        ("nodmarc.test", "dmarc", F, "no DMARC record"),
        ("twodmarc.test", "dmarc", F, "2 DMARC records"),
        ("stsbad.test", "mta-sts", F, "does not cover mail.hosting.test"),
        ("tlsrptbad.test", "tls-rpt", F, "TLS-RPT at _smtp._tls.tlsrptbad.test needs rua="),
        ("nomx.test", "mta-sts", P, "MTA-STS does not apply: the domain has no MX"),
        ("nullmx.test", "mta-sts", P, "MTA-STS does not apply: null MX"),
        ("twospf.test", "mta-sts", F, "certificate of mta-sts.twospf.test rejected"),
    ],
)
def test_each_mistake_is_found(
    reports: dict[str, DomainReport], domain: str, check: str, status: Status, words: str
) -> None:
    res = reports[domain].results[check]
    head = res.headline
    assert res.status == status, res.as_dict()
    assert words in head.message, res.as_dict()
    if status != P:
        assert head.fix, "every problem carries a one-line fix"
        assert "\n" not in head.fix


def test_fail_says_what_was_found_and_expected(reports: dict[str, DomainReport]) -> None:
    head = reports["mxelse.test"].results["mx"].headline
    assert head.found == "10 mx.elsewhere.test"
    assert head.expected == world.MX
    assert world.MX in head.fix


async def test_wrong_a_record_of_the_mx_host(dns_world: World) -> None:
    settings = dns_world.settings(mx_host="wrong-a.hosting.test", ipv6=[], egress=[])
    reports = await runner.run(settings, runner.Plan([]), None)
    res = reports["wrong-a.hosting.test"].results["mx-address"]
    assert res.status == F
    assert res.headline.found == "192.0.2.99" and res.headline.expected == world.V4


async def test_ptr_that_does_not_resolve_back(dns_world: World) -> None:
    settings = dns_world.settings(egress=["192.0.2.26"])
    reports = await runner.run(settings, runner.Plan([]), None)
    res = reports[world.MX].results["ptr"]
    assert res.status == F
    assert "does not resolve back" in res.headline.message
    assert res.headline.found == "other.hosting.test"


async def test_silent_nameserver_gives_error_never_fail(dns_world: World) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: every query times out
        port = silent.getsockname()[1]
        settings = dns_world.settings(nameservers=[f"127.0.0.1:{port}"], timeout=0.1, lifetime=0.3)
        errors: list[str] = []
        plan = runner.plan_from(settings, None, ["good.test"])
        reports = await runner.run(settings, plan, dns_world.config_dir, errors.append)
    statuses = {f"{d}/{c}": r.status for d, rep in reports.items() for c, r in rep.results.items()}
    assert statuses and set(statuses.values()) == {E}, statuses
    assert "timeout" in errors


@pytest.mark.parametrize(
    ("domain", "kind"), [("broken.test", "servfail"), ("not-served.example", "refused")]
)
async def test_servfail_and_refused_are_errors_never_fails(
    dns_world: World, domain: str, kind: str
) -> None:
    settings = dns_world.settings(mx_host=None)
    errors: list[str] = []
    plan = runner.plan_from(settings, None, [domain])
    reports = await runner.run(settings, plan, dns_world.config_dir, errors.append)
    statuses = {c: r.status for c, r in reports[domain].results.items()}
    assert set(statuses.values()) == {E}, statuses
    assert kind in errors


def test_dkim_keys_are_read_from_both_backends(dns_world: World) -> None:
    from agent.dns.dkimkeys import load_public_keys

    good = load_public_keys(dns_world.config_dir, "good.test")
    assert set(good) == {"mail"} and good["mail"].p.startswith("MIIBIjAN")
    split = load_public_keys(dns_world.config_dir, "dkimsplit.test")
    assert split["dkim"].p == dns_world.keys.split_p
    assert split["dkim"].source.endswith(".public.dns.txt")


def test_names_are_absolute_whatever_the_search_list(dns_world: World) -> None:
    """ndots/search must not matter: a name without its final dot is asked as it is."""
    from agent.dns.resolver import Lookup
    from agent.dns.transport import make_transport

    async def ask() -> list[str]:
        transport = make_transport(dns_world.settings())
        try:
            return await Lookup(transport).txt("_dmarc.good.test")
        finally:
            transport.close()

    assert asyncio.run(ask())[0].startswith("v=DMARC1")


async def test_tlsa_matches_the_certificate_served_after_starttls(dns_world: World) -> None:
    server = await world.starttls_server(dns_world.ca)
    port = server.sockets[0].getsockname()[1]
    try:
        results = {}
        for host in ("dane-ok.hosting.test", "dane-bad.hosting.test"):
            settings = dns_world.settings(mx_host=host, ipv4=["127.0.0.1"], ipv6=[], egress=[])
            settings = settings.model_copy(update={"smtp_port": port})
            reports = await runner.run(settings, runner.Plan([]), None)
            results[host] = reports[host].results["tlsa"]
    finally:
        server.close()
        await server.wait_closed()
    assert results["dane-ok.hosting.test"].status == P, results["dane-ok.hosting.test"].as_dict()
    bad = results["dane-bad.hosting.test"]
    assert bad.status == F and "does not match" in bad.headline.message
    assert bad.headline.expected.startswith("3 1 1 ")
    ok_record = results["dane-ok.hosting.test"].headline.found
    assert bad.headline.expected == ok_record  # the fix names the record that works


async def test_tlsa_without_smtp_is_an_error(dns_world: World) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        port = closed.getsockname()[1]
        settings = dns_world.settings(mx_host="dane-ok.hosting.test", ipv4=["127.0.0.1"])
        settings = settings.model_copy(update={"smtp_port": port, "ipv6": [], "egress": []})
        reports = await runner.run(settings, runner.Plan([]), None)
    assert reports["dane-ok.hosting.test"].results["tlsa"].status == E


async def test_unreadable_ca_bundle_is_an_error_of_the_mta_sts_check(
    dns_world: World, tmp_path: Path
) -> None:
    base = dns_world.settings()
    sts = base.mta_sts.model_copy(update={"ca_bundle": tmp_path / "missing.pem"})
    settings = base.model_copy(update={"mta_sts": sts})
    reports = await runner.run(settings, runner.plan_from(settings, None, ["good.test"]), None)
    res = reports["good.test"].results["mta-sts"]
    assert res.status == E and "missing.pem" in res.headline.message


async def test_policy_host_is_resolved_through_our_nameserver(dns_world: World) -> None:
    """Without connectTo the policy host's A record comes from the configured nameserver."""
    base = dns_world.settings()
    sts = base.mta_sts.model_copy(update={"connect_to": None})
    settings = base.model_copy(update={"mta_sts": sts})
    plan = runner.plan_from(settings, None, ["good.test", "stsbad.test"])
    reports = await runner.run(settings, plan, None)
    assert reports["good.test"].results["mta-sts"].status == P
    res = reports["stsbad.test"].results["mta-sts"]  # its zone has no mta-sts host
    assert res.status == F and "has no address" in res.headline.message


async def test_run_deadline_turns_unfinished_checks_into_errors(dns_world: World) -> None:
    settings = dns_world.settings(deadline=0.001)  # nothing can finish in a millisecond
    plan = runner.plan_from(settings, None, ["good.test", "twospf.test"])
    reports = await runner.run(settings, plan, dns_world.config_dir)
    assert list(reports["good.test"].results) == [
        "mx",
        "spf",
        "dkim",
        "dmarc",
        "mta-sts",
        "tls-rpt",
    ]
    unfinished = [r for rep in reports.values() for r in rep.results.values()]
    assert unfinished and {r.status for r in unfinished} == {E}
    assert "dns.deadline, 0.001 s" in unfinished[0].headline.message
    assert list(reports[world.MX].results) == ["mx-address", "ptr", "tlsa"]


async def test_the_agents_off_loop_run_gives_the_same_reports(
    dns_world: World, reports: dict[str, DomainReport]
) -> None:
    settings = dns_world.settings()
    plan = runner.plan_from(settings, None, ["good.test", "twospf.test"])
    off = await runner.run_off_loop(settings, plan, dns_world.config_dir)
    for name in ("good.test", "twospf.test", world.MX):
        assert {c: r.status for c, r in off[name].results.items()} == {
            c: r.status for c, r in reports[name].results.items()
        }


@pytest.mark.parametrize("when", ["asking", "at once"])
async def test_cancelling_the_off_loop_run_cancels_the_run_on_its_thread(
    dns_world: World, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The agent cancels the hourly run on shutdown: the run on the worker thread's loop must
    end too (cancelled), whether it was already asking or had not started yet."""
    ended: list[str] = []
    finished = threading.Event()
    real_run = runner.run

    async def spy(*args: Any, **kwargs: Any) -> dict[str, DomainReport]:
        try:
            return await real_run(*args, **kwargs)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise
        finally:
            finished.set()

    monkeypatch.setattr(runner, "run", spy)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # never answers: left alone, the run takes a minute
        settings = dns_world.settings(
            nameservers=[f"127.0.0.1:{silent.getsockname()[1]}"],
            timeout=30.0,
            lifetime=60.0,
            deadline=60.0,
        )
        task = asyncio.create_task(
            runner.run_off_loop(settings, runner.plan_from(settings, None, ["good.test"]), None)
        )
        if when == "asking":
            ready = await asyncio.to_thread(select.select, [silent], [], [], 10)
            assert ready[0], "no query reached the nameserver"
        else:
            await asyncio.sleep(0)  # run_off_loop hands the run to a thread, which may not start
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # every worker thread ends (joined): the run does not go on in the background
        await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), 10)
    if when == "asking":
        assert ended == ["cancelled"] and finished.is_set()
    else:  # cancelled before or after it began
        assert ended in ([], ["cancelled"])


def test_a_rejected_policy_certificate_gets_certificate_advice(
    reports: dict[str, DomainReport],
) -> None:
    head = reports["twospf.test"].results["mta-sts"].headline
    assert "certificate of mta-sts.twospf.test rejected" in head.message
    assert head.fix.startswith("serve mta-sts.twospf.test with a certificate valid for that name")
