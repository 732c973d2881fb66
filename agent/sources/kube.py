"""API source: named ConfigMaps/Secrets or a label selector, by list then watch.

The loop follows the API's documented contract for efficient change detection:
list (collection resourceVersion) -> watch from it -> on a clean end
(``timeoutSeconds``), resume from the last version seen (event or bookmark) -> on 410
Expired/Gone, list again -> on an API error Status, list again after a backoff -> on
connection errors, payload errors or timeouts, resume from the last version after a backoff.
A watch that sent no line for ``kube.stallTimeout`` is restarted (and says so in /status and a
metric): watches are known to stop silently. The server ends every watch after
``kube.watchTimeout`` (below stallTimeout), so a quiet healthy watch is never taken for a stalled
one even where bookmarks come only every few minutes. Bookmarks are asked for (by default)
only once a re-watch met 410: where the server's history moves past a quiet source's version,
they keep it fresh; elsewhere each would only wake the agent. resourceVersion is never
compared or computed with, as the API asks.

A deleted object (or a selector matching nothing) makes the source *absent*: reported, never
an empty state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import time
from typing import Any

import aiohttp

from agent.hub import Hub
from agent.kube.client import KubeApiError, KubeClient
from agent.kube.config import KubeSettings
from agent.settings import SourceSettings
from agent.sources.base import Publisher
from agent.sources.document import SourceDocument, decode_document
from agent.sources.metrics import EVENTS_RECEIVED, LAST_BOOKMARK, WATCH_RESTARTS
from agent.status import ComponentStatus, State, StatusRegistry

log = logging.getLogger("dms_agent.sources.kube")

MAX_LINE = 8 * 1024 * 1024  # one watch event: a 1 MiB Secret grows by base64 and JSON
STEADY_ROUND = 10.0  # seconds: a round that stood this long resets the backoff


class WatchExpired(Exception):
    """410: the version is older than the server's history; list again."""


class WatchStalled(Exception):
    """No event and no bookmark for too long."""


def source_key(spec: SourceSettings, namespace: str) -> str:
    what = spec.name if spec.name else f"selector({spec.selector})"
    return f"{spec.kind}/{namespace}/{what}"


def documents_of(kind: str, obj: dict[str, Any]) -> tuple[SourceDocument, ...]:
    """One document per key; Secret values are base64-decoded and marked secret."""
    meta = obj.get("metadata") or {}
    where = f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')}"
    docs = []
    secret = kind == "secret"
    data: dict[str, str] = obj.get("data") or {}
    binary: dict[str, str] = {} if secret else (obj.get("binaryData") or {})
    for key in sorted({*data, *binary}):
        if secret or key in binary:
            raw = data.get(key) if secret else binary[key]
            try:
                raw_bytes = base64.b64decode(raw or "", validate=True)
            except binascii.Error:
                problem = "not valid base64 (as the API server stores it)"
                docs.append(SourceDocument(f"{where}[{key}]", key, "", secret, problem))
                continue
            docs.append(decode_document(f"{where}[{key}]", key, raw_bytes, secret))
        else:
            docs.append(SourceDocument(f"{where}[{key}]", key, data[key], secret))
    return tuple(docs)


