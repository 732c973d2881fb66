"""The agent against the real API server, as it runs in the pod: in-cluster configuration from
a service-account folder holding a TokenRequest token of the ServiceAccount the deploy artefacts
make, the API sources and Kubernetes Events of the rendered settings, and DMS's `setup` (the
v15.1.0 double) run locally instead of by exec (no kubelet runs here).

The ``pod_rig`` fixture gives a ``PodRig``: ``deploy(source)`` applies the RBAC of
``charts-lite/`` ("chart") or ``manifests/`` into the test's namespace and writes a first state
(alice) and passwords; ``run(pod, port=None, **kube)`` runs the agent with that pod's token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.settings import Settings
from tests.dms_double.fixtures import DmsDouble
from tests.kube_real.cluster import KubeCluster
from tests.kube_real.pod import AgentPod, rendered, state_yaml
from tests.kube_support import eventually

REFUSED = re.compile(r"\b403\b|forbidden", re.IGNORECASE)


def settings_doc(pod: AgentPod, dms: DmsDouble, key_file: Path, **kube: Any) -> dict[str, Any]:
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
    return {
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


def agent_settings(pod: AgentPod, dms: DmsDouble, key_file: Path, **kube: Any) -> Settings:
    return Settings.model_validate(settings_doc(pod, dms, key_file, **kube))


def ledger_key(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"  # never beside the ledger (which lives in the config folder)
    keys.mkdir(exist_ok=True)
    key_file = keys / "ledger.key"
    key_file.write_text("a test ledger key, not beside the ledger\n")
    key_file.chmod(0o600)  # the agent refuses a digest key others can read
    return key_file


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
        """Log lines of the agent's that tell of a refused API call. "403" as a number of its
        own: a line naming the API server's port (127.0.0.1:40325) is no refusal."""
        return [
            r.getMessage()
            for r in self.log.records
            if r.name.startswith("dms_agent") and REFUSED.search(r.getMessage())
        ]


@asynccontextmanager
async def running_agent(
    pod: AgentPod,
    make_dms: Callable[..., DmsDouble],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    port: int | None = None,
    **kube: Any,
) -> AsyncIterator[RunningAgent]:
    """The agent started in this process; ``port``: reach another API server of the cluster;
    ``kube``: settings of the ``kube:`` section (camelCase)."""
    for key, value in pod.environ(port).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    caplog.set_level(logging.DEBUG, logger="dms_agent")
    dms = make_dms()
    agent = Agent(agent_settings(pod, dms, ledger_key(tmp_path), **kube), None)
    await agent.start_components()
    try:
        yield RunningAgent(agent, pod, dms, caplog)
    finally:
        await agent.stop_components()


@dataclass
class PodRig:
    cluster: KubeCluster
    namespace: str
    tmp_path: Path
    make_dms: Callable[..., DmsDouble]
    caplog: pytest.LogCaptureFixture
    monkeypatch: pytest.MonkeyPatch

    def deploy(self, source: str = "chart", sets: Sequence[str] = ()) -> AgentPod:
        """The rendered RBAC made by the admin (the chart with value ``sets`` in this test's
        namespace), and the ServiceAccount's token and identity as kubelet would mount them."""
        pod = deploy(self.cluster, self.namespace, self.tmp_path, source, sets)
        write_state(pod, ALICE)
        write_passwords(pod)
        return pod

    def run(
        self, pod: AgentPod, port: int | None = None, **kube: Any
    ) -> AbstractAsyncContextManager[RunningAgent]:
        return running_agent(
            pod, self.make_dms, self.tmp_path, self.caplog, self.monkeypatch, port, **kube
        )


@pytest.fixture
def pod_rig(
    kube_real: KubeCluster,
    kube_ns: str,
    make_dms: Callable[..., DmsDouble],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> PodRig:
    return PodRig(kube_real, kube_ns, tmp_path, make_dms, caplog, monkeypatch)


ALICE = {"alice@example.com": {"quota": "2G"}}
BOB = {"bob@example.com": {}}
CAROL = {"carol@example.com": {}}
PASSWORDS = """alice@example.com: {password: "alice's secret"}
bob@example.com: {password: "bob's secret"}
carol@example.com: {password: "carol's secret"}
"""


def deploy(
    cluster: KubeCluster, ns: str, tmp_path: Path, source: str = "chart", sets: Sequence[str] = ()
) -> AgentPod:
    docs = rendered(source, [f"--namespace={ns}", *sets] if sets else ())
    return AgentPod.deploy(cluster, ns, docs, tmp_path)


def write_state(pod: AgentPod, accounts: dict[str, dict[str, str]], **extra: str) -> None:
    name = pod.source_names()["configmap"]
    pod.put("ConfigMap", name, {"data": {"mailserver.yaml": state_yaml(accounts), **extra}})


def write_passwords(pod: AgentPod, text: str = PASSWORDS) -> None:
    pod.put("Secret", pod.source_names()["secret"], {"stringData": {"passwords.yaml": text}})


async def applied(run: RunningAgent, accounts: set[str], timeout: float = 30) -> None:
    """DMS holds exactly ``accounts`` and the reconciler has finished its round."""
    await eventually(lambda: set(run.dms.accounts()) == accounts, timeout)
    await eventually(
        lambda: run.component("reconcile").get("details", {}).get("outcome") in ("applied", "noop"),
        timeout,
    )
