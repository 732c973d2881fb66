"""A small Kubernetes API client: the kubeconfig / in-cluster loader and raw REST over aiohttp.

Why not kubernetes_asyncio here: importing any part of it imports its generated ``client``
package (~37 MB RSS measured), and the agent needs four calls (list, watch, exec, Events). The
wire behaviour this module implements is the one pinned by tests/test_kube_rig.py.

The token is read from a file when there is one (in-cluster, or kubeconfig ``tokenFile``) and
re-read whenever the file changes or the server answers 401, so a rotated service-account token
is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from agent.kube.config import KubeSettings

Query = Sequence[tuple[str, str]]
log = logging.getLogger("dms_agent.kube.client")


class KubeConfigError(Exception):
    """No usable cluster configuration; the message says what is missing."""


class KubeApiError(Exception):
    """The API answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class TokenSource:
    """A bearer token, static or from a file that may be replaced at any time."""

    static: str | None = None
    path: Path | None = None
    _cached: str | None = None
    _stamp: tuple[float, int, int] | None = field(default=None, repr=False)

    def current(self, force: bool = False) -> str | None:
        if self.path is None:
            return self.static
        try:
            st = self.path.stat()  # follows kubelet's ..data symlink
        except OSError:
            return self._cached
        stamp = (st.st_mtime, st.st_size, st.st_ino)
        if force or stamp != self._stamp or self._cached is None:
            self._cached = self.path.read_text(encoding="utf-8").strip()
            self._stamp = stamp
        return self._cached


@dataclass(slots=True)
class ClusterConfig:
    server: str
    namespace: str | None
    token: TokenSource
    ssl: ssl.SSLContext | bool  # False: no verification (insecure-skip-tls-verify)
    origin: str  # "in-cluster" or the kubeconfig path, for messages


def load_cluster_config(
    settings: KubeSettings, environ: Mapping[str, str] | None = None
) -> ClusterConfig:
    """kube.kubeconfig, else $KUBECONFIG, else the in-cluster service account."""
    env = os.environ if environ is None else environ
    path = settings.kubeconfig or (Path(env["KUBECONFIG"]) if env.get("KUBECONFIG") else None)
    if path is not None:
        return _from_kubeconfig(path, settings.context)
    return _in_cluster(settings.service_account_dir, env)


def _in_cluster(sa_dir: Path, env: Mapping[str, str]) -> ClusterConfig:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError(
            "no Kubernetes configuration: set kube.kubeconfig or $KUBECONFIG, or run in a pod "
            "(KUBERNETES_SERVICE_HOST/PORT are not set)"
        )
    token_path = sa_dir / "token"
    if not token_path.is_file():
        raise KubeConfigError(f"in-cluster: no service-account token at {token_path}")
    ns_file = sa_dir / "namespace"
    namespace = ns_file.read_text().strip() if ns_file.is_file() else None
    ctx = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ClusterConfig(
        f"https://{hostport}", namespace, TokenSource(path=token_path), ctx, "in-cluster"
    )


def _named(doc: dict[str, Any], key: str, name: str | None, path: Path) -> dict[str, Any]:
    for entry in doc.get(key) or []:
        if entry.get("name") == name:
            value: dict[str, Any] = entry.get(key[:-1]) or {}
            return value
    raise KubeConfigError(f"{path}: no {key[:-1]} named {name!r}")


def _from_kubeconfig(path: Path, context: str | None) -> ClusterConfig:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"{path}: cannot read kubeconfig: {exc}") from None
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeConfigError(f"{path}: no current-context and no kube.context set")
    ctx = _named(doc, "contexts", ctx_name, path)
    cluster = _named(doc, "clusters", ctx.get("cluster"), path)
    user = _named(doc, "users", ctx.get("user"), path) if ctx.get("user") else {}
    base = path.parent
    if "exec" in user or "auth-provider" in user:
        raise KubeConfigError(f"{path}: exec and auth-provider credentials are not supported")
    server = cluster.get("server")
    if not server:
        raise KubeConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    token_file = user.get("tokenFile")
    token = TokenSource(static=user.get("token"), path=(base / token_file) if token_file else None)
    return ClusterConfig(
        server.rstrip("/"), ctx.get("namespace"), token, _ssl_for(cluster, user, base), str(path)
    )


