"""Keeps one target up to date: send on change, retry with backoff, heartbeat.

Each target has its own task, so a receiver that is down delays nobody else: not the other
targets, not the rest of the agent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from agent.hub import Observable
from agent.lb import metrics
from agent.lb.client import Outcome, TargetClient
from agent.lb.config import LbSettings
from agent.lb.payload import Action, Registration

log = logging.getLogger("dms_agent.lb")


@dataclass(slots=True)
class TargetState:
    """What /status shows for one target."""

    format: str
    endpoint: str  # scheme://host:port/path — no query, no credentials
    last_result: str | None = None
    last_detail: str = ""
    last_action: str | None = None
    last_success_at: float | None = None  # delivered, confirmed or not
    last_sequence: int | None = None
    consecutive_failures: int = 0
    warning: str | None = None
    confirmed: bool | None = None  # did the last delivery's answer prove the hook ran?

    def as_dict(self) -> dict[str, Any]:
        return {
            **({"warning": self.warning} if self.warning else {}),
            "format": self.format,
            "endpoint": self.endpoint,
            "lastResult": self.last_result,
            "lastDetail": self.last_detail,
            "lastAction": self.last_action,
            "lastSuccessAt": self.last_success_at,
            "lastSequence": self.last_sequence,
            "consecutiveFailures": self.consecutive_failures,
            "confirmed": self.confirmed,
        }


def backoff_delay(settings: LbSettings, attempt: int) -> float:
    base = min(settings.retry.maximum, settings.retry.initial * 2.0**attempt)
    return base * (0.5 + random.random() / 2)  # jitter: targets and pods don't retry in step


def heartbeat_delay(settings: LbSettings) -> float:
    spread = settings.heartbeat_interval * settings.heartbeat_jitter
    return settings.heartbeat_interval + random.uniform(-spread, spread)


class TargetSender:
    def __init__(
        self,
        client: TargetClient,
        settings: LbSettings,
        desired: Observable[Registration | None],
        state: TargetState,
        on_change: Any,
    ) -> None:
        self.client = client
        self.settings = settings
        self.desired = desired
        self.state = state
        self._on_change = on_change
        self.label = client.target.label

    async def run(self) -> None:
        seen, _ = await self.desired.wait_newer(0)  # the first registration
        while True:
            seen = await self._deliver_until_ok()
            try:
                async with asyncio.timeout(heartbeat_delay(self.settings)):
                    seen, _ = await self.desired.wait_newer(seen)
            except TimeoutError:
                pass  # heartbeat: the receiver may have lost its state; say it again

    async def _deliver_until_ok(self) -> int:
        attempt = 0
        while True:
            seen, reg = self.desired.version, self.desired.value
            assert reg is not None
            outcome = await self.client.deliver(reg, "add")
            self.record(outcome, "add")
            if outcome.ok:
                return seen
            delay = backoff_delay(self.settings, attempt)
            attempt += 1
            try:
                async with asyncio.timeout(delay):
                    await self.desired.wait_newer(seen)
                attempt = 0  # something changed: send the news at once
            except TimeoutError:
                pass

    async def deregister(self, reg: Registration, deadline: float) -> Outcome | None:
        """``delete`` with retries, never past ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        attempt = 0
        outcome: Outcome | None = None
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return outcome
            try:
                async with asyncio.timeout(left):
                    outcome = await self.client.deliver(reg, "delete")
            except TimeoutError:
                return outcome
            self.record(outcome, "delete")
            if outcome.ok:
                return outcome
            await asyncio.sleep(min(backoff_delay(self.settings, attempt), left))
            attempt += 1

    def record(self, outcome: Outcome, action: Action) -> None:
        st = self.state
        st.last_result, st.last_detail, st.last_action = outcome.result, outcome.detail, action
        if outcome.sequence is not None:
            st.last_sequence = outcome.sequence
        if outcome.ok:
            if st.consecutive_failures:
                log.info("lb target %s: %s delivered again", self.label, action)
            st.consecutive_failures = 0
            st.last_success_at = time.time()
            st.confirmed = outcome.confirmed
            metrics.LAST_SUCCESS.labels(self.label).set(st.last_success_at)
            metrics.CONFIRMED.labels(self.label).set(1 if outcome.confirmed else 0)
        else:
            st.consecutive_failures += 1
            log.warning(
                "lb target %s: %s failed (%s, %d in a row): %s",
                self.label,
                action,
                outcome.result,
                st.consecutive_failures,
                outcome.detail,
            )
        metrics.CONSECUTIVE_FAILURES.labels(self.label).set(st.consecutive_failures)
        self._on_change()
