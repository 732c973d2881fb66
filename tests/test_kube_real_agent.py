"""The agent against a real kube-apiserver + etcd, as it runs in the pod: the ServiceAccount,
Role and RoleBinding that charts-lite/ and manifests/ render, a TokenRequest token of that
ServiceAccount (never the admin one), in-cluster configuration, ConfigMap and Secret sources."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.kube.config import KubeSettings
from agent.lb.address import AddressError, node_address
from agent.lb.config import LbAddress
from agent.metrics import REGISTRY
from tests.deploy import render
from tests.deploy.fixtures import HOW_HELM
from tests.dms_double.fixtures import DmsDouble, doveadm_verify
from tests.kube_real.agent_rig import (
    ALICE,
    BOB,
    CAROL,
    REFUSED,
    PodRig,
    applied,
    ledger_key,
    settings_doc,
    write_state,
)
from tests.kube_real.cluster import KubeCluster
from tests.kube_real.pod import collection, state_yaml
from tests.kube_support import eventually
from tests.rig.proc import Daemon, free_port


@pytest.mark.parametrize("source", ["chart", "manifests"])
async def test_real_apiserver_agent_with_rendered_rbac_lists_watches_edits_and_deletes(
    source: str,
    kube_real: KubeCluster,
    kube_ns: str,
    pod_rig: PodRig,
) -> None:
    pod = pod_rig.deploy(source)
    write_state(pod, {**ALICE, **BOB})
    async with pod_rig.run(pod) as run:
        await applied(run, {"alice@example.com", "bob@example.com"})
        assert doveadm_verify(run.dms.accounts()["alice@example.com"], "alice's secret")
        adds = len(run.setup_calls("add"))
        assert run.source_status("configmap")["state"] == "ok"

        # an edit of the ConfigMap: exactly one more `setup email add`
        write_state(pod, {**ALICE, **BOB, **CAROL})
        await applied(run, {"alice@example.com", "bob@example.com", "carol@example.com"})
        await eventually(lambda: len(run.setup_calls("add")) == adds + 1, 10)
        assert doveadm_verify(run.dms.accounts()["carol@example.com"], "carol's secret")

        # the ConfigMap deleted: the source is absent, nothing is pruned
        pod.delete("ConfigMap", pod.source_names()["configmap"])
        await eventually(lambda: "source absent" in run.source_status("configmap")["message"], 10)
        merge = run.component("sources merge")
        assert "source absent" in merge["message"]
        assert run.setup_calls("del") == []
        assert len(run.dms.accounts()) == 3

        # every call the agent made was allowed
        assert run.denied_lines() == []

    # ... and nothing beyond: the same token reads no other ConfigMap or Secret
    agent_api = kube_real.as_token(pod.token)
    for kind in ("ConfigMap", "Secret"):
        path = collection(kind, kube_ns)
        pod.put(kind, "other", {"data": {"k": "dg=="}})
        assert agent_api.status_of("GET", f"{path}/other") == 403
        assert agent_api.status_of("GET", path) == 403  # list without the name selector
        assert agent_api.status_of("GET", f"{path}?fieldSelector=metadata.name%3Dother") == 403
        own = pod.source_names()[kind.lower()]
        assert agent_api.status_of("GET", f"{path}?fieldSelector=metadata.name%3D{own}") == 200
        assert agent_api.status_of("PUT", f"{path}/{own}", {"metadata": {"name": own}}) == 403


def events_listed(rig: PodRig) -> list[dict[str, Any]]:
    """``kubectl get events`` against the real server (admin), as a person would look."""
    kubectl = render.require_tool("kubectl", HOW_HELM)
    config = rig.cluster.kubeconfig(rig.tmp_path / "admin.kubeconfig", namespace=rig.namespace)
    proc = render.run([kubectl, "--kubeconfig", str(config), "get", "events", "-o", "json"])
    assert proc.returncode == 0, proc.stderr
    items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
    return items


def invalid_events(rig: PodRig) -> list[dict[str, Any]]:
    return [e for e in events_listed(rig) if e["reason"] == "Invalid"]


BOOKMARK_METRIC = "dms_agent_sources_last_bookmark_timestamp_seconds"
BROKEN_YAML = "apiVersion: dms-agent/v1\naccounts:\n  alice@example.com: {quota: 2G\n"


async def test_real_apiserver_invalid_yaml_is_located_evented_and_repeats_counted(
    kube_real: KubeCluster,
    kube_ns: str,
    pod_rig: PodRig,
) -> None:
    pod = pod_rig.deploy()
    state = pod.source_names()["configmap"]
    async with pod_rig.run(pod) as run:
        await applied(run, {"alice@example.com"})
        calls = len(run.dms.calls())
        pod.put("ConfigMap", state, {"data": {"mailserver.yaml": BROKEN_YAML}})
        await eventually(lambda: "rejected" in run.component("sources merge")["message"], 10)
        errors = run.component("sources merge")["details"]["errors"]
        assert f"configmap {kube_ns}/{state}[mailserver.yaml]:" in errors[0], errors
        await eventually(lambda: len(invalid_events(pod_rig)) == 1, 10)
        [event] = invalid_events(pod_rig)
        assert event["type"] == "Warning"
        involved = event["involvedObject"]
        assert (involved["kind"], involved["name"], involved["namespace"]) == (
            "ConfigMap",
            state,
            kube_ns,
        )
        assert "[mailserver.yaml]:" in event["message"]

        # good again (the state in force: nothing to do), then the same mistake once more:
        # the one Event counts 2, no second Event
        write_state(pod, ALICE)
        await eventually(lambda: run.component("sources merge")["message"] == "published", 10)
        pod.put("ConfigMap", state, {"data": {"mailserver.yaml": BROKEN_YAML}})
        await eventually(lambda: [e["count"] for e in invalid_events(pod_rig)] == [2], 10)
        assert set(run.dms.accounts()) == {"alice@example.com"}  # the last good state kept
        assert len(run.dms.calls()) == calls  # nothing applied
        assert run.denied_lines() == []  # Events created and patched with the agent's own RBAC


async def test_real_apiserver_non_utf8_binary_data_is_refused_with_its_key(
    kube_real: KubeCluster,
    kube_ns: str,
    pod_rig: PodRig,
) -> None:
    """The API server takes any bytes in binaryData; the agent must refuse a key that is not
    UTF-8 text and name it, while the object's other keys still apply."""
    pod = pod_rig.deploy()
    state = pod.source_names()["configmap"]
    async with pod_rig.run(pod) as run:
        await applied(run, {"alice@example.com"})
        raw = b"apiVersion: dms-agent/v1\naccounts:\n  bob@example.com: {}\n\xff\xfe\n"
        body = {
            "data": {"mailserver.yaml": state_yaml({**ALICE, **BOB})},
            "binaryData": {"more.yaml": base64.b64encode(raw).decode()},
        }
        pod.put("ConfigMap", state, body)
        await eventually(lambda: "rejected" in run.component("sources merge")["message"], 10)
        [error] = run.component("sources merge")["details"]["errors"]
        assert f"configmap {kube_ns}/{state}[more.yaml]" in error and "UTF-8" in error, error
        await eventually(lambda: len(invalid_events(pod_rig)) == 1, 10)
        assert "[more.yaml]" in invalid_events(pod_rig)[0]["message"]
        await applied(run, {"alice@example.com", "bob@example.com"})  # the good key applied
        merge = run.component("sources merge")
        assert merge["details"]["rejected_files"] == [f"configmap {kube_ns}/{state}[more.yaml]"]


