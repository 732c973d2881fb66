"""Small accessors over rendered Kubernetes objects, shared by the deploy tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from agent.settings import Settings, load_settings

Doc = dict[str, Any]


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: Iterable[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def pod_spec(docs: Iterable[Doc]) -> Doc:
    spec: Doc = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def container(docs: Iterable[Doc], name: str) -> Doc:
    spec = pod_spec(docs)
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name}")


def agent_settings(docs: Iterable[Doc]) -> Doc:
    docs = list(docs)
    name = one(docs, "StatefulSet")["metadata"]["name"] + "-agent"
    data: Doc = yaml.safe_load(one(docs, "ConfigMap", name)["data"]["settings.yaml"])
    return data


def secret_data(secret: Doc, key: str) -> str:
    value: str = secret["stringData"][key]
    return value


def all_volume_mounts(docs: Iterable[Doc]) -> list[Doc]:
    spec = pod_spec(docs)
    return [
        m
        for c in [*spec.get("initContainers", []), *spec["containers"]]
        for m in c.get("volumeMounts", [])
    ]


def load_pod_settings(docs: Iterable[Doc], folder: Path) -> Settings:
    """The agent's settings as the agent in the pod loads them: the ConfigMap its volume
    ``dms-env`` names is written out as kubelet mounts it (one file per key), and
    ``dms.environmentFrom`` points there instead of the pod's mount path."""
    docs = list(docs)
    settings = agent_settings(docs)
    env_folder = folder / "dms-env"
    env_folder.mkdir(parents=True, exist_ok=True)
    source = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "dms-env")
    for key, value in one(docs, "ConfigMap", source["configMap"]["name"])["data"].items():
        (env_folder / key).write_text(value)
    settings["dms"]["environmentFrom"] = str(env_folder)
    path = folder / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_settings(path, environ={})
