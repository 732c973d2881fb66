"""Kubernetes Events for what the agent did (Applied, ApplyFailed, DeletionsRefused, Invalid,
Drift …), on the watched state object (else on the agent's pod).

Aggregated like client-go's correlator: a repeat of the same reason+message+type within
``kube.eventsAggregateWindow`` patches ``count`` and ``lastTimestamp`` of the first Event
instead of creating another. Rate-limited by a token bucket (``eventsBurst`` at once, refilled
at ``eventsPerMinute``); what the bucket refuses is logged and counted, never queued forever.
While the API server is unreachable (or answers 5xx/429) Events wait, in order, and are retried
with backoff; at most ``MAX_QUEUED`` wait, the oldest dropped first.
Every event is logged too. Callers never put a secret in a message; the sink also cuts messages
to the API's 1 KiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from prometheus_client import Counter

from agent.events import EventSink, EventType, LogEventSink
from agent.kube.client import KubeApiError, KubeClient, KubeConfigError, shared_client
from agent.kube.config import KubeSettings
from agent.metrics import REGISTRY
from agent.settings import Settings

log = logging.getLogger("dms_agent.kube.events")

MAX_MESSAGE = 1024
MAX_QUEUED = 100  # Events waiting while the API server is unreachable; older ones are dropped
RETRY_FIRST = 0.5  # seconds before the first retry of an Event the API could not take
RETRY_MAX = 30.0

KUBE_EVENTS = Counter(
    "dms_agent_kube_events_total",
    "Kubernetes Events, by result: created, aggregated (count patched), dropped (rate limit, or "
    "too many waiting for the API), retried (API unreachable or busy), failed (API refusal).",
    ["result"],
    registry=REGISTRY,
)


@dataclass(slots=True)
class _Sent:
    name: str
    count: int
    first: float


class TokenBucket:
    def __init__(self, burst: int, per_minute: float) -> None:
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.rate = per_minute / 60.0
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _retryable(exc: Exception) -> bool:
    """No answer, or an answer saying "later" (5xx, 429); a refusal (403, 422) is final."""
    if isinstance(exc, KubeApiError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, (OSError, asyncio.TimeoutError, aiohttp.ClientError))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeEventSink:
    def __init__(
        self,
        client: KubeClient,
        involved: dict[str, str],
        settings: KubeSettings,
        instance: str = "",
        log_sink: EventSink | None = None,
    ) -> None:
        self.client = client
        self.involved = involved  # ObjectReference: apiVersion, kind, namespace, name
        self.namespace = involved["namespace"]
        self.settings = settings
        self.instance = instance
        self.log_sink = log_sink or LogEventSink()
        self.bucket = TokenBucket(settings.events_burst, settings.events_per_minute)
        self.sent: dict[tuple[str, str, str], _Sent] = {}
        self.queue: deque[tuple[str, str, EventType]] = deque()
        self._pump: asyncio.Task[None] | None = None

    def emit(self, reason: str, message: str, type: EventType = "Normal") -> None:
        self.log_sink.emit(reason, message, type)
        if len(self.queue) >= MAX_QUEUED:  # the API has been away long: the oldest goes
            del self.queue[1]  # [0] may be on its way
            KUBE_EVENTS.labels("dropped").inc()
        self.queue.append((reason, message[:MAX_MESSAGE], type))
        if self._pump is None or self._pump.done():
            try:
                self._pump = asyncio.get_running_loop().create_task(self._drain())
            except RuntimeError:  # no loop (a CLI one-shot): the log line is the event
                self.queue.clear()

    async def flush(self) -> None:
        """Wait until every queued event was sent (for tests and shutdown)."""
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await self._pump

    async def _drain(self) -> None:
        failures = 0
        while self.queue:
            reason, message, type_ = self.queue[0]
            try:
                await self._send(reason, message, type_)
            except Exception as exc:  # an Event is never worth a crash
                if _retryable(exc):
                    # The API server is down or overloaded (a restart, an upgrade): what
                    # happened meanwhile is what an operator looks for later, so keep it.
                    failures += 1
                    KUBE_EVENTS.labels("retried").inc()
                    if failures == 1:
                        log.warning("could not send Event %s, will retry: %s", reason, exc)
                    await asyncio.sleep(min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1)))
                    continue
                KUBE_EVENTS.labels("failed").inc()
                log.warning("could not send Event %s: %s", reason, exc)
            if self.queue:
                self.queue.popleft()
            failures = 0

    async def _send(self, reason: str, message: str, type_: EventType) -> None:
        key = (reason, message, type_)
        now = time.monotonic()
        window = self.settings.events_aggregate_window
        for old in [k for k, v in self.sent.items() if now - v.first >= window]:
            del self.sent[old]  # past the window: a repeat will be a new Event
        previous = self.sent.get(key)
        if not self.bucket.take():
            KUBE_EVENTS.labels("dropped").inc()
            log.info("Event %s not sent: rate limit", reason)
            return
        path = f"/api/v1/namespaces/{self.namespace}/events"
        if previous is not None:
            previous.count += 1
            patch = {"count": previous.count, "lastTimestamp": _now()}
            await self.client.request(
                "PATCH", f"{path}/{previous.name}", body=patch,
                content_type="application/strategic-merge-patch+json",
            )  # fmt: skip
            KUBE_EVENTS.labels("aggregated").inc()
            return
        name = f"{self.involved['name']}.{secrets.token_hex(8)}"
        await self.client.request("POST", path, body=self._event(name, reason, message, type_))
        self.sent[key] = _Sent(name, 1, now)
        KUBE_EVENTS.labels("created").inc()

    def _event(self, name: str, reason: str, message: str, type_: EventType) -> dict[str, Any]:
        stamp = _now()
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": self.namespace},
            "involvedObject": dict(self.involved),
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "dms-agent"},
            "reportingComponent": "dms-agent",
            "reportingInstance": self.instance,
        }


def _involved(settings: Settings, default_ns: str | None) -> dict[str, str] | None:
    """The first named ConfigMap source, else the first named Secret, else this pod."""
    for kind, api_kind in (("configmap", "ConfigMap"), ("secret", "Secret")):
        for src in settings.sources:
            ns = src.namespace or default_ns
            if src.kind == kind and src.name and ns:
                return {"apiVersion": "v1", "kind": api_kind, "namespace": ns, "name": src.name}
    pod = os.environ.get("POD_NAME")
    ns = os.environ.get("POD_NAMESPACE") or default_ns
    if pod and ns:
        return {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": pod}
    return None


def uses_kube(settings: Settings) -> bool:
    return (
        settings.kube.enabled
        or settings.dms.executor.kind == "kube"
        or any(s.kind in ("configmap", "secret") for s in settings.sources)
    )


def make_event_sink(settings: Settings) -> EventSink:
    """The Kubernetes sink when the API is in use and reachable by config, else the log sink."""
    if not (settings.kube.events and uses_kube(settings)):
        return LogEventSink()
    try:
        client = shared_client(settings.kube)
    except KubeConfigError as exc:
        log.warning("Kubernetes Events off: %s", exc)
        return LogEventSink()
    involved = _involved(settings, client.namespace)
    if involved is None:
        log.warning("Kubernetes Events off: no named source and no POD_NAME/POD_NAMESPACE")
        return LogEventSink()
    return KubeEventSink(client, involved, settings.kube, os.environ.get("POD_NAME", ""))
