"""Metrics of the poor-man's-LB client. ``target`` is the configured target name (a bounded
set from the settings), never a URL: a URL may carry credentials."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from agent.metrics import REGISTRY

REQUESTS = Counter(
    "dms_agent_lb_requests_total",
    "Webhook requests by payload format and result (ok, unconfirmed, rejected, http_error, "
    "bad_response, timeout, connection_error, tls_error, secret_error). unconfirmed: 2xx with "
    "an empty body, the original receiver's answer before its hook runs.",
    ["format", "result"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "dms_agent_lb_request_duration_seconds",
    "Duration of webhook requests, by payload format.",
    ["format"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "dms_agent_lb_last_success_timestamp_seconds",
    "Unix time of the last delivery the receiver accepted (confirmed or not), by target.",
    ["target"],
    registry=REGISTRY,
)
CONSECUTIVE_FAILURES = Gauge(
    "dms_agent_lb_consecutive_failures",
    "Failed deliveries since the last success, by target.",
    ["target"],
    registry=REGISTRY,
)
CONFIRMED = Gauge(
    "dms_agent_lb_delivery_confirmed",
    "1 when the receiver's answer to the last delivery proved its hook ran, 0 when it was "
    "delivered unconfirmed (2xx, empty body), by target.",
    ["target"],
    registry=REGISTRY,
)
