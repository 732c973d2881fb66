"""The agent against a real kube-apiserver + etcd, as it runs in the pod: the ServiceAccount,
Role and RoleBinding that charts-lite/ and manifests/ render, a TokenRequest token of that
ServiceAccount (never the admin one), in-cluster configuration, ConfigMap and Secret sources."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.dms_double.fixtures import DmsDouble, doveadm_verify
from tests.kube_real.agent_rig import (
    ALICE,
    BOB,
    CAROL,
    applied,
    deploy,
    running_agent,
    write_passwords,
    write_state,
)
from tests.kube_real.cluster import KubeCluster
from tests.kube_real.pod import collection
from tests.kube_support import eventually


@pytest.mark.parametrize("source", ["chart", "manifests"])
async def test_real_apiserver_agent_with_rendered_rbac_lists_watches_edits_and_deletes(
    source: str,
    kube_real: KubeCluster,
    kube_ns: str,
    make_dms: Callable[..., DmsDouble],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = deploy(kube_real, kube_ns, tmp_path, source)
    write_state(pod, {**ALICE, **BOB})
    write_passwords(pod)
    async with running_agent(pod, make_dms, tmp_path, caplog, monkeypatch) as run:
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
