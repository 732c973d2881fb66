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
from urllib.parse import quote

import aiohttp

from agent.kube.client import KubeApiError, KubeConfigError, shared_client
from agent.kube.config import KubeSettings
from agent.lb.config import LbAddress


class AddressError(Exception):
    """The address could not be determined; the message names the source, never a secret."""


def _checked(value: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise AddressError(f"{where} is not an IP address: {value.strip()[:64]!r}") from None


async def resolve_address(
    settings: LbAddress, kube: KubeSettings, environ: Mapping[str, str] | None = None
) -> str:
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
    return await node_address(settings, kube, node)


async def node_address(settings: LbAddress, kube: KubeSettings, node: str) -> str:
    """Read the Node and return its first address of ``nodeAddressType``."""
    try:
        client = await asyncio.to_thread(shared_client, kube)  # first call reads files
        obj: Any = await client.request("GET", f"/api/v1/nodes/{quote(node, safe='')}")
    except KubeConfigError as exc:
        raise AddressError(str(exc)) from None
    except KubeApiError as exc:
        raise AddressError(
            f"reading Node {node!r} failed: HTTP {exc.status} {exc.reason}"
        ) from None
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise AddressError(f"reading Node {node!r} failed: {type(exc).__name__}: {exc}") from None
    addresses = (obj.get("status") or {}).get("addresses") or [] if isinstance(obj, dict) else []
    for entry in addresses:
        if isinstance(entry, dict) and entry.get("type") == settings.node_address_type:
            return _checked(str(entry.get("address", "")), f"Node {node!r} {entry['type']}")
    raise AddressError(f"Node {node!r} has no {settings.node_address_type} address")
