"""Node address through the Kubernetes API (the test API server of tests/kube_api), and the
address sources' errors."""

from __future__ import annotations

import pytest

from agent.kube.client import shared_client
from agent.kube.config import KubeSettings
from agent.lb.address import AddressError, resolve_address
from agent.lb.config import LbAddress
from agent.settings import Settings
from tests.kube_api.fixtures import KubeApi
from tests.lbkit import LbHost, backend, ok, start_agent, wait_route
from tests.rig.proc import free_port


async def test_node_external_ip_and_its_change_move_haproxy(
    lb_host: LbHost, kube_api: KubeApi
) -> None:
    kube_api.server.add_node("node-1", [("InternalIP", "10.9.9.9"), ("ExternalIP", "127.0.0.2")])
    port, front = free_port("127.0.0.2"), free_port()
    settings = Settings.model_validate(
        {
            "kube": {"kubeconfig": str(kube_api.kubeconfig)},
            "lb": {
                "enabled": True,
                "ports": [{"name": "smtp", "frontend": front, "backend": port}],
                "address": {"source": "node", "refreshInterval": 0.1},
                "targets": [{"url": lb_host.v2_url, "secretFile": str(lb_host.hmac_key)}],
                "retry": {"initial": 0.05, "maximum": 0.2},
            },
        }
    )
    async with backend("old-ip", "127.0.0.2", port), backend("new-ip", "127.0.0.3", port):
        agent = start_agent(settings, {"NODE_NAME": "node-1", "POD_NAME": "mail-0"})
        try:
            await agent.wait(ok)
            assert agent.status()["details"]["address"] == "127.0.0.2"
            await wait_route(front, "old-ip")
            # The node's ExternalIP changes: the agent notices and HAProxy follows.
            kube_api.server.add_node("node-1", [("ExternalIP", "127.0.0.3")])
            await agent.wait(lambda a: a.status()["details"]["address"] == "127.0.0.3")
            await agent.wait(ok)
            await wait_route(front, "new-ip")
            assert lb_host.state()["services"]["mailserver"]["address"] == "127.0.0.3"
        finally:
            await agent.stop()
            await shared_client(settings.kube).close()


async def test_node_source_errors_are_clear(kube_api: KubeApi) -> None:
    kube = KubeSettings(kubeconfig=kube_api.kubeconfig)
    kube_api.server.add_node("only-internal", [("InternalIP", "10.0.0.1")])
    node = LbAddress(source="node")
    try:
        await _node_errors(node, kube)
    finally:
        await shared_client(kube).close()


async def _node_errors(node: LbAddress, kube: KubeSettings) -> None:
    with pytest.raises(AddressError, match="no node name"):
        await resolve_address(node, kube, {})
    with pytest.raises(AddressError, match="has no ExternalIP"):
        await resolve_address(node, kube, {"NODE_NAME": "only-internal"})
    with pytest.raises(AddressError, match="HTTP 404"):
        await resolve_address(node, kube, {"NODE_NAME": "missing"})
    internal = LbAddress(source="node", nodeAddressType="InternalIP")
    assert await resolve_address(internal, kube, {"NODE_NAME": "only-internal"}) == "10.0.0.1"


async def test_env_and_fixed_sources() -> None:
    kube = KubeSettings()
    env = LbAddress(source="env")
    assert await resolve_address(env, kube, {"HOST_IP": " 192.0.2.7\n"}) == "192.0.2.7"
    with pytest.raises(AddressError, match=r"\$HOST_IP is not set"):
        await resolve_address(env, kube, {})
    with pytest.raises(AddressError, match="not an IP address"):
        await resolve_address(env, kube, {"HOST_IP": "mail.example.com"})
    fixed = LbAddress(source="fixed", value="2001:db8::1")
    assert await resolve_address(fixed, kube, {}) == "2001:db8::1"
