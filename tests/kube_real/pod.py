"""The agent's identity as the deploy artefacts make it, on the real API server.

``rendered(source)`` renders ``charts-lite/`` (default values) or ``manifests/`` (kustomize);
``AgentPod.deploy`` applies the RBAC objects found there (whatever ServiceAccount, Role,
RoleBinding, ClusterRole and ClusterRoleBinding they hold) into a test namespace, issues a token
for the ServiceAccount by TokenRequest, and lays out what kubelet would mount for the pod:
``token``, ``ca.crt`` and ``namespace`` in a service-account folder. The agent then runs
in-cluster from that folder with ``KUBERNETES_SERVICE_HOST/PORT`` pointing at the server.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import render
from tests.deploy.fixtures import HOW_HELM
from tests.deploy.objects import agent_settings, one
from tests.kube_real.cluster import ApiError, KubeCluster

Doc = dict[str, Any]

RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
_PATHS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


def collection(kind: str, namespace: str) -> str:
    return _PATHS[kind].format(ns=namespace)


def rendered(source: str, sets: Sequence[str] = ()) -> list[Doc]:
    """The objects ``charts-lite/`` (default values, or ``sets``) or ``manifests/`` give an
    admin."""
    if source == "chart":
        helm = render.require_tool("helm", HOW_HELM)
        return render.load_docs(render.helm_template(helm, sets))
    kubectl = render.require_tool("kubectl", HOW_HELM)
    proc = render.run([kubectl, "kustomize", str(render.MANIFESTS)])
    assert proc.returncode == 0, proc.stderr
    return render.load_docs(proc.stdout)


def create(cluster: KubeCluster, namespace: str, doc: Doc) -> Doc:
    """Create one object as the admin; namespaced ones go into ``namespace``."""
    body = dict(doc)
    meta = dict(body.get("metadata") or {})
    if not doc["kind"].startswith("Cluster"):
        meta["namespace"] = namespace
    body["metadata"] = meta
    answer: Doc = cluster.admin.post(collection(doc["kind"], namespace), body)
    return answer


@dataclass
class AgentPod:
    cluster: KubeCluster
    namespace: str
    service_account: str
    sa_dir: Path
    settings: Doc  # the agent's settings.yaml as rendered

    @classmethod
    def deploy(cls, cluster: KubeCluster, namespace: str, docs: list[Doc], root: Path) -> AgentPod:
        for doc in docs:
            if doc["kind"] in RBAC_KINDS:
                create(cluster, namespace, doc)
        account = one(docs, "ServiceAccount")["metadata"]["name"]
        sa_dir = root / "serviceaccount"
        sa_dir.mkdir(parents=True)
        (sa_dir / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
        (sa_dir / "namespace").write_text(namespace)
        pod = cls(cluster, namespace, account, sa_dir, agent_settings(docs))
        pod.write_token(pod.new_token())
        return pod

    def new_token(self) -> str:
        return self.cluster.token_for(self.namespace, self.service_account)

    @property
    def token(self) -> str:
        return (self.sa_dir / "token").read_text()

    def write_token(self, token: str) -> None:
        """Replace the token file in one step, as kubelet's atomic writer does."""
        tmp = self.sa_dir / ".token.tmp"
        tmp.write_text(token)
        os.replace(tmp, self.sa_dir / "token")

    def source_names(self) -> dict[str, str]:
        """kind (configmap/secret) -> the object name the rendered settings watch."""
        return {s["kind"]: s["name"] for s in self.settings["sources"] if s.get("name")}

    def environ(self, port: int | None = None) -> dict[str, str]:
        """What kubelet gives the pod to find the API server (``port``: another one's)."""
        return {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(port or self.cluster.port),
            "POD_NAMESPACE": self.namespace,
        }

    # ---- objects, written as the admin ----------------------------------------------------
    def put(self, kind: str, name: str, body: Doc) -> Doc:
        """Create or replace a ConfigMap/Secret ``name`` with ``body`` (data / stringData …)."""
        path = collection(kind, self.namespace)
        full = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **body}
        try:
            current = self.cluster.admin.get(f"{path}/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            answer: Doc = self.cluster.admin.post(path, full)
            return answer
        full["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        answer = self.cluster.admin.put(f"{path}/{name}", full)
        return answer

    def delete(self, kind: str, name: str) -> None:
        self.cluster.admin.delete(f"{collection(kind, self.namespace)}/{name}")


def state_yaml(accounts: dict[str, Doc], aliases: dict[str, list[str]] | None = None) -> str:
    doc: Doc = {"apiVersion": "dms-agent/v1", "accounts": accounts}
    if aliases:
        doc["aliases"] = aliases
    return yaml.safe_dump(doc, sort_keys=False)
