"""Fixtures of the DNS checks' tests: one knotd, one policy server, one run over every zone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.dns import runner
from agent.dns.config import DnsSettings, MtaStsSettings
from agent.dns.model import DomainReport
from tests.dnscheck import world
from tests.rig.knot import KnotServer


@dataclass
class World:
    knot: KnotServer
    config_dir: Path
    ca: world.TestCA
    https_port: int
    keys: world.Keys

    def settings(self, **changes: object) -> DnsSettings:
        base: dict[str, object] = {
            "enabled": True,
            "mx_host": world.MX,
            "ipv4": [world.V4],
            "ipv6": [world.V6],
            "egress": [world.V4],
            "nameservers": [self.knot.nameserver],
            "timeout": 1.0,
            "lifetime": 2.0,
            "interval": 3600.0,
            "send_only_domains": ["sendonly.test"],
            "mta_sts": MtaStsSettings(
                ca_bundle=self.ca.ca_pem, port=self.https_port, connect_to="127.0.0.1"
            ),
        }
        base.update(changes)
        return DnsSettings.model_validate(base)


@pytest.fixture(scope="session")
def dns_world(
    knot_factory: Callable[[dict[str, str | None]], KnotServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    work = tmp_path_factory.mktemp("dnsworld")
    config_dir = work / "dms-config"
    keys = world.make_keys(config_dir, work)
    ca = world.make_ca(work, ["mta-sts.good.test", "mta-sts.stsbad.test"])
    knot = knot_factory(world.zones(keys, world.cert_der(ca)))
    for server in world.policy_server(ca):
        yield World(knot, config_dir, ca, server.port, keys)


@pytest.fixture(scope="session")
def reports(dns_world: World) -> dict[str, DomainReport]:
    """One run over every zone's domain (the way the agent runs it)."""
    settings = dns_world.settings()
    names = [z for z in dns_world.knot.zones if z.endswith(".test") and z != "hosting.test"]
    names.remove("elsewhere.test")
    plan = runner.plan_from(settings, None, names)
    return asyncio.run(runner.run(settings, plan, dns_world.config_dir))
