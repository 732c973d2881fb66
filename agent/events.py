"""Events about what the agent did: logged always, and sent to Kubernetes when configured.

Never put a secret in ``message``. The Kubernetes sink (agent/kube) aggregates and rate-limits.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

EventType = Literal["Normal", "Warning"]

log = logging.getLogger("dms_agent.events")


class EventSink(Protocol):
    def emit(self, reason: str, message: str, type: EventType = "Normal") -> None: ...


class LogEventSink:
    """The default sink: one log line per event."""

    def emit(self, reason: str, message: str, type: EventType = "Normal") -> None:
        level = logging.WARNING if type == "Warning" else logging.INFO
        log.log(level, "event %s: %s", reason, message, extra={"reason": reason})