class KubeSource:
    def __init__(
        self,
        spec: SourceSettings,
        client: KubeClient,
        settings: KubeSettings,
        hub: Hub,
        status: StatusRegistry,
    ) -> None:
        namespace = spec.namespace or client.namespace
        if not namespace:
            raise ValueError(f"source {spec.kind} {spec.name or spec.selector}: no namespace")
        self.spec = spec
        self.client = client
        self.settings = settings
        self.key = source_key(spec, namespace)
        self.name = f"source {self.key}"
        self.publisher = Publisher(self.key, hub)
        self.entry: ComponentStatus = status.component(self.name)
        plural = "configmaps" if spec.kind == "configmap" else "secrets"
        self.path = f"/api/v1/namespaces/{namespace}/{plural}"
        self.selectors: list[tuple[str, str]] = []
        if spec.name:
            self.selectors.append(("fieldSelector", f"metadata.name={spec.name}"))
        if spec.selector:
            self.selectors.append(("labelSelector", spec.selector))
        self.objects: dict[str, tuple[SourceDocument, ...]] = {}
        self.rv: str | None = None
        self.restarts: dict[str, int] = {}
        self.progressed = False
        self.refused = False
        self.unreachable = False  # the last round could not connect (its warning was logged)
        # ask for bookmarks? ("auto": from the first re-watch refused with 410 Expired on)
        self.bookmarks = settings.watch_bookmarks == "always"
        self.watching = False  # a watch is being asked for (a 410 then is the re-watch's)
        if settings.stall_timeout <= settings.watch_timeout:
            log.warning(
                "%s: kube.stallTimeout (%ss) is not above kube.watchTimeout (%ss): a quiet "
                "watch may be restarted as stalled unless bookmarks come more often",
                self.key,
                settings.stall_timeout,
                settings.watch_timeout,
            )

    # ---- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            self.progressed = False  # set by every watch line: a round that got nothing backs off
            self.refused = False  # set when the server could not even be connected to
            started = loop.time()
            reason = await self._one_round()
            self.unreachable = self.refused  # until a connection is made again
            lasted = loop.time() - started
            if lasted >= STEADY_ROUND:
                failures = 0  # a round that stood this long ended the trouble before it
            # the server ending a quiet watch on time (timeoutSeconds) is a healthy round too:
            # counting it as a failure would grow the next real failure's backoff hour by hour
            on_time = reason == "end" and (self.progressed or lasted >= 1.0)
            failures = 0 if self.progressed or on_time else failures + 1
            self.restarts[reason] = self.restarts.get(reason, 0) + 1
            WATCH_RESTARTS.labels(self.key, reason).inc()
            if on_time:
                continue  # resume at once from the last version seen
            delay = self._delay(reason, failures)
            state = State.OK if reason == "expired" else State.DEGRADED
            self.entry.set(
                state,
                f"watch restarted ({reason}); retry in {delay:.1f}s",
                restarts=dict(self.restarts),
            )
            if delay:
                await asyncio.sleep(delay)

    def _delay(self, reason: str, failures: int) -> float:
        """How long to wait before the next round."""
        if reason == "expired" and failures <= 1:
            return 0.0  # the first 410 lists again at once
        if reason == "stalled":
            return 0.0  # a stall took stallTimeout to show: re-watching at once cannot hammer
        if self.refused:
            # nothing listens (an API server restarting): a connection attempt costs it
            # nothing, and a grown backoff would only delay noticing that it is back
            return min(self._backoff(failures), self.settings.backoff_initial)
        return self._backoff(failures)  # a storm of 410s, errors or empty ends backs off

    def _backoff(self, failures: int) -> float:
        base = min(self.settings.backoff_max, self.settings.backoff_initial * 2 ** max(0, failures))
        return float(base * (0.5 + random.random() / 2))

    async def _one_round(self) -> str:
        """List if needed, then watch. Returns why the watch stopped."""
        self.watching = False
        try:
            if self.rv is None:
                await self._list()
            self.watching = True
            await self._watch()
            return "end"
        except WatchExpired:
            log.info("%s: resourceVersion expired (410); listing again", self.key)
            self.rv = None
            self._version_expired()
            return "expired"
        except (WatchStalled, aiohttp.SocketTimeoutError):  # silent before or after the head
            log.warning(
                "%s: no event nor bookmark for %.0fs; restarting the watch",
                self.key,
                self.settings.stall_timeout,
            )
            return "stalled"
        except KubeApiError as exc:
            refused = exc.status in (401, 403)  # who asks, not which version: resume later
            # Any other error Status (an answer or an in-stream ERROR event) may come again for
            # the same version: a real API server without a watch cache answers 500
            # "PrevKv=nil" to every watch from a version whose next change lost its previous
            # value to compaction. So list again, as client-go's reflector does.
            log.warning("%s: API error: %s%s", self.key, exc, "" if refused else "; listing again")
            self.entry.set(State.DEGRADED, f"API error: {exc}")
            if exc.status == 410:  # an answer, not an ERROR event (which is WatchExpired)
                self._version_expired()
            if not refused:
                self.rv = None
            return "unauthorized" if refused else "error"
        except aiohttp.ClientConnectorError as exc:
            # retried every backoffInitial: said once per outage, not every half second
            level = logging.DEBUG if self.unreachable else logging.WARNING
            log.log(level, "%s: API server unreachable: %s", self.key, exc)
            self.refused = self.unreachable = True
            return "error"
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
            # ClientPayloadError (a reset stream), connection refused, a broken line ...
            log.warning("%s: watch interrupted: %s: %s", self.key, type(exc).__name__, exc)
            return "error"

    def _version_expired(self) -> None:
        """A 410. In "auto" mode, a watch's own version expiring means the server's history
        moves on faster than this source changes: from now on bookmarks keep it fresh."""
        if self.watching and self.settings.watch_bookmarks == "auto" and not self.bookmarks:
            log.info("%s: asking for bookmarks from now on (the watch's version expired)", self.key)
            self.bookmarks = True

    async def _list(self) -> None:
        body = await self.client.request("GET", self.path, self.selectors)
        self.objects = {
            item["metadata"]["name"]: documents_of(self.spec.kind, item)
            for item in body.get("items") or []
        }
        self.rv = body["metadata"]["resourceVersion"]
        self.publisher.mark_event()
        self._publish()

    async def _watch(self) -> None:
        query = [
            *self.selectors,
            ("watch", "true"),
            *([("allowWatchBookmarks", "true")] if self.bookmarks else []),
            ("timeoutSeconds", str(self.settings.watch_timeout)),
            ("resourceVersion", self.rv or ""),
        ]
        stall = self.settings.stall_timeout
        async with self.client.stream(self.path, query, read_timeout=stall) as resp:
            self._report()
            while True:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation
                    # that arrives as the line does, and the source would never stop
                    async with asyncio.timeout(self.settings.stall_timeout):
                        line = await resp.content.readline(max_line_length=MAX_LINE)
                except TimeoutError:
                    raise WatchStalled from None
                if not line:
                    return
                if line.strip():
                    self._handle(json.loads(line))
                    self.progressed = True

    def _handle(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        EVENTS_RECEIVED.labels(self.key, str(kind)).inc()
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise WatchExpired
            raise KubeApiError(
                int(obj.get("code") or 500), str(obj.get("reason")), str(obj.get("message"))
            )
        meta = obj.get("metadata") or {}
        if kind == "BOOKMARK":
            LAST_BOOKMARK.labels(self.key).set(time.time())
            self.rv = meta.get("resourceVersion") or self.rv
            return
        self.publisher.mark_event()
        name = meta.get("name", "")
        if kind == "DELETED":
            self.objects.pop(name, None)
        elif kind in ("ADDED", "MODIFIED"):
            self.objects[name] = documents_of(self.spec.kind, obj)
        self.rv = meta.get("resourceVersion") or self.rv
        self._publish()

    def _report(self) -> None:
        if not self.objects:
            self.entry.set(State.DEGRADED, "source absent: no matching object", present=False)
        else:
            self.entry.set(State.OK, "watching", present=True, objects=sorted(self.objects))

    def _publish(self) -> None:
        self._report()
        if not self.objects:
            self.publisher.publish(None)  # deleted / nothing matches: unknown, never empty
            return
        documents = tuple(d for name in sorted(self.objects) for d in self.objects[name])
        self.publisher.publish(documents)
