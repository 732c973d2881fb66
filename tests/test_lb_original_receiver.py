"""The lb client with default settings against the receiver people already run: adnanh/webhook
with the original ``update-haproxy`` hook (an empty 200 before the script runs, one request per
port, five values passed, none checked), in front of a real HAProxy. And, beside it, the
example receiver when one port of several is refused."""

from __future__ import annotations

from pathlib import Path

from agent.metrics import REGISTRY
from tests.lbkit import (
    LbHost,
    OriginalHost,
    RunningAgent,
    backend,
    lb_settings,
    ok,
    setup_host,
    setup_original_host,
    start_agent,
    wait_route,
)
from tests.rig.haproxy import HAProxy
from tests.rig.proc import free_port
from tests.rig.webhook import WebhookFactory


def _requests(result: str) -> float:
    labels = {"format": "funkypenguin", "result": result}
    return REGISTRY.get_sample_value("dms_agent_lb_requests_total", labels) or 0.0


def _confirmed_gauge(target: str) -> float | None:
    return REGISTRY.get_sample_value("dms_agent_lb_delivery_confirmed", {"target": target})


def _start(host: OriginalHost, ports: list[dict[str, object]], **target: object) -> RunningAgent:
    settings = lb_settings(
        ports=ports,
        address={"source": "fixed", "value": "127.0.0.2"},
        targets=[
            {
                "url": host.url,
                "format": "funkypenguin",
                "secretFile": str(host.token),
                "name": "original",
                **target,
            }
        ],
        retry={"initial": 0.05, "maximum": 0.2},
    )
    return start_agent(settings)


async def test_default_settings_register_every_port_unconfirmed(
    webhook: WebhookFactory, haproxy: HAProxy, tmp_path: Path
) -> None:
    host = setup_original_host(webhook, haproxy, tmp_path)
    before = _requests("unconfirmed")
    async with backend("smtp", "127.0.0.2") as smtp, backend("imaps", "127.0.0.2") as imaps:
        f1, f2 = free_port(), free_port()
        ports: list[dict[str, object]] = [
            {"name": "smtp", "frontend": f1, "backend": smtp.port, "proxyProtocol": True},
            {"name": "imaps", "frontend": f2, "backend": imaps.port},
        ]
        agent = _start(host, ports)
        try:
            await agent.wait(ok)
            target = agent.target()
            assert target["lastResult"] == "unconfirmed" and target["confirmed"] is False
            assert target["consecutiveFailures"] == 0 and target["lastSuccessAt"] is not None
            assert "unconfirmed by original" in agent.status()["message"]
            assert _requests("unconfirmed") == before + 2  # one request per port
            assert _confirmed_gauge("original") == 0
            assert host.triggered() == 2
            # Both ports reach their backends through the reloaded HAProxy: the first port's
            # empty answer did not stop the second from being sent.
            assert (await wait_route(f1, "smtp"))[0] == "220 smtp -"  # it ignores send-proxy
            await wait_route(f2, "imaps")
            assert "registered by docker-mailserver-smtp" in host.part(f1)
            assert "registered by docker-mailserver-imaps" in host.part(f2)
        finally:
            await agent.stop()


async def test_original_receiver_confirms_with_its_output_and_expect_response(
    webhook: WebhookFactory, haproxy: HAProxy, tmp_path: Path
) -> None:
    """What the docs say: add include-command-output-in-response to the hook, and match what
    the script prints (`haproxy -c`'s verdict) with expectResponse."""
    host = setup_original_host(webhook, haproxy, tmp_path)
    host.start_webhook(confirm=True)
    async with backend("smtp", "127.0.0.2") as smtp:
        front = free_port()
        ports: list[dict[str, object]] = [{"name": "smtp", "frontend": front, "backend": smtp.port}]
        agent = _start(host, ports, expectResponse="Configuration file is valid")
        try:
            await agent.wait(ok)
            assert agent.target()["lastResult"] == "ok" and agent.target()["confirmed"] is True
            assert _confirmed_gauge("original") == 1
            await wait_route(front, "smtp")
        finally:
            await agent.stop()
        # requireConfirmation turns the original receiver's empty answer into a failure.
        host.start_webhook(confirm=False)
        strict = _start(host, ports, requireConfirmation=True)
        try:
            await strict.wait(lambda a: a.target()["consecutiveFailures"] >= 2)
            assert strict.target()["lastResult"] == "bad_response"
            assert strict.status()["state"] == "degraded"
        finally:
            await strict.stop()


async def test_a_refused_port_does_not_stop_the_others(
    webhook: WebhookFactory, haproxy: HAProxy, tmp_path: Path
) -> None:
    refused, accepted = free_port(), free_port()
    host: LbHost = setup_host(webhook, haproxy, tmp_path, start=False)
    host.env["LB_ALLOWED_PORTS"] = str(accepted)  # the receiver refuses the first port
    host.start_webhook()
    async with backend("sub", "127.0.0.2") as sub:
        settings = lb_settings(
            ports=[
                {"name": "smtp", "frontend": refused, "backend": 2525},
                {"name": "submission", "frontend": accepted, "backend": sub.port},
            ],
            address={"source": "fixed", "value": "127.0.0.2"},
            targets=[
                {
                    "url": host.legacy_url,
                    "format": "funkypenguin",
                    "secretFile": str(host.token),
                }
            ],
            retry={"initial": 0.05, "maximum": 0.2},
        )
        agent = start_agent(settings)
        try:
            await agent.wait(lambda a: a.target()["consecutiveFailures"] >= 2)
            target = agent.target()
            assert target["lastResult"] == "rejected"
            assert target["lastDetail"].startswith("port smtp: receiver refused")
            assert agent.status()["state"] == "degraded"
            await wait_route(accepted, "sub")
            assert list(host.state()["legacy"]) == [f"docker-mailserver-submission/{accepted}"]
        finally:
            await agent.stop()
