"""Metrics of the checks capability. The ``check`` label is a configured check name (a bounded
set the operator chose); ``reason`` is one of ``probes.REASONS``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from agent.metrics import REGISTRY

CHECK_SUCCESS = Gauge(
    "dms_agent_check_success",
    "1 if the check's last attempt succeeded, 0 if it failed.",
    ["check"],
    registry=REGISTRY,
)
CHECK_DURATION = Histogram(
    "dms_agent_check_duration_seconds",
    "Duration of one check attempt.",
    ["check"],
    # few buckets: each one is a series per check, and /metrics renders them in the loop
    buckets=(0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10),
    registry=REGISTRY,
)
CHECK_FAILURES = Counter(
    "dms_agent_check_failures_total",
    "Failed check attempts by reason (connect, timeout, banner, tls, protocol, exit-code, "
    "unknown).",
    ["check", "reason"],
    registry=REGISTRY,
)
CHECK_LAST_SUCCESS = Gauge(
    "dms_agent_check_last_success_timestamp_seconds",
    "Unix time of the check's last successful attempt.",
    ["check"],
    registry=REGISTRY,
)
CHECK_CERT_NOT_AFTER = Gauge(
    "dms_agent_check_certificate_not_after_timestamp_seconds",
    "notAfter (unix time) of the certificate the check's last TLS handshake saw.",
    ["check"],
    registry=REGISTRY,
)
CHECK_FAILING = Gauge(
    "dms_agent_check_failing",
    "1 while the check is failing past its threshold and remediation (it makes the verdict "
    "unhealthy when it affects the verdict).",
    ["check"],
    registry=REGISTRY,
)
REMEDIATIONS = Counter(
    "dms_agent_check_remediations_total",
    "Remediation actions and their results by check (ran, joined, command_failed, "
    "rate_limited, no_executor, then fixed or not_fixed).",
    ["check", "result"],
    registry=REGISTRY,
)