LB_NODE = render.COMBINATIONS["lbnode"]


async def test_real_apiserver_default_chart_grants_no_node_read(
    kube_real: KubeCluster, kube_ns: str, pod_rig: PodRig
) -> None:
    pod = pod_rig.deploy()
    kube_real.admin.post("/api/v1/nodes", {"metadata": {"name": kube_ns}})
    agent = kube_real.as_token(pod.token)
    assert agent.status_of("GET", f"/api/v1/nodes/{kube_ns}") == 403


async def test_real_apiserver_lb_node_address_read_with_the_agents_own_rbac(
    kube_real: KubeCluster, kube_ns: str, pod_rig: PodRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LB ``address: {source: node}`` (chart: ``poor_mans_k8s_lb.address: ExternalIP``): the
    Node (made by the admin, as kubelet would) read with the agent's token. The default chart
    grants no Node read (it uses the downward API); with that value it adds the one grant."""
    node = kube_ns  # Nodes are cluster-wide: a name of this test's own
    kube_real.admin.post("/api/v1/nodes", {"metadata": {"name": node}})
    addresses = [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "ExternalIP", "address": "203.0.113.9"},
    ]
    kube_real.admin.patch(f"/api/v1/nodes/{node}/status", {"status": {"addresses": addresses}})
    pod = pod_rig.deploy(sets=LB_NODE)
    assert pod.settings["lb"]["address"] == {"source": "node", "nodeAddressType": "ExternalIP"}
    for key, value in pod.environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    kube = KubeSettings(service_account_dir=pod.sa_dir)
    lb = LbAddress.model_validate({"source": "node", "nodeName": node})
    found: list[str] = []

    async def read() -> bool:
        with contextlib.suppress(AddressError):  # until the authorizer's cache has the grant
            found.append(await node_address(lb, kube, node))
        return bool(found)

    async with asyncio.timeout(10):
        while not await read():
            await asyncio.sleep(0.05)
    assert found == ["203.0.113.9"]
    lb_internal = LbAddress.model_validate(
        {"source": "node", "nodeName": node, "nodeAddressType": "InternalIP"}
    )
    assert await node_address(lb_internal, kube, node) == "10.0.0.5"


async def test_real_apiserver_agent_process_in_cluster_never_imports_kubernetes_asyncio(
    pod_rig: PodRig, make_dms: Callable[..., DmsDouble], tmp_path: Path
) -> None:
    """``python -m agent run`` as in the pod (in-cluster, the ServiceAccount's token) applies
    the state; Python's own import log shows every module it loaded: kubernetes_asyncio is
    not one of them, so it is a test dependency only."""
    pod = pod_rig.deploy()
    dms = make_dms()
    doc = settings_doc(pod, dms, ledger_key(tmp_path))
    doc["server"] = {"host": "127.0.0.1", "port": free_port()}
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(doc))
    argv = [sys.executable, "-X", "importtime", "-m", "agent", "run", "-c", str(settings)]
    agent = Daemon("agent", argv, tmp_path, {**pod.environ(), "KUBECONFIG": ""})
    try:
        await eventually(lambda: set(dms.accounts()) == {"alice@example.com"}, 60)
        await eventually(lambda: bool(dms.calls()), 10)  # logged when `setup` exits
    finally:
        agent.stop()
    log = agent.logs()
    imports = [line for line in log.splitlines() if line.startswith("import time:")]
    assert any(" agent.sources.kube" in line for line in imports), "no import log"
    assert [line for line in imports if "kubernetes_asyncio" in line] == []
    said = [line for line in log.splitlines() if not line.startswith("import time:")]
    assert [line for line in said if REFUSED.search(line)] == []


async def test_real_apiserver_bookmarks_reach_the_agents_watch(pod_rig: PodRig) -> None:
    """The real server sends a bookmark ~2 s before a watch's timeoutSeconds once its version
    of the resource moved past the watch's; the agent takes the bookmark's version (bookmarks
    asked for from the start: by default only once a re-watch met 410)."""
    pod = pod_rig.deploy()
    async with pod_rig.run(pod, watchTimeout=4, watchBookmarks="always") as run:
        await applied(run, {"alice@example.com"})
        key = f"configmap/{pod.namespace}/{pod.source_names()['configmap']}"
        before = REGISTRY.get_sample_value(BOOKMARK_METRIC, {"source": key}) or 0.0
        pod.put("ConfigMap", "unrelated", {"data": {"k": "v"}})  # moves the version, unseen
        await eventually(
            lambda: (REGISTRY.get_sample_value(BOOKMARK_METRIC, {"source": key}) or 0) > before,
            15,
        )
        assert run.denied_lines() == []
