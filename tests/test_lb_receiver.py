"""The lb client against the real receiver: adnanh/webhook running the example script, which
rewrites a real HAProxy's config and reloads it; TCP through HAProxy to test backends."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.lb.client import TargetClient
from agent.lb.config import LbPort, LbTarget
from agent.lb.payload import Registration, rejection
from agent.lb.sequence import SequenceSource
from agent.metrics import REGISTRY
from agent.server import serve
from agent.settings import ServerSettings
from tests.lbkit import (
    CLIENT_SOURCE,
    LbHost,
    backend,
    failed_times,
    lb_settings,
    ok,
    probe,
    setup_host,
    start_agent,
    wait_route,
)
from tests.rig.ca import TestCA
from tests.rig.haproxy import HAProxy
from tests.rig.proc import free_port
from tests.rig.webhook import WebhookFactory


async def test_v2_registration_forwards_with_proxy_header(lb_host: LbHost) -> None:
    async with backend("pod-a", "127.0.0.2", proxy=True) as smtp:
        front = free_port()
        settings = lb_settings(
            ports=[
                {"name": "smtp", "frontend": front, "backend": smtp.port, "proxyProtocol": True}
            ],
            address={"source": "env"},
            targets=[{"url": lb_host.v2_url, "secretFile": str(lb_host.hmac_key)}],
        )
        agent = start_agent(settings, {"HOST_IP": "127.0.0.2", "POD_NAME": "mail-a"})
        try:
            await agent.wait(ok)
            assert lb_host.triggered("dms-lb") == 1
            cfg = lb_host.config.read_text()
            assert f"bind 127.0.0.1:{front}" in cfg
            assert f"server mailserver_smtp 127.0.0.2:{smtp.port} send-proxy" in cfg
            greeting, client_port = await wait_route(front, "pod-a")
            assert greeting == (
                f"220 pod-a PROXY TCP4 {CLIENT_SOURCE} 127.0.0.1 {client_port} {front}"
            )
            assert lb_host.haproxy.loads() == 2  # started once, reloaded once
            target = agent.target()
            assert target["lastResult"] == "ok" and target["lastSequence"] > 0
        finally:
            await agent.stop()


def _fast(**lb: Any) -> Any:
    """Settings with short retry and heartbeat intervals, for tests."""
    lb.setdefault("retry", {"initial": 0.05, "maximum": 0.2})
    return lb_settings(**lb)


async def test_funkypenguin_one_request_per_port(lb_host: LbHost) -> None:
    async with (
        backend("smtp", "127.0.0.2", proxy=True) as smtp,
        backend("submission", "127.0.0.2") as sub,
    ):
        f1, f2 = free_port(), free_port()
        settings = _fast(
            ports=[
                {"name": "smtp", "frontend": f1, "backend": smtp.port, "proxyProtocol": True},
                {"name": "submission", "frontend": f2, "backend": sub.port},
            ],
            address={"source": "fixed", "value": "127.0.0.2"},
            targets=[
                {
                    "url": lb_host.legacy_url,
                    "format": "funkypenguin",
                    "secretFile": str(lb_host.token),
                }
            ],
        )
        agent = start_agent(settings)
        try:
            await agent.wait(ok)
            assert lb_host.triggered("update-haproxy") == 2  # one request per port
            assert set(lb_host.state()["legacy"]) == {
                f"docker-mailserver-smtp/{f1}",
                f"docker-mailserver-submission/{f2}",
            }
            greeting, client_port = await wait_route(f1, "smtp")
            assert greeting.endswith(f"PROXY TCP4 {CLIENT_SOURCE} 127.0.0.1 {client_port} {f1}")
            greeting, _ = await wait_route(f2, "submission")
            assert greeting == "220 submission -"  # no send-proxy asked: no header
            await asyncio.sleep(0.3)
            assert sub.proxy_lines == [] and len(smtp.proxy_lines) >= 1
        finally:
            await agent.stop()
        # Settings change: submission is dropped. The legacy format has no "whole set"
        # document, so the agent withdraws the dropped port itself.
        lb = settings.lb.model_copy(
            update={"ports": settings.lb.ports[:1], "delete_on_shutdown": True}
        )
        agent = start_agent(settings.model_copy(update={"lb": lb}))
        try:
            await agent.wait(ok)
            assert sorted(lb_host.state()["legacy"]) == [f"docker-mailserver-smtp/{f1}"]
            assert f":{f2}" not in lb_host.config.read_text()
            await wait_route(f1, "smtp")
            calls = lb_host.triggered("update-haproxy")
            await agent.stop(shutdown=True)
            assert lb_host.triggered("update-haproxy") == calls + 1  # one delete, one port
            assert lb_host.state()["legacy"] == {}
        finally:
            await agent.stop()


@pytest.mark.parametrize(
    ("fmt", "hook", "secret", "answer"),
    [
        ("v2", "dms-lb", "DMS_LB_HMAC_KEY", "HTTP 500"),  # webhook: invalid signature
        ("funkypenguin", "update-haproxy", "DMS_LB_TOKEN", "port smtp: HTTP 403"),  # mismatch
    ],
)
async def test_wrong_key_or_token_never_triggers(
    lb_host: LbHost, tmp_path: Path, fmt: str, hook: str, secret: str, answer: str
) -> None:
    wrong = tmp_path / "agent-secret"
    wrong.write_text("not-the-secret")
    settings = _fast(
        ports=[{"name": "smtp", "frontend": free_port(), "backend": 2525}],
        address={"source": "fixed", "value": "127.0.0.2"},
        targets=[{"url": lb_host.url(hook), "format": fmt, "secretFile": str(wrong)}],
    )
    before = _requests(fmt, "http_error")
    agent = start_agent(settings)
    try:
        await agent.wait(failed_times(2))
        assert lb_host.triggered(hook) == 0
        assert lb_host.config.read_text() == "" and lb_host.state() == {}
        assert lb_host.haproxy.loads() == 1
        status = agent.status()
        assert status["state"] == "degraded"
        assert agent.target()["lastDetail"].startswith(answer)
        assert _requests(fmt, "http_error") >= before + 2
        assert "not-the-secret" not in json.dumps(status)  # no secret in /status
        # Rotating the Secret (the file) heals it without a restart.
        wrong.write_text(lb_host.env[secret])
        await agent.wait(ok)
        assert lb_host.triggered(hook) == 1
        assert agent.target()["consecutiveFailures"] == 0
    finally:
        await agent.stop()


def _requests(fmt: str, result: str) -> float:
    labels = {"format": fmt, "result": result}
    value = REGISTRY.get_sample_value("dms_agent_lb_requests_total", labels)
    return value or 0.0


async def test_replayed_add_is_rejected(lb_host: LbHost) -> None:
    port = free_port("127.0.0.2")
    front = free_port()
    sent: list[tuple[bytes, dict[str, str]]] = []

    async def on_chunk(session: Any, ctx: Any, params: aiohttp.TraceRequestChunkSentParams) -> None:
        sent.append((params.chunk, {}))

    async def on_headers(
        session: Any, ctx: Any, params: aiohttp.TraceRequestHeadersSentParams
    ) -> None:
        sent.append((b"", dict(params.headers)))

    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(on_chunk)
    trace.on_request_headers_sent.append(on_headers)
    smtp = LbPort(name="smtp", frontend=front, backend=port)
    target = LbTarget(url=lb_host.v2_url, secret_file=lb_host.hmac_key)
    old = Registration("mailserver", "mail-a", None, "127.0.0.2", (smtp,))
    async with backend("old", "127.0.0.2", port), backend("new", "127.0.0.3", port):
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            client = TargetClient(target, session, SequenceSource(None))
            assert (await client.deliver(old, "add")).ok
            await wait_route(front, "old")
        body = b"".join(chunk for chunk, _ in sent)
        headers = next(h for chunk, h in sent if h)
        # The pod moved: the new pod registers its node.
        agent = start_agent(
            _fast(
                ports=[{"name": "smtp", "frontend": front, "backend": port}],
                address={"source": "env"},
                targets=[{"url": lb_host.v2_url, "secretFile": str(lb_host.hmac_key)}],
            ),
            {"HOST_IP": "127.0.0.3", "POD_NAME": "mail-b"},
        )
        try:
            await agent.wait(ok)
            await wait_route(front, "new")
            loads = lb_host.haproxy.loads()
            # Someone replays the old pod's signed add, byte for byte.
            async with aiohttp.ClientSession() as plain:
                async with plain.post(lb_host.v2_url, data=body, headers=headers) as resp:
                    answer = await resp.text()
                    assert resp.status == 500
            assert rejection(answer) is not None and "already seen" in answer
            assert (await probe(front))[0].split()[1] == "new"
            assert lb_host.haproxy.loads() == loads
            # The client reports a refusal as such (a sender whose counter went back).
            async with aiohttp.ClientSession() as session:
                stale = TargetClient(target, session, SequenceSource(None, clock=lambda: 0.0))
                outcome = await stale.deliver(old, "add")
            assert not outcome.ok and outcome.result == "rejected"
            assert (await probe(front))[0].split()[1] == "new"
        finally:
            await agent.stop()


async def test_receiver_down_then_up_while_agent_serves(
    webhook: WebhookFactory, haproxy: HAProxy, tmp_path: Path
) -> None:
    host = setup_host(webhook, haproxy, tmp_path, start=False)
    dead = f"http://127.0.0.1:{free_port()}/hooks/dms-lb"
    front = free_port()
    async with backend("pod", "127.0.0.2") as smtp:
        settings = _fast(
            ports=[{"name": "smtp", "frontend": front, "backend": smtp.port}],
            address={"source": "fixed", "value": "127.0.0.2"},
            targets=[
                {"url": host.v2_url, "secretFile": str(host.hmac_key), "name": "live"},
                {"url": dead, "secretFile": str(host.hmac_key), "name": "dead"},
            ],
        )
        agent = start_agent(settings)
        server_port = free_port()
        runner = await serve(agent.ctx.status, ServerSettings(port=server_port))
        base = f"http://127.0.0.1:{server_port}"
        try:
            await agent.wait(failed_times(3))
            async with aiohttp.ClientSession() as http:
                for _ in range(5):  # the agent keeps answering while deliveries fail
                    async with http.get(f"{base}/livez") as resp:
                        assert resp.status == 200
                async with http.get(f"{base}/status") as resp:
                    lb = (await resp.json())["components"]["lb"]
                assert lb["state"] == "degraded"
                assert lb["details"]["targets"]["live"]["lastResult"] == "connection_error"
                host.start_webhook()
                await agent.wait(lambda a: a.target("live")["lastResult"] == "ok")
                await wait_route(front, "pod")
                async with http.get(f"{base}/status") as resp:
                    lb = (await resp.json())["components"]["lb"]
            live, down = lb["details"]["targets"]["live"], lb["details"]["targets"]["dead"]
            assert live["consecutiveFailures"] == 0 and live["lastSuccessAt"] is not None
            assert down["consecutiveFailures"] >= 3  # the dead target delayed nobody
            assert lb["state"] == "degraded" and "dead" in lb["message"]
            assert REGISTRY.get_sample_value(
                "dms_agent_lb_last_success_timestamp_seconds", {"target": "live"}
            )
        finally:
            await agent.stop()
            await runner.cleanup()


async def test_node_change_moves_backend_and_stale_delete_keeps_it(lb_host: LbHost) -> None:
    port = free_port("127.0.0.2")
    front = free_port()

    def pod_settings() -> Any:
        return _fast(
            ports=[{"name": "smtp", "frontend": front, "backend": port}],
            address={"source": "env"},
            targets=[{"url": lb_host.v2_url, "secretFile": str(lb_host.hmac_key)}],
            deleteOnShutdown=True,
            shutdownGrace=5,
        )

    async with backend("node-a", "127.0.0.2", port), backend("node-b", "127.0.0.3", port):
        a = start_agent(pod_settings(), {"HOST_IP": "127.0.0.2", "POD_NAME": "mail-a"})
        b = None
        try:
            await a.wait(ok)
            await wait_route(front, "node-a")
            b = start_agent(pod_settings(), {"HOST_IP": "127.0.0.3", "POD_NAME": "mail-b"})
            await b.wait(ok)
            await wait_route(front, "node-b")
            loads = lb_host.haproxy.loads()
            await a.stop(shutdown=True)  # the old pod terminates: its delete is stale
            assert a.target()["lastAction"] == "delete" and a.target()["lastResult"] == "ok"
            assert a.status()["state"] == "disabled"
            assert lb_host.state()["services"]["mailserver"]["address"] == "127.0.0.3"
            assert (await probe(front))[0].split()[1] == "node-b"
            assert lb_host.haproxy.loads() == loads  # nothing changed: no reload
            await b.stop(shutdown=True)  # the live pod's delete does remove it
            assert lb_host.state()["services"] == {}
            assert f":{front}" not in lb_host.config.read_text()
            await _wait_refused(front)
        finally:
            for agent in (a, b):
                if agent is not None:
                    await agent.stop()


async def _wait_refused(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await probe(port)
        except OSError:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"port {port} still forwards")


async def test_delete_on_shutdown_is_bounded_by_grace(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k")
    held: list[asyncio.StreamWriter] = []  # connections accepted and never answered
    silent = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}/hooks/dms-lb"
    settings = _fast(
        ports=[{"name": "smtp", "frontend": 25}],
        address={"source": "fixed", "value": "127.0.0.2"},
        targets=[{"url": url, "secretFile": str(key), "timeout": 30}],
        deleteOnShutdown=True,
        shutdownGrace=0.5,
    )
    agent = start_agent(settings)
    try:
        await agent.wait(lambda a: bool(held))  # its registration is hanging on the target
        # the target would hold the DELETE for its 30 s timeout: the 0.5 s grace ends it first
        # (measured by bench/deadlines.py; the deadline here only stops a hang)
        async with asyncio.timeout(15):
            await agent.stop(shutdown=True)
        assert agent.status()["message"] == "deregistered"
    finally:
        silent.close()


async def test_heartbeat_resends_without_reloading(lb_host: LbHost) -> None:
    settings = _fast(
        ports=[{"name": "smtp", "frontend": free_port(), "backend": 2525}],
        address={"source": "fixed", "value": "127.0.0.2"},
        targets=[{"url": lb_host.v2_url, "secretFile": str(lb_host.hmac_key)}],
        heartbeatInterval=0.2,
    )
    agent = start_agent(settings, {"POD_NAME": "mail-a"})
    try:
        await agent.wait(lambda a: lb_host.triggered("dms-lb") >= 3)
        await agent.wait(ok)
        seqs = [lb_host.state()["senders"]["mail-a"], agent.target()["lastSequence"]]
        assert seqs[0] <= seqs[1]
        assert lb_host.haproxy.loads() == 2  # one change, one reload; heartbeats change nothing
    finally:
        await agent.stop()


async def test_waits_for_the_smtp_check(lb_host: LbHost) -> None:
    settings = _fast(
        ports=[{"name": "smtp", "frontend": free_port(), "backend": 2525}],
        address={"source": "fixed", "value": "127.0.0.2"},
        targets=[{"url": lb_host.v2_url, "secretFile": str(lb_host.hmac_key)}],
        waitForCheck="smtp",
    )
    agent = start_agent(settings)
    try:
        agent.ctx.hub.check_results.set({"smtp": {"ok": False}, "imap": {"ok": True}})
        await agent.wait(lambda a: a.status()["message"] == "waiting for check 'smtp' to pass")
        await asyncio.sleep(0.2)  # room for a wrong request (a check that none comes)
        assert lb_host.triggered("dms-lb") == 0
        agent.ctx.hub.check_results.set({"smtp": {"ok": True}})
        await agent.wait(ok)
        assert lb_host.triggered("dms-lb") == 1
    finally:
        await agent.stop()


async def test_https_is_verified_with_the_given_ca(
    webhook: WebhookFactory, haproxy: HAProxy, tmp_path: Path, test_ca: TestCA
) -> None:
    host = setup_host(webhook, haproxy, tmp_path, tls=test_ca.issue(["127.0.0.1"]))
    ports = [{"name": "smtp", "frontend": free_port(), "backend": 2525}]
    target = {"url": host.v2_url, "secretFile": str(host.hmac_key)}
    untrusted = start_agent(
        _fast(ports=ports, address={"source": "fixed", "value": "127.0.0.2"}, targets=[target])
    )
    try:  # the throwaway CA is not in the system's store: verification must fail
        await untrusted.wait(failed_times(2))
        assert untrusted.target()["lastResult"] == "tls_error"
        assert host.triggered("dms-lb") == 0
    finally:
        await untrusted.stop()
    trusted = start_agent(
        _fast(
            ports=ports,
            address={"source": "fixed", "value": "127.0.0.2"},
            targets=[{**target, "caFile": str(test_ca.ca_cert_path)}],
        )
    )
    try:
        await trusted.wait(ok)
        assert host.triggered("dms-lb") == 1
        assert trusted.target()["endpoint"].startswith("https://127.0.0.1:")
    finally:
        await trusted.stop()


async def test_a_bare_200_is_not_proof(webhook: WebhookFactory, tmp_path: Path) -> None:
    """webhook's default answer (200 and a fixed message, whether or not a command ran) must
    not count as a registration."""
    key = tmp_path / "key"
    key.write_text("k")
    hook = webhook.start(
        [{"id": "dms-lb", "execute-command": "/bin/true", "response-message": "I got it!"}]
    )
    settings = _fast(
        ports=[{"name": "smtp", "frontend": 25}],
        address={"source": "fixed", "value": "127.0.0.2"},
        targets=[{"url": hook.url("dms-lb"), "secretFile": str(key), "name": "bare"}],
    )
    agent = start_agent(settings)
    try:
        await agent.wait(failed_times(2))
        assert agent.target()["lastResult"] == "bad_response"
        assert "did it run" in agent.target()["lastDetail"]
        assert (
            REGISTRY.get_sample_value("dms_agent_lb_consecutive_failures", {"target": "bare"})
            == agent.target()["consecutiveFailures"]
        )
    finally:
        await agent.stop()


async def test_per_request_timeout(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k")
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}/hooks/dms-lb"
    settings = _fast(
        ports=[{"name": "smtp", "frontend": 25}],
        address={"source": "fixed", "value": "127.0.0.2"},
        targets=[{"url": url, "secretFile": str(key), "timeout": 0.2, "name": "silent"}],
    )
    count = REGISTRY.get_sample_value(
        "dms_agent_lb_request_duration_seconds_count", {"format": "v2"}
    )
    agent = start_agent(settings)
    try:
        await agent.wait(failed_times(2))
        assert agent.target()["lastResult"] == "timeout"
        assert agent.target()["lastDetail"] == "no answer within 0.2s"
        after = REGISTRY.get_sample_value(
            "dms_agent_lb_request_duration_seconds_count", {"format": "v2"}
        )
        assert (after or 0) >= (count or 0) + 2
    finally:
        await agent.stop()
        silent.close()
