"""Mail flow without a second exporter: Postfix's queue and the mail log, as metrics.

Modules: ``config`` (the ``mailflow:`` settings), ``logparse`` (a line -> what it counts),
``follower`` (tail -F with a saved position), ``queue`` (``postqueue -j``), ``metrics`` (one
collector, with postfix_exporter's names beside the agent's own), ``component``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.app import AgentContext, Component


def build(ctx: AgentContext) -> list[Component]:
    if not ctx.settings.mailflow.enabled:
        return []
    from agent.mailflow.component import MailflowComponent

    return [MailflowComponent(ctx)]
