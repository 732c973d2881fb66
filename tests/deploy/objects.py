"""Small accessors over rendered Kubernetes objects, shared by the deploy tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

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
