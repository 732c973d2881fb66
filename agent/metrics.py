"""The agent's Prometheus registry and the metrics the foundation owns.

Capabilities define their own metrics in their own modules, on ``REGISTRY``, named
``dms_agent_<subsystem>_<name>_<unit>`` as Prometheus' naming guide asks. Labels are always
bounded sets (component names, op kinds, results) — never addresses or free text.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from agent import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

BUILD_INFO = Info(
    "dms_agent_build", "Build information of the running dms-agent.", registry=REGISTRY
)
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})

COMPONENT_UP = Gauge(
    "dms_agent_component_up",
    "1 while a supervised component runs, 0 while it waits to be restarted.",
    ["component"],
    registry=REGISTRY,
)
COMPONENT_RESTARTS = Counter(
    "dms_agent_component_restarts_total",
    "Crashes of a supervised component that led to a restart.",
    ["component"],
    registry=REGISTRY,
)
SETTINGS_RELOADS = Counter(
    "dms_agent_settings_reloads_total",
    "Attempts to reload the settings file, by result (applied, rejected, unchanged).",
    ["result"],
    registry=REGISTRY,
)
HEALTH_VERDICT = Gauge(
    "dms_agent_mailserver_healthy",
    "The mailserver verdict: 1 healthy, 0 unhealthy, -1 not yet known.",
    registry=REGISTRY,
)
HEALTH_VERDICT.set(-1)
