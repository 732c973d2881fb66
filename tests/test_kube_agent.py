"""The agent as built from its settings: API sources + merge with the real state loader,
Kubernetes Events on the state ConfigMap, and the kube executor factory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.app import Agent
from agent.kube.events import KubeEventSink
from agent.kube.exec import KubeExecExecutor, build_kube_executor
from agent.settings import Settings
from agent.sources.build import build as build_sources
from tests.kube_api.fixtures import KubeApi
from tests.kube_support import eventually

STATE = """apiVersion: dms-agent/v1
accounts:
  alice@example.com: {quota: 2G}
"""
MORE = """apiVersion: dms-agent/v1
accounts:
  bob@example.com: {}
"""


def _settings(api: KubeApi, **extra: object) -> Settings:
    return Settings.model_validate(
        {
            "kube": {"kubeconfig": str(api.kubeconfig), "backoffInitial": 0.05},
            "sources": [
                {"kind": "configmap", "selector": "dms-agent/state=true"},
                {"kind": "secret", "name": "mail-passwords"},
            ],
            **extra,
        }
    )


def sources_only(settings: Settings) -> Agent:
    """The agent with only this capability's components (sources + merge): other components
    (reconciler, checks …) have their own tests and would only add their timing here."""
    agent = Agent(settings, None)
    agent._builders = [build_sources]
    return agent


def _state(api: KubeApi, name: str, text: str) -> None:
    meta = {"name": name, "labels": {"dms-agent/state": "true"}}
    body = {"metadata": meta, "data": {"mailserver.yaml": text}}
    store = api.server.store
    if ("configmaps", "mail", name) in store.objects:
        store.update("configmaps", "mail", name, body)
    else:
        store.create("configmaps", "mail", body)


async def test_agent_publishes_and_reports_invalid_input(kube_api: KubeApi) -> None:
    _state(kube_api, "state-a", STATE)
    kube_api.server.store.create(
        "secrets",
        "mail",
        {
            "metadata": {"name": "mail-passwords"},
            "stringData": {"passwords.yaml": "alice@example.com: {password: s3cret-value}\n"},
        },
    )
    agent = sources_only(_settings(kube_api))
    await agent.start_components()
    try:
        _, desired = await asyncio.wait_for(agent.hub.desired.wait_newer(0), 5)
        assert set(desired.state.accounts) == {"alice@example.com"}
        assert set(desired.state.passwords) == {"alice@example.com"}
        # the same account in a second ConfigMap: rejected, naming both objects
        _state(kube_api, "state-b", STATE)
        merge = agent.status.component("sources merge")
        await eventually(lambda: "rejected" in merge.message)
        error = merge.details["errors"][0]
        assert "mail/state-a" in error and "mail/state-b" in error
        assert agent.hub.desired.value is desired  # the last good one stays
        await eventually(lambda: bool(kube_api.server.events("mail")))
        [event] = kube_api.server.events("mail")
        assert (event["reason"], event["type"]) == ("Invalid", "Warning")
        assert "s3cret" not in str(kube_api.server.events("mail"))
        _state(kube_api, "state-b", MORE)
        version = agent.hub.desired.version
        _, fixed = await asyncio.wait_for(agent.hub.desired.wait_newer(version), 5)
        assert set(fixed.state.accounts) == {"alice@example.com", "bob@example.com"}
    finally:
        await agent.stop_components()
    assert isinstance(agent.context().events, KubeEventSink)


def test_kube_executor_factory(kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(kube_api, dms={"executor": {"kind": "kube"}})
    monkeypatch.delenv("POD_NAME", raising=False)
    with pytest.raises(ValueError, match="POD_NAME"):
        build_kube_executor(settings)
    monkeypatch.setenv("POD_NAME", "dms-0")
    executor = build_kube_executor(settings)
    assert isinstance(executor, KubeExecExecutor)
    assert (executor.namespace, executor.pod, executor.container) == ("mail", "dms-0", "mailserver")


def test_status_never_shows_secret_text(tmp_path: Path) -> None:
    from agent.sources.kube import documents_of

    docs = documents_of(
        "secret", {"metadata": {"name": "p", "namespace": "mail"}, "data": {"k": "aGlkZGVu"}}
    )
    assert docs[0].text == "hidden" and docs[0].secret
    assert "hidden" not in repr(docs)


async def test_api_source_without_cluster_config_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = Settings.model_validate(
        {
            "kube": {"serviceAccountDir": str(tmp_path)},
            "sources": [
                {"kind": "path", "path": str(tmp_path)},
                {"kind": "configmap", "name": "mail-state", "namespace": "mail"},
            ],
        }
    )
    agent = sources_only(settings)
    await agent.start_components()
    try:
        entry = agent.status.component("source configmap/mail/mail-state")
        await eventually(lambda: entry.message.startswith("not started"))
        assert "KUBERNETES_SERVICE_HOST" in entry.message
        merge = agent.status.component("sources merge")
        await eventually(lambda: "configmap/mail/mail-state" in merge.message)
        assert agent.hub.desired.value is None
    finally:
        await agent.stop_components()


async def test_in_cluster_over_tls_with_token_rotation(
    kube_api_tls: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-cluster path end to end: https with the mounted CA, the projected token file
    (rotated mid-way), the namespace file."""
    sa_dir = kube_api_tls.kubeconfig.parent  # token and ca.crt live there
    (sa_dir / "namespace").write_text("mail")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(kube_api_tls.server.port))
    _state(kube_api_tls, "state-a", STATE)
    settings = Settings.model_validate(
        {
            "kube": {"serviceAccountDir": str(sa_dir), "backoffInitial": 0.05},
            "sources": [{"kind": "configmap", "selector": "dms-agent/state=true"}],
        }
    )
    agent = sources_only(settings)
    await agent.start_components()
    try:
        _, desired = await asyncio.wait_for(agent.hub.desired.wait_newer(0), 5)
        assert set(desired.state.accounts) == {"alice@example.com"}
        kube_api_tls.rotate_token()
        kube_api_tls.server.drop_streams(abrupt=True)
        _state(kube_api_tls, "state-a", MORE)
        _, after = await asyncio.wait_for(agent.hub.desired.wait_newer(1), 5)
        assert set(after.state.accounts) == {"bob@example.com"}
    finally:
        await agent.stop_components()
