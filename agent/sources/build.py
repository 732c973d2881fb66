"""Builds the source components and the merge from ``sources:`` in the settings.

An API source that cannot be set up (no cluster configuration, no namespace) does not stop the
agent: it becomes a component that reports the reason in /status, and the merge counts that
source as absent (nothing is published without it) until the settings change.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agent.settings import SourceSettings
from agent.sources.merge import Merge
from agent.status import State, StatusRegistry

if TYPE_CHECKING:
    from agent.app import AgentContext, Component


class Unavailable:
    """Stands for a source that could not be built; says why and waits for new settings."""

    def __init__(self, name: str, reason: str, status: StatusRegistry) -> None:
        self.name = name
        self.reason = reason
        self.entry = status.component(name)

    async def run(self) -> None:
        self.entry.set(State.FAILED, f"not started: {self.reason}")
        await asyncio.Event().wait()


def _api_source(ctx: AgentContext, spec: SourceSettings) -> tuple[Component, str]:
    from agent.kube.client import KubeConfigError, shared_client  # only API users load these
    from agent.sources.kube import KubeSource, source_key

    try:
        client = shared_client(ctx.settings.kube)
        source = KubeSource(spec, client, ctx.settings.kube, ctx.hub, ctx.status)
    except (KubeConfigError, ValueError, OSError) as exc:
        key = source_key(spec, spec.namespace or "(namespace unknown)")
        return Unavailable(f"source {key}", str(exc), ctx.status), key
    return source, source.key


def build(ctx: AgentContext) -> list[Component]:
    components: list[Component] = []
    keys: list[str] = []
    kube = ctx.settings.kube
    for spec in ctx.settings.sources:
        if spec.kind == "path":
            from agent.sources.mounted import MountedSource  # only mounted users load it

            assert spec.path is not None  # the settings model guarantees it
            mounted = MountedSource(
                spec.path, spec.secret, ctx.hub, ctx.status, kube.mounted_resync,
                kube.mounted_step_ms, kube.mounted_watcher, spec.max_document_bytes,
            )  # fmt: skip
            components.append(mounted)
            keys.append(mounted.key)
        else:
            component, key = _api_source(ctx, spec)
            components.append(component)
            keys.append(key)
    if keys:
        components.append(Merge(keys, ctx.hub, ctx.status, ctx.events))
    return components
