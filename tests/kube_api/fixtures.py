"""Fixtures: the test API server on a free loopback port, and a kubeconfig pointing at it.

``kube_api`` gives a ``KubeApi``: ``.server`` (fault injection, store, requests),
``.kubeconfig`` (a file using ``tokenFile`` so a rotated token reaches readers of the file),
``.rotate_token()``. ``kube_api_tls`` is the same over HTTPS, its CA in ``ca.crt`` beside the
kubeconfig and the token (the layout of a service-account mount).
The pod ``mail/dms-0`` exists with containers ``mailserver`` and ``dms-agent``; exec into them
runs local processes (``.container_env`` sets the mailserver's environment, e.g. PATH with the
`setup` double first).
"""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.kube_api.server import KubeApiServer
from tests.kube_api.store import Container
from tests.rig.proc import free_port, require_binary

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


def write_kubeconfig(
    path: Path, server_url: str, token_file: Path, namespace: str, tls: bool = False
) -> None:
    cluster: dict[str, str] = {"server": server_url}
    if tls:
        cluster["certificate-authority"] = str(path.parent / "ca.crt")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
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


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA (the real openssl; ~50 ms)."""
    openssl = require_binary("openssl", "openssl")
    cert, key = workdir / "apiserver.crt", workdir / "apiserver.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=kube-apiserver", "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def start_kube_api(
    workdir: Path, bookmark_interval: float = 0.2, tls: bool = False
) -> KubeApi:
    """Start the server; with ``tls`` it serves HTTPS and ``workdir/ca.crt`` verifies it."""
    context = None
    kubeconfig = workdir / "kubeconfig"
    if tls:
        cert, key = self_signed(workdir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        (workdir / "ca.crt").write_bytes(cert.read_bytes())
    server = KubeApiServer(
        port=free_port(), bookmark_interval=bookmark_interval, ssl_context=context
    )
    await server.start()
    token_file = workdir / "token"
    token_file.write_text(server.token)
    write_kubeconfig(kubeconfig, server.url, token_file, NAMESPACE, tls)
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


@pytest.fixture
async def kube_api_tls(tmp_path: Path) -> AsyncIterator[KubeApi]:
    """The same over HTTPS; ``tmp_path/ca.crt`` is the CA, as a service account mounts it."""
    api = await start_kube_api(tmp_path, tls=True)
    try:
        yield api
    finally:
        await api.server.stop()
