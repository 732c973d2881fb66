"""Poor-man's-LB webhook client: tells an external HAProxy host where the mailserver runs.

Modules: ``config`` (the ``lb:`` settings), ``address`` (node address sources), ``payload``
(wire formats, signatures, proofs), ``sequence`` (persistent sequence numbers), ``client``
(one delivery attempt), ``sender`` (retry, backoff, heartbeat per target), ``component``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.app import AgentContext, Component


def build(ctx: AgentContext) -> list[Component]:
    if not ctx.settings.lb.enabled:
        return []
    from agent.lb.component import LbComponent

    return [LbComponent(ctx)]
