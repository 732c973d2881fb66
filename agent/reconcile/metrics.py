"""Metrics of the reconciler (labels: op kinds and results only, never an address)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from agent.metrics import REGISTRY

RECONCILES = Counter(
    "dms_agent_reconcile_runs_total",
    "Reconcile passes, by result (noop, applied, partial, failed, observed).",
    ["result"],
    registry=REGISTRY,
)
OPS = Counter(
    "dms_agent_reconcile_ops_total",
    "Ops run against DMS, by kind and result (ok, failed, unknown).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "dms_agent_reconcile_duration_seconds",
    "Wall time of a reconcile pass, from trigger to done.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
    registry=REGISTRY,
)
OP_SECONDS = Histogram(
    "dms_agent_reconcile_op_duration_seconds",
    "Time of one op as measured by the executor, by kind.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
MANAGED = Gauge(
    "dms_agent_reconcile_managed_accounts",
    "Accounts the agent manages (created or adopted), per the ledger.",
    registry=REGISTRY,
)
PENDING = Gauge(
    "dms_agent_reconcile_pending_ops",
    "Ops planned but not yet done (waiting, deferred for retry, blocked or refused).",
    registry=REGISTRY,
)
DRIFT = Gauge(
    "dms_agent_reconcile_drift_accounts",
    "Accounts whose password was changed outside the agent (last plan).",
    registry=REGISTRY,
)
REFUSED = Gauge(
    "dms_agent_reconcile_refused_deletions",
    "Deletions refused by the deletion policy in the last plan.",
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "dms_agent_reconcile_last_success_timestamp_seconds",
    "Unix time of the last reconcile pass that ended with nothing failed.",
    registry=REGISTRY,
)
