"""Builds the source components and the merge from ``sources:`` in the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.sources.merge import Merge
from agent.sources.mounted import MountedSource

if TYPE_CHECKING:
    from agent.app import AgentContext, Component


def build(ctx: AgentContext) -> list[Component]:
    components: list[Component] = []
    keys: list[str] = []
    for spec in ctx.settings.sources:
        if spec.kind == "path":
            assert spec.path is not None  # the settings model guarantees it
            mounted = MountedSource(spec.path, spec.secret, ctx.hub, ctx.status)
            components.append(mounted)
            keys.append(mounted.key)
        else:
            from agent.kube.client import shared_client  # only API users load the client
            from agent.sources.kube import KubeSource

            client = shared_client(ctx.settings.kube)
            source = KubeSource(spec, client, ctx.settings.kube, ctx.hub, ctx.status)
            components.append(source)
            keys.append(source.key)
    if keys:
        components.append(Merge(keys, ctx.hub, ctx.status, ctx.events))
    return components
