"""dkim capability.

``build`` is here, light, so a disabled capability imports none of its modules at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.app import AgentContext, Component


def build(ctx: AgentContext) -> list[Component]:
    if not ctx.settings.dkim.enabled:
        return []
    from agent.dkim.manager import build as build_manager

    return list(build_manager(ctx))
