"""The status registry: components report here; the HTTP endpoints only read from here.

Every value stored must be JSON-safe and free of secrets: ``/status`` prints it as is.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.metrics import HEALTH_VERDICT


class State(StrEnum):
    STARTING = "starting"
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"
    DISABLED = "disabled"


class Verdict(StrEnum):
    """The mailserver's health as judged by the checks (see design: Health)."""

    UNKNOWN = "unknown"  # not yet checked: never unhealthy
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


_VERDICT_VALUE = {Verdict.UNKNOWN: -1, Verdict.HEALTHY: 1, Verdict.UNHEALTHY: 0}

HISTORY_LENGTH = 48  # results kept per check: enough for a glance at the last hours, bounded


@dataclass(slots=True)
class ComponentStatus:
    name: str
    state: State = State.STARTING
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    updated_at: float = field(default_factory=time.time)
    restarts: int = 0
    last_crash: str | None = None

    def set(self, state: State, message: str = "", **details: Any) -> None:
        self.state = state
        self.message = message
        if details:
            self.details.update(details)
        self.updated_at = time.time()

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "message": self.message,
            "details": self.details,
            "updatedAt": self.updated_at,
            "restarts": self.restarts,
            "lastCrash": self.last_crash,
        }


@dataclass(slots=True)
class HealthVerdict:
    verdict: Verdict = Verdict.UNKNOWN
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    updated_at: float = field(default_factory=time.time)


class StatusRegistry:
    """Process-wide, loop-confined (no locks needed: one asyncio thread mutates it)."""

    def __init__(self) -> None:
        self._components: dict[str, ComponentStatus] = {}
        self.health = HealthVerdict()
        self.settings_loaded = False
        self.started_at = time.time()
        # per check, its last results as (unix time, passed): the status page draws them
        self.check_history: dict[str, deque[tuple[float, bool]]] = {}

    def component(self, name: str) -> ComponentStatus:
        """Get or create the status entry for ``name``."""
        entry = self._components.get(name)
        if entry is None:
            entry = self._components[name] = ComponentStatus(name)
        return entry

    def set_verdict(
        self, verdict: Verdict, reasons: list[str], checks: dict[str, Any] | None = None
    ) -> None:
        self.health = HealthVerdict(verdict, list(reasons), dict(checks or {}), time.time())
        HEALTH_VERDICT.set(_VERDICT_VALUE[verdict])
        self._remember(self.health.checks)

    def _remember(self, checks: dict[str, Any]) -> None:
        """Append each check's newest result once: the verdict is republished whenever any
        check reports, so a result is new only when its ``lastChecked`` moved."""
        for name in set(self.check_history) - set(checks):
            del self.check_history[name]  # a check that left the settings
        for name, summary in checks.items():
            checked, ok = summary.get("lastChecked"), summary.get("lastOk")
            if checked is None or ok is None:
                continue
            history = self.check_history.setdefault(name, deque(maxlen=HISTORY_LENGTH))
            if not history or history[-1][0] != checked:
                history.append((checked, bool(ok)))

    def snapshot(self) -> dict[str, Any]:
        return {
            "startedAt": self.started_at,
            "settingsLoaded": self.settings_loaded,
            "health": {
                "verdict": self.health.verdict.value,
                "reasons": self.health.reasons,
                "checks": self.health.checks,
                "updatedAt": self.health.updated_at,
                "history": {n: [list(r) for r in h] for n, h in self.check_history.items()},
            },
            "components": {n: c.as_dict() for n, c in sorted(self._components.items())},
        }
