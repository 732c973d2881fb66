"""Fixtures: the test API server on a free loopback port, and a kubeconfig pointing at it.

``kube_api`` gives a ``KubeApi``: ``.server`` (fault injection, store, requests), ``.kubeconfig``
(a file using ``tokenFile`` so a rotated token reaches readers of the file), ``.rotate_token()``.
The pod ``mail/dms-0`` exists with containers ``mailserver`` and ``dms-agent``; exec into them
runs local processes (``.container_env`` sets the mailserver's environment, e.g. PATH with the
`setup` double first).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.kube_api.server import KubeApiServer
from tests.kube_api.store import Container
from tests.rig.proc import free_port

NAMESPACE = "mail"
POD = "dms-0"


@dataclass
class KubeApi:
    server: KubeApiServer
    kubeconfig: Path
    token_file: Path
    namespace: str = NAMESPACE
    pod: str = POD
    container_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def rotate_token(self, keep_old: bool = False) -> str:
        """Rotate on the server and in the token file, as kubelet does for a projected token."""
        token = self.server.rotate_token(keep_old)
        tmp = self.token_file.with_suffix(".tmp")
        tmp.write_text(token)
        tmp.replace(self.token_file)
        return token


def write_kubeconfig(path: Path, server_url: str, token_file: Path, namespace: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server_url}}],
        "users": [{"name": "agent", "user": {"tokenFile": str(token_file)}}],
        "contexts": [
            {
                "name": "test",
                "context": {"cluster": "test", "user": "agent", "namespace": namespace},
            }
        ],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))


async def start_kube_api(workdir: Path, bookmark_interval: float = 0.2) -> KubeApi:
    server = KubeApiServer(port=free_port(), bookmark_interval=bookmark_interval)
    await server.start()
    token_file = workdir / "token"
    token_file.write_text(server.token)
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, server.url, token_file, NAMESPACE)
    api = KubeApi(server, kubeconfig, token_file)
    mailserver = Container("mailserver", env=api.container_env)
    server.add_pod(NAMESPACE, POD, [mailserver, Container("dms-agent")])
    return api


@pytest.fixture
async def kube_api(tmp_path: Path) -> AsyncIterator[KubeApi]:
    api = await start_kube_api(tmp_path)
    try:
        yield api
    finally:
        await api.server.stop()
