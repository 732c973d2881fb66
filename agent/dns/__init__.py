"""dns capability.

``build`` is here, light, so a disabled capability imports none of its modules at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.app import AgentContext, Component


def build(ctx: AgentContext) -> list[Component]:
    if not ctx.settings.dns.enabled:
        # imported here: the DNS worker process imports this package and never needs it
        from agent.status import State

        ctx.status.component("dns").set(State.DISABLED, "dns.enabled is false")
        return []
    from agent.dns.component import build as build_checker

    return build_checker(ctx)