def _ssl_for(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext | bool:
    if cluster.get("insecure-skip-tls-verify"):
        return False
    # as kubectl: a named CA is the only one trusted (and the system's ~150 roots, 0.7 MB of
    # the agent's memory, are not loaded for it)
    if data := cluster.get("certificate-authority-data"):
        ctx = ssl.create_default_context(cadata=base64.b64decode(data).decode())
    elif ca := cluster.get("certificate-authority"):
        ctx = ssl.create_default_context(cafile=str(base / ca))
    else:
        ctx = ssl.create_default_context()
    cert, key = _material(user, "client-certificate", base), _material(user, "client-key", base)
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def _material(user: dict[str, Any], key: str, base: Path) -> str | None:
    """A PEM file path for ``key`` or ``key-data`` (written to a private temp file)."""
    if data := user.get(f"{key}-data"):
        fd, name = tempfile.mkstemp(prefix="dms-agent-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(data))
        return name
    if value := user.get(key):
        return str(base / value)
    return None


class KubeClient:
    """Raw REST to the API server. One aiohttp session, created in the running loop."""

    def __init__(self, config: ClusterConfig, request_timeout: float = 30.0) -> None:
        self.config = config
        self.request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def namespace(self) -> str | None:
        return self.config.namespace

    def _headers(self, force_token: bool = False) -> dict[str, str]:
        token = self.config.token.current(force_token)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl, limit=8)
            self._session = aiohttp.ClientSession(connector=connector)
            self._loop = loop
        return self._session

    async def close(self, grace: float = 5.0) -> None:
        """Close the session; after ``grace`` seconds stop waiting for its sockets to finish
        closing (a peer that stopped reading must not hold a shutdown or a reload)."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            async with asyncio.timeout(grace):
                await session.close()
        except TimeoutError:
            log.warning("the Kubernetes API session did not close within %g s: left behind", grace)

    async def request(
        self,
        method: str,
        path: str,
        query: Query = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One JSON request; retried once with a re-read token on 401 (rotation)."""
        data = None if body is None else json.dumps(body).encode()
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        for attempt in (0, 1):
            headers = self._headers(force_token=attempt == 1)
            if data is not None:
                headers["Content-Type"] = content_type
            async with self.session().request(
                method,
                self.config.server + path,
                params=list(query),
                data=data,
                headers=headers,
                timeout=timeout,
            ) as resp:
                if resp.status == 401 and attempt == 0:
                    continue
                payload = await resp.read()
                if resp.status >= 400:
                    raise _api_error(resp.status, payload)
                return json.loads(payload) if payload else None
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def stream(
        self, path: str, query: Query, read_timeout: float | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A long GET (a watch). ``read_timeout``: the longest silence allowed, the wait for
        the response's head included (a request sent on a dead pooled connection hears
        nothing at all); it ends in ``aiohttp.SocketTimeoutError``."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.request_timeout, sock_read=read_timeout
        )
        for attempt in (0, 1):
            resp = await self.session().get(
                self.config.server + path,
                params=list(query),
                headers=self._headers(force_token=attempt == 1),
                timeout=timeout,
            )
            try:
                if resp.status == 401 and attempt == 0:
                    continue
                if resp.status >= 400:
                    raise _api_error(resp.status, await resp.read())
                yield resp
                return
            finally:
                resp.release()
                resp.close()

    async def ws_connect(self, path: str, query: Query, protocol: str) -> Any:
        """Open a WebSocket (exec). Returns aiohttp's ClientWebSocketResponse."""
        url = self.config.server.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        for attempt in (0, 1):
            try:
                # The handshake gets the request deadline: without it a pool with no free
                # connection, or a server that never answers, holds the caller for aiohttp's
                # default five minutes.
                async with asyncio.timeout(self.request_timeout):
                    return await self.session().ws_connect(
                        url + path,
                        params=list(query),
                        headers=self._headers(force_token=attempt == 1),
                        protocols=(protocol,),
                        timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                        autoping=True,
                    )
            except TimeoutError:
                raise aiohttp.ServerTimeoutError(
                    f"no WebSocket handshake within {self.request_timeout:g} s"
                ) from None
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401 and attempt == 0:
                    continue
                raise
        raise AssertionError("unreachable")


def _api_error(status: int, payload: bytes) -> KubeApiError:
    try:
        body = json.loads(payload)
        return KubeApiError(status, str(body.get("reason", "")), str(body.get("message", "")))
    except (ValueError, AttributeError):
        return KubeApiError(status, "", payload[:200].decode(errors="replace"))


_CLIENTS: dict[KubeSettings, KubeClient] = {}


def shared_client(settings: KubeSettings) -> KubeClient:
    """One client per settings generation, shared by sources, executor and Events."""
    client = _CLIENTS.get(settings)
    if client is None:
        config = load_cluster_config(settings)
        client = _CLIENTS[settings] = KubeClient(config, settings.request_timeout)
    return client


async def close_shared_clients() -> None:
    """Close every shared client's session (at shutdown and before a settings reload)."""
    clients = list(_CLIENTS.values())
    _CLIENTS.clear()
    for client in clients:
        await client.close()
