"""The node's address: from the downward API, the Node object, or a fixed value.

Never from an outside "what is my IP" service: that answer depends on a third party, on the
egress path (often a NAT that is not where inbound mail should go) and is unauthenticated.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Mapping
from typing import Any

import aiohttp

from agent.lb.config import LbAddress


class AddressError(Exception):
    """The address could not be determined; the message names the source, never a secret."""


def _checked(value: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise AddressError(f"{where} is not an IP address: {value.strip()[:64]!r}") from None


async def resolve_address(settings: LbAddress, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if settings.source == "fixed":
        assert settings.value is not None  # the settings model guarantees it
        return _checked(settings.value, "lb.address.value")
    if settings.source == "env":
        raw = environ.get(settings.env)
        if not raw:
            raise AddressError(f"${settings.env} is not set (downward API: fieldRef status.hostIP)")
        return _checked(raw, f"${settings.env}")
    node = settings.node_name or environ.get("NODE_NAME")
    if not node:
        raise AddressError("no node name: set lb.address.nodeName or $NODE_NAME (spec.nodeName)")
    return await node_address(settings, node)


async def node_address(settings: LbAddress, node: str) -> str:
    """Read the Node and return its first address of ``nodeAddressType``."""
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio.client.exceptions import ApiException

    configuration = client.Configuration()
    if settings.kubeconfig is not None or "KUBERNETES_SERVICE_HOST" not in os.environ:
        path = settings.kubeconfig or os.environ.get("KUBECONFIG")
        await config.load_kube_config(
            config_file=str(path) if path else None, client_configuration=configuration
        )
    else:  # reads the service account files: keep that off the event loop
        await asyncio.to_thread(config.load_incluster_config, client_configuration=configuration)
    try:
        async with client.ApiClient(configuration) as api:
            obj: Any = await client.CoreV1Api(api).read_node(node)
    except ApiException as exc:
        reason = f"HTTP {exc.status} {exc.reason}"
        raise AddressError(f"reading Node {node!r} failed: {reason}") from None
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        raise AddressError(f"reading Node {node!r} failed: {type(exc).__name__}: {exc}") from None
    for entry in (obj.status.addresses if obj.status else None) or []:
        if entry.type == settings.node_address_type:
            return _checked(entry.address, f"Node {node!r} {entry.type}")
    raise AddressError(f"Node {node!r} has no {settings.node_address_type} address")
