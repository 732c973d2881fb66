"""Kubernetes Events (aggregation, rate limit) and the client's configuration loading."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import yaml

from agent.kube import events as events_module
from agent.kube.client import (
    KubeApiError,
    KubeClient,
    KubeConfigError,
    load_cluster_config,
)
from agent.kube.config import KubeSettings
from agent.kube.events import KubeEventSink, make_event_sink
from agent.metrics import REGISTRY
from agent.settings import Settings
from tests.kube_api.fixtures import KubeApi
from tests.kube_support import eventually

CM = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "mail", "name": "mail-state"}


def _sink(api: KubeApi, **settings: object) -> KubeEventSink:
    ks = KubeSettings(kubeconfig=api.kubeconfig, **settings)  # type: ignore[arg-type]
    return KubeEventSink(KubeClient(load_cluster_config(ks)), dict(CM), ks, "dms-0")


async def test_events_are_created_then_aggregated(kube_api: KubeApi) -> None:
    sink = _sink(kube_api)
    sink.emit("Applied", "2 accounts created")
    sink.emit("Applied", "2 accounts created")
    sink.emit("Invalid", "1 error(s), first: x", "Warning")
    await sink.flush()
    events = {e["reason"]: e for e in kube_api.server.events("mail")}
    assert events["Applied"]["count"] == 2
    assert events["Applied"]["involvedObject"]["name"] == "mail-state"
    assert events["Invalid"]["type"] == "Warning"
    assert len(kube_api.server.events("mail")) == 2
    await sink.client.close()


async def test_rate_limit_drops_the_excess(kube_api: KubeApi) -> None:
    sink = _sink(kube_api, events_burst=2, events_per_minute=0.001)
    for i in range(5):
        sink.emit("Drift", f"drift {i}", "Warning")
    await sink.flush()
    assert len(kube_api.server.events("mail")) == 2
    await sink.client.close()


async def test_message_is_cut_to_the_api_limit(kube_api: KubeApi) -> None:
    sink = _sink(kube_api)
    sink.emit("ApplyFailed", "x" * 5000, "Warning")
    await sink.flush()
    [event] = kube_api.server.events("mail")
    assert len(event["message"]) == 1024
    await sink.client.close()


async def test_events_wait_for_an_api_server_that_is_down_and_arrive_in_order(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: an Event emitted while the API server restarted was logged and lost."""
    monkeypatch.setattr(events_module, "RETRY_FIRST", 0.05)
    sink = _sink(kube_api)
    await kube_api.server.stop()
    sink.emit("ApplyFailed", "1 op failed", "Warning")
    sink.emit("Applied", "1 account created")
    await eventually(lambda: _count("retried") >= 2)  # tried, and tried again
    assert kube_api.server.events("mail") == []
    await kube_api.server.start()
    await sink.flush()
    created = sorted(
        kube_api.server.events("mail"), key=lambda e: int(e["metadata"]["resourceVersion"])
    )
    assert [e["reason"] for e in created] == ["ApplyFailed", "Applied"]  # in the order emitted
    await sink.client.close()


async def test_a_refused_event_is_not_retried(kube_api: KubeApi) -> None:
    sink = _sink(kube_api)
    sink.namespace = "mail/configmaps/x"  # a path the API server answers 404 for
    before = _count("failed")
    sink.emit("Applied", "x")
    await sink.flush()
    assert _count("failed") == before + 1
    await sink.client.close()


async def test_events_waiting_for_the_api_are_bounded_oldest_first(kube_api: KubeApi) -> None:
    sink = _sink(kube_api)
    await kube_api.server.stop()
    dropped = _count("dropped")
    for i in range(events_module.MAX_QUEUED + 5):
        sink.emit("Drift", f"drift {i}", "Warning")
    assert len(sink.queue) == events_module.MAX_QUEUED
    messages = [m for _, m, _ in sink.queue]
    assert messages[0] == "drift 0"  # on its way: kept
    assert messages[1] == "drift 6" and messages[-1] == f"drift {events_module.MAX_QUEUED + 4}"
    assert _count("dropped") == dropped + 5
    await kube_api.server.start()
    await sink.client.close()


def _count(result: str) -> float:
    value = REGISTRY.get_sample_value("dms_agent_kube_events_total", {"result": result})
    return value or 0.0


def test_event_sink_follows_the_settings(kube_api: KubeApi) -> None:
    plain = Settings()
    assert type(make_event_sink(plain)).__name__ == "LogEventSink"
    with_api = Settings.model_validate(
        {
            "kube": {"kubeconfig": str(kube_api.kubeconfig)},
            "sources": [{"kind": "configmap", "name": "mail-state"}],
        }
    )
    sink = make_event_sink(with_api)
    assert isinstance(sink, KubeEventSink)
    assert sink.involved == CM


def test_kubeconfig_errors_are_clear(tmp_path: Path) -> None:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(yaml.safe_dump({"contexts": [], "current-context": "nope"}))
    with pytest.raises(KubeConfigError, match="no context named 'nope'"):
        load_cluster_config(KubeSettings(kubeconfig=cfg))
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        load_cluster_config(KubeSettings(service_account_dir=tmp_path), environ={})


def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    ca = _self_signed(tmp_path)
    (tmp_path / "ca.crt").write_text(ca)
    (tmp_path / "token").write_text("t1\n")
    (tmp_path / "namespace").write_text("mail")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = load_cluster_config(KubeSettings(service_account_dir=tmp_path), environ=env)
    assert (config.server, config.namespace, config.token.current()) == (
        "https://10.96.0.1:443",
        "mail",
        "t1",
    )
    (tmp_path / "token").write_text("t2-rotated\n")
    assert config.token.current() == "t2-rotated"


def test_kubeconfig_with_inline_token_and_ca_data(tmp_path: Path) -> None:
    ca = base64.b64encode(_self_signed(tmp_path).encode()).decode()
    cfg = tmp_path / "kubeconfig"
    doc = {
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://k:6443/", "certificate-authority-data": ca},
            }
        ],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    cfg.write_text(yaml.safe_dump(doc))
    config = load_cluster_config(KubeSettings(kubeconfig=cfg))
    assert (config.server, config.token.current(), config.namespace) == (
        "https://k:6443",
        "abc",
        None,
    )
    assert isinstance(config.ssl, ssl.SSLContext)
    assert config.ssl.cert_store_stats()["x509_ca"] == 1  # the named CA alone, as kubectl


async def test_client_error_carries_the_status(kube_api: KubeApi) -> None:
    client = KubeClient(load_cluster_config(KubeSettings(kubeconfig=kube_api.kubeconfig)))
    with pytest.raises(KubeApiError) as err:
        await client.request("GET", "/api/v1/namespaces/mail/configmaps/missing")
    assert (err.value.status, err.value.reason) == (404, "NotFound")
    kube_api.server.add_node("n1", [("InternalIP", "10.0.0.5")])
    node = await client.request("GET", "/api/v1/nodes/n1")
    assert node["status"]["addresses"][0]["address"] == "10.0.0.5"
    await client.close()


def _self_signed(tmp_path: Path) -> str:
    """A throwaway CA certificate from openssl (no network, ~50 ms)."""
    import subprocess

    from tests.rig.proc import require_binary

    openssl = require_binary("openssl", "openssl")
    key, crt = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=test-ca"],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt.read_text()
