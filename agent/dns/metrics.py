"""The DNS checks' metrics. Labels are bounded: ``domain`` comes from the operator's settings
and mail state (never from DNS answers), ``check`` from the fixed ``CHECKS`` list, ``kind``
from ``ERROR_KINDS``."""

from __future__ import annotations

from prometheus_client import Counter, Enum, Gauge

from agent.dns.model import ERROR_KINDS, Status
from agent.metrics import REGISTRY

CHECK_STATE = Enum(
    "dms_agent_dns_check_state",
    "Result of one DNS check of one domain (a state set: pass, warn, fail, error).",
    ["domain", "check"],
    states=[s.value for s in Status],
    registry=REGISTRY,
)
LAST_RUN = Gauge(
    "dms_agent_dns_last_run_timestamp_seconds",
    "When the last run of the DNS checks ended (Unix time).",
    registry=REGISTRY,
)
RUN_DURATION = Gauge(
    "dms_agent_dns_last_run_duration_seconds",
    "How long the last run of the DNS checks took.",
    registry=REGISTRY,
)
DOMAINS = Gauge(
    "dms_agent_dns_domains",
    "Domains (and MX host names) the last run checked.",
    registry=REGISTRY,
)
QUERY_ERRORS = Counter(
    "dms_agent_dns_query_errors_total",
    "DNS lookups that got no usable answer, by kind (timeout, servfail, refused, other).",
    ["kind"],
    registry=REGISTRY,
)
for _kind in ERROR_KINDS:
    QUERY_ERRORS.labels(_kind)  # every kind exists at 0 from the start


def count_error(kind: str) -> None:
    QUERY_ERRORS.labels(kind if kind in ERROR_KINDS else "other").inc()
