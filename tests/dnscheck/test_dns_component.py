"""The dns component in the agent: schedule, re-run on a new desired state, hub, /status,
metrics and Events; never the mailserver verdict."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agent.app import AgentContext
from agent.dns.component import DnsChecker, build
from agent.events import EventType
from agent.mailstate.model import Account, Desired, DkimSpec, Domain, MailState
from agent.metrics import REGISTRY
from agent.settings import DmsSettings, Settings
from agent.status import State, StatusRegistry, Verdict
from tests.dnscheck.conftest import World


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, EventType]] = []

    def emit(self, reason: str, message: str, type: EventType = "Normal") -> None:
        self.seen.append((reason, message, type))


def state_of(domain: str, check: str, state: str) -> float | None:
    labels = {"domain": domain, "check": check, "dms_agent_dns_check_state": state}
    return REGISTRY.get_sample_value("dms_agent_dns_check_state", labels)


def context(world: World, **dns: object) -> tuple[AgentContext, Events]:
    settings = Settings(
        dns=world.settings(domains=["good.test"], **dns),
        dms=DmsSettings(config_dir=world.config_dir),
    )
    events = Events()
    return AgentContext(settings=settings, status=StatusRegistry(), events=events), events


def test_disabled_builds_nothing() -> None:
    ctx = AgentContext(settings=Settings(), status=StatusRegistry())
    assert build(ctx) == []
    assert ctx.status.component("dns").state is State.DISABLED


async def test_runs_at_start_and_again_when_the_desired_state_changes(dns_world: World) -> None:
    ctx, events = context(dns_world, send_only_domains=[])
    [checker] = build(ctx)
    task = asyncio.create_task(checker.run())
    try:
        version, first = await asyncio.wait_for(ctx.hub.dns_results.wait_newer(0), 10)
        assert set(first) == {"good.test", "mail.hosting.test"}
        entry = ctx.status.component("dns")
        assert entry.state is State.OK, entry.as_dict()
        assert state_of("good.test", "dkim", "pass") == 1.0
        assert state_of("good.test", "dkim", "fail") == 0.0
        assert REGISTRY.get_sample_value("dms_agent_dns_last_run_timestamp_seconds")

        desired = Desired(
            MailState(
                domains={"dkimbad.test": Domain("dkimbad.test", DkimSpec("mail"))},
                accounts={"bob@nomx.test": Account("bob@nomx.test")},
            )
        )
        ctx.hub.desired.set(desired)
        _, second = await asyncio.wait_for(ctx.hub.dns_results.wait_newer(version), 10)
        assert {"dkimbad.test", "nomx.test", "good.test"} <= set(second)
        assert second["dkimbad.test"].dkim["mail"].matches is False
        assert entry.state is State.DEGRADED
        problems = {(p["domain"], p["check"]) for p in entry.details["problems"]}
        assert ("nomx.test", "mx") in problems and ("dkimbad.test", "dkim") in problems
        assert state_of("nomx.test", "mx", "fail") == 1.0
        reasons = [(r, m) for r, m, t in events.seen if t == "Warning"]
        assert any(r == "DnsCheckFail" and m.startswith("nomx.test mx: fail") for r, m in reasons)
        assert not any("good.test" in m for _, m, _ in events.seen), "no event without change"
        assert ctx.status.health.verdict is Verdict.UNKNOWN  # DNS never judges the mailserver
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_domain_leaving_the_state_drops_its_series(dns_world: World) -> None:
    ctx, _ = context(dns_world)
    checker = DnsChecker(ctx)
    ctx.hub.desired.set(Desired(MailState(accounts={"a@nullmx.test": Account("a@nullmx.test")})))
    await checker.check_once()
    assert state_of("nullmx.test", "mx", "fail") == 1.0
    ctx.hub.desired.set(Desired(MailState()))
    await checker.check_once()
    assert state_of("nullmx.test", "mx", "fail") is None


async def test_failing_dns_shows_in_status_and_metrics_but_not_in_health(
    dns_world: World, aiohttp_client: Any
) -> None:
    from agent.server import make_app

    ctx, _ = context(dns_world)
    ctx.status.settings_loaded = True  # as the agent does once its settings are loaded
    ctx.hub.desired.set(Desired(MailState(accounts={"a@nomx.test": Account("a@nomx.test")})))
    await DnsChecker(ctx).check_once()
    client = await aiohttp_client(make_app(ctx.status))
    status = await (await client.get("/status")).json()
    dns = status["components"]["dns"]
    assert dns["state"] == "degraded"
    assert {"domain": "nomx.test", "check": "mx", "status": "fail"}.items() <= next(
        p for p in dns["details"]["problems"] if p["domain"] == "nomx.test"
    ).items()
    metrics = await (await client.get("/metrics")).text()
    series = 'check="mx",dms_agent_dns_check_state="fail",domain="nomx.test"'
    assert f"dms_agent_dns_check_state{{{series}}} 1.0" in metrics
    for path in ("/livez", "/readyz", "/healthz"):
        assert (await client.get(path)).status == 200, path
