"""The DNS checks' pure parts: settings, the plan of domains, MTA-STS policies, key files."""

from __future__ import annotations

from pathlib import Path

import dns.exception
import dns.name
import pytest

from agent.dns import runner
from agent.dns.config import DnsSettings, split_host_port
from agent.dns.dkimkeys import key_data, record_value
from agent.dns.mtasts import PolicyError, parse_policy
from agent.dns.transport import absolute_name
from agent.errors import InvalidDocument
from agent.mailstate.model import Account, Desired, DkimSpec, Domain, MailState
from agent.settings import load_settings


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("10.0.0.10", ("10.0.0.10", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
    ],
)
def test_nameserver_with_port(text: str, want: tuple[str, int]) -> None:
    assert split_host_port(text) == want


def test_bad_settings_are_located(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("dns:\n  enabled: true\n  mtaSts:\n    connectTo: 192.0.2.1\n")
    with pytest.raises(InvalidDocument) as info:
        load_settings(path, environ={})
    [err] = info.value.errors
    assert str(err).startswith(f"{path}:4: dns.mtaSts.connectTo:")
    assert "loopback" in str(err)


def test_settings_in_camel_case(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "dns:\n  mxHost: Mail.Example.COM.\n  nameservers: ['127.0.0.1:53']\n"
        "  sendOnlyDomains: [Notify.Example.com]\n  ipv4: [203.0.113.25]\n"
    )
    dns = load_settings(path, environ={}).dns
    assert dns.mx_host == "mail.example.com"
    assert dns.send_only_domains == ["notify.example.com"]
    assert [str(a) for a in dns.egress_addresses()] == ["203.0.113.25"]


def test_plan_takes_domains_from_state_and_settings() -> None:
    state = MailState(
        domains={"example.com": Domain("example.com", DkimSpec(selector="s2026"))},
        accounts={"alice@example.net": Account("alice@example.net")},
        aliases={"@catchall.example": ("alice@example.net",), "postmaster": ("a@b.example",)},
    )
    settings = DnsSettings(domains=["extra.example"], send_only_domains=["notify.example"])
    plan = runner.plan_from(settings, Desired(state))
    assert plan.names == [
        "catchall.example",
        "example.com",
        "example.net",
        "extra.example",
        "notify.example",
    ]
    by_name = {d.name: d for d in plan.domains}
    assert by_name["example.com"].selectors == {"s2026"}
    assert by_name["notify.example"].send_only
    assert runner.plan_from(settings, None, ["Example.NET."]).names == ["example.net"]


def test_policy_parsing_and_mx_patterns() -> None:
    policy = parse_policy(
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.backup.example\r\n"
        "max_age: 604800\r\n"
    )
    assert policy.covers("mail.example.com") and policy.covers("MX1.backup.example.")
    assert not policy.covers("a.b.backup.example")  # a wildcard covers one label only
    assert not policy.covers("backup.example")
    with pytest.raises(PolicyError, match="version"):
        parse_policy("mode: enforce\nmx: a\nmax_age: 1\n")
    with pytest.raises(PolicyError, match="max_age"):
        parse_policy("version: STSv1\nmode: testing\nmx: a\n")


def test_key_file_formats_give_the_same_value() -> None:
    zone = 'sel._domainkey IN TXT ( "v=DKIM1; k=rsa; "\n\t"p=AAA" "BBB" ) ; comment\n'
    bare = "v=DKIM1; k=rsa; p=AAABBB\n"
    assert record_value(zone) == record_value(bare) == "v=DKIM1; k=rsa; p=AAABBB"
    assert key_data("v=DKIM1; p=AA A\tB") == "AAAB"
    assert key_data("not a tag list") is None


@pytest.mark.parametrize(
    "name",
    [
        *("example.com", "Example.COM.", "_dmarc.x.test", "xn--bcher-kva.de", "bücher.de"),
        *(r"a\.b.c", "", ".", "@", "x" * 63 + ".t"),
        *("a..b", "x" * 64 + ".t", ("a" * 60 + ".") * 5),  # refused, as dnspython refuses them
    ],
)
def test_query_names_are_dnspythons_names(name: str) -> None:
    """The transport cuts plain names into labels itself: the same name, or the same error,
    as dnspython's from_text."""
    try:
        want: object = dns.name.from_text(name.rstrip(".") + ".")
    except dns.exception.DNSException as exc:
        with pytest.raises(type(exc)):
            absolute_name(name)
        return
    got = absolute_name(name)
    assert got == want and got.labels == want.labels  # type: ignore[attr-defined]
