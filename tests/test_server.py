"""The endpoints read only the status registry and keep the design's health semantics."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from agent.server import make_app
from agent.status import State, StatusRegistry, Verdict

Client = Any  # pytest-aiohttp's aiohttp_client fixture


async def client_for(aiohttp_client: Client, registry: StatusRegistry) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(make_app(registry))
    return client


async def test_livez_answers_even_when_components_fail(aiohttp_client: Client) -> None:
    reg = StatusRegistry()
    reg.component("reconcile").set(State.FAILED, "bad ConfigMap")
    client = await client_for(aiohttp_client, reg)
    resp = await client.get("/livez")
    assert resp.status == 200


async def test_readyz_follows_settings_loaded_only(aiohttp_client: Client) -> None:
    reg = StatusRegistry()
    client = await client_for(aiohttp_client, reg)
    assert (await client.get("/readyz")).status == 503
    reg.settings_loaded = True
    reg.component("reconcile").set(State.FAILED, "apply failed")
    reg.set_verdict(Verdict.UNHEALTHY, ["smtp: connection refused"])
    assert (await client.get("/readyz")).status == 200


async def test_healthz_unknown_is_not_unhealthy(aiohttp_client: Client) -> None:
    client = await client_for(aiohttp_client, StatusRegistry())
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.text()).startswith("unknown")


async def test_healthz_unhealthy_with_reasons(aiohttp_client: Client) -> None:
    reg = StatusRegistry()
    reg.set_verdict(Verdict.UNHEALTHY, ["clamd: timeout after 2s"], {"clamd": {"ok": False}})
    client = await client_for(aiohttp_client, reg)
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert "- clamd: timeout after 2s" in await resp.text()
    resp = await client.get("/healthz", headers={"Accept": "application/json"})
    body = await resp.json()
    assert resp.status == 503
    assert body["verdict"] == "unhealthy"
    assert body["reasons"] == ["clamd: timeout after 2s"]


async def test_healthz_healthy(aiohttp_client: Client) -> None:
    reg = StatusRegistry()
    reg.set_verdict(Verdict.HEALTHY, [])
    client = await client_for(aiohttp_client, reg)
    assert (await client.get("/healthz")).status == 200


async def test_status_is_json_of_the_registry(aiohttp_client: Client) -> None:
    reg = StatusRegistry()
    reg.component("dns").set(State.DEGRADED, "2 domains failing", failing=2)
    client = await client_for(aiohttp_client, reg)
    body = await (await client.get("/status")).json()
    assert body["components"]["dns"]["state"] == "degraded"
    assert body["components"]["dns"]["details"] == {"failing": 2}
    assert body["health"]["verdict"] == "unknown"


async def test_metrics_exposes_build_info(aiohttp_client: Client) -> None:
    client = await client_for(aiohttp_client, StatusRegistry())
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert "dms_agent_build_info{" in text
    assert "dms_agent_mailserver_healthy" in text


async def test_metrics_are_rendered_at_most_once_per_max_age(aiohttp_client: Client) -> None:
    import asyncio

    from aiohttp import web

    from agent.metrics import SETTINGS_RELOADS
    from agent.server import metrics_handler

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(max_age=0.2))
    client = await aiohttp_client(app)
    first = await (await client.get("/metrics")).text()
    SETTINGS_RELOADS.labels("applied").inc()
    assert await (await client.get("/metrics")).text() == first  # cached
    async with asyncio.timeout(10):  # re-rendered once the 0.2 s cache expires
        while await (await client.get("/metrics")).text() == first:
            await asyncio.sleep(0.05)
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).endswith("# EOF\n")
