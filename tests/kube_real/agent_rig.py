"""The agent against the real API server, as it runs in the pod: in-cluster configuration from
a service-account folder holding a TokenRequest token of the ServiceAccount the deploy artefacts
make, the API sources and Kubernetes Events of the rendered settings, and DMS's `setup` (the
v15.1.0 double) run locally instead of by exec (no kubelet runs here)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.settings import Settings
from tests.dms_double.fixtures import DmsDouble
from tests.kube_real.pod import AgentPod


def agent_settings(pod: AgentPod, dms: DmsDouble, key_file: Path, **kube: Any) -> Settings:
    """The rendered settings' ``sources`` and ``kube`` sections; the rest fits the test host."""
    rendered = pod.settings
    env = {k: v for k, v in dms.env.items() if not k.startswith("DMS_DOUBLE")}
    kube_section = {
        **rendered.get("kube", {}),
        "serviceAccountDir": str(pod.sa_dir),
        "backoffInitial": 0.05,
        "backoffMax": 0.5,
        **kube,
    }
    return Settings.model_validate(
        {
            "sources": rendered["sources"],
            "kube": kube_section,
            "dms": {
                "configDir": str(dms.config_dir),
                "setupCommand": dms.setup_argv,
                "readyCommand": [],
                "commandTimeout": 20,
                "executor": {"kind": "local"},
                "environment": env,
            },
            "reconcile": {"ledgerKeyFile": str(key_file), "retryInitial": 0.05},
            "dkim": {"enabled": False},
            "checks": {"enabled": False},
            "dns": {"enabled": False},
            "lb": {"enabled": False},
        }
    )


@dataclass
class RunningAgent:
    agent: Agent
    pod: AgentPod
    dms: DmsDouble
    log: pytest.LogCaptureFixture

    def component(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.agent.status.snapshot()["components"].get(name, {})
        return entry

    def source_status(self, kind: str) -> dict[str, Any]:
        name = self.pod.source_names()[kind]
        return self.component(f"source {kind}/{self.pod.namespace}/{name}")

    def setup_calls(self, verb: str) -> list[list[str]]:
        return [c["argv"] for c in self.dms.calls() if c["argv"][:2] == ["email", verb]]

    def denied_lines(self) -> list[str]:
        """Log lines of the agent's that tell of a refused API call."""
        return [
            r.getMessage()
            for r in self.log.records
            if r.name.startswith("dms_agent")
            and any(word in r.getMessage() for word in ("403", "Forbidden", "forbidden"))
        ]


@asynccontextmanager
async def running_agent(
    pod: AgentPod,
    make_dms: Callable[..., DmsDouble],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    **kube: Any,
) -> AsyncIterator[RunningAgent]:
    for key, value in pod.environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    caplog.set_level(logging.DEBUG, logger="dms_agent")
    dms = make_dms()
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    key_file = keys / "ledger.key"
    key_file.write_text("a test ledger key, not beside the ledger\n")
    agent = Agent(agent_settings(pod, dms, key_file, **kube), None)
    await agent.start_components()
    try:
        yield RunningAgent(agent, pod, dms, caplog)
    finally:
        await agent.stop_components()
