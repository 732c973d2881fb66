"""DKIM metrics: per domain and selector (both bounded by the operator's declared domains)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from agent.metrics import REGISTRY

KEY_PRESENT = Gauge(
    "dms_agent_dkim_key_present",
    "1 when a key for the domain and selector is on disk.",
    ["domain", "selector"],
    registry=REGISTRY,
)
KEY_BITS = Gauge(
    "dms_agent_dkim_key_bits",
    "Size of the DKIM key in bits.",
    ["domain", "selector"],
    registry=REGISTRY,
)
PUBLISHED = Gauge(
    "dms_agent_dkim_published",
    "1 when DNS serves this key's record, 0 when it does not, -1 when DNS could not tell.",
    ["domain", "selector"],
    registry=REGISTRY,
)
ROTATION_STATE = Gauge(
    "dms_agent_dkim_rotation_state",
    "1 for the domain's current rotation state (stable, generating, waiting, grace, mismatch).",
    ["domain", "state"],
    registry=REGISTRY,
)
RESTART_REQUIRED = Gauge(
    "dms_agent_dkim_restart_required",
    "1 when new OpenDKIM keys could not be made live in place: restart the mailserver.",
    registry=REGISTRY,
)
ACTIONS = Counter(
    "dms_agent_dkim_actions_total",
    "DKIM actions by kind (generate, switch, retire, import, reload) and result.",
    ["action", "result"],
    registry=REGISTRY,
)
ROTATION_STATES = ("stable", "generating", "waiting", "grace", "mismatch")
