"""Metrics of the sources and of the merge. ``source`` labels are the configured sources (a
bounded set, e.g. ``configmap/mail/mail-state``); never an object's content."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from agent.metrics import REGISTRY

WATCH_RESTARTS = Counter(
    "dms_agent_sources_watch_restarts_total",
    "Watch restarts by reason (end, expired, stalled, error, unauthorized).",
    ["source", "reason"],
    registry=REGISTRY,
)
EVENTS_RECEIVED = Counter(
    "dms_agent_sources_events_received_total",
    "Watch events received, by type (ADDED, MODIFIED, DELETED, BOOKMARK) and file batches.",
    ["source", "type"],
    registry=REGISTRY,
)
LAST_EVENT = Gauge(
    "dms_agent_sources_last_event_timestamp_seconds",
    "When the source last received an event (watch event or file change).",
    ["source"],
    registry=REGISTRY,
)
LAST_BOOKMARK = Gauge(
    "dms_agent_sources_last_bookmark_timestamp_seconds",
    "When the API source last received a watch bookmark.",
    ["source"],
    registry=REGISTRY,
)
SNAPSHOTS = Counter(
    "dms_agent_sources_snapshots_total",
    "Snapshots read, by result: changed (handed on), unchanged (same digest, skipped).",
    ["source", "result"],
    registry=REGISTRY,
)
PRESENT = Gauge(
    "dms_agent_sources_present",
    "1 when the source exists, 0 when it is absent (deleted or not created): unknown, not empty.",
    ["source"],
    registry=REGISTRY,
)
MERGES = Counter(
    "dms_agent_sources_merges_total",
    "Merge outcomes: published, partial (broken files at their last good version), invalid "
    "(last good state kept), waiting (a source absent), unchanged.",
    ["result"],
    registry=REGISTRY,
)
GENERATION = Gauge(
    "dms_agent_sources_desired_generation",
    "Sequence number of the desired state published to the reconciler (one per distinct input).",
    registry=REGISTRY,
)
PUBLISHED_AT = Gauge(
    "dms_agent_sources_desired_published_timestamp_seconds",
    "When the current desired state was published.",
    registry=REGISTRY,
)
