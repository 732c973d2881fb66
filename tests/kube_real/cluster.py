"""A real Kubernetes API server for tests: etcd + kube-apiserver on free loopback ports.

The binaries are the ones ``.ci/build-kube`` builds from Go modules into a cache folder keyed by
the versions pinned in ``.ci/kube-versions``. The API server serves HTTPS with a self-signed
certificate for 127.0.0.1, authorizes with RBAC, knows one static admin token (group
system:masters, for the test itself) and has service-account signing keys, so ``TokenRequest``
issues real bound tokens. Both processes get SIGTERM from the kernel when the test process dies.

A bare API server runs no controllers: a deleted namespace stays Terminating, no ``default``
ServiceAccount nor ``kube-root-ca.crt`` appears, pods stay Pending, exec and logs cannot work.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.kube_api.fixtures import self_signed
from tests.rig.proc import Daemon, free_port, require_binary

REPO = Path(__file__).resolve().parents[2]
ISSUER = "https://kubernetes.default.svc.cluster.local"


def pinned_versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / ".ci" / "kube-versions").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            pins[key.strip()] = value.strip()
    return {k: os.environ.get(k, v) for k, v in pins.items()}


def binary_dir() -> Path:
    """Where .ci/build-kube puts (or put) this pair of versions."""
    pins = pinned_versions()
    cache = os.environ.get("KUBE_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dms-agent" / "kube"
    )
    return Path(cache) / f"kube-{pins['KUBE_VERSION']}-etcd-{pins['ETCD_VERSION']}"


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('message', body)}")
        self.status = status
        self.body = body


class Rest:
    """Blocking JSON REST with one bearer token (a test's admin calls: a few ms each)."""

    def __init__(self, url: str, ca_file: Path, token: str) -> None:
        self.url = url
        self.token = token
        self.ssl = ssl.create_default_context(cafile=str(ca_file))

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {"message": raw.decode(errors="replace")}
            raise ApiError(exc.code, parsed) from None
        return json.loads(payload) if payload else None

    def text(self, path: str, timeout: float = 5.0) -> str:
        request = urllib.request.Request(self.url + path)
        request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=timeout) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, {"message": exc.read().decode(errors="replace")}) from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.call("PATCH", path, body, "application/merge-patch+json")

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    def status_of(self, method: str, path: str, body: Any = None) -> int:
        """The HTTP status of one call (200 … or the error's)."""
        try:
            self.call(method, path, body)
        except ApiError as exc:
            return exc.status
        return 200


class ApiServer:
    """One kube-apiserver process over the cluster's etcd, on its own port; it can be killed
    and started again on that port."""

    def __init__(self, cluster: KubeCluster, flags: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.flags = flags
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.admin = Rest(self.url, cluster.ca_file, cluster.admin_token)
        self.daemon: Daemon | None = None
        self.starts: list[float] = []
        self._begun = 0.0

    def start(self, timeout: float = 120.0) -> None:
        """Start (or start again); returns once /readyz answers ok."""
        self.spawn()
        self.wait_started(timeout)

    def spawn(self) -> None:
        """Start the process. Call it from the main thread: the child is told to die with the
        thread that made it (PR_SET_PDEATHSIG), and a worker thread may end any time."""
        self._begun = time.monotonic()
        name = f"kube-apiserver-{self.port}-{len(self.starts)}"  # one log per start
        argv = [*self.cluster.apiserver_argv(self.port), *self.flags]
        self.daemon = Daemon(name, argv, self.cluster.workdir)

    def wait_started(self, timeout: float = 120.0) -> None:
        """Block until /readyz answers ok (fine in a worker thread: ``asyncio.to_thread``)."""
        assert self.daemon is not None
        self.daemon.wait_tcp("127.0.0.1", self.port, timeout=timeout)
        self._wait_ready(time.monotonic() + timeout)
        self.starts.append(time.monotonic() - self._begun)

    async def restart_async(self) -> None:
        """Start again from a test's event loop: spawned here, waited for in a thread."""
        self.spawn()
        await asyncio.to_thread(self.wait_started)

    def _wait_ready(self, deadline: float) -> None:
        last = ""
        assert self.daemon is not None
        while time.monotonic() < deadline and self.daemon.proc.poll() is None:
            try:
                if self.admin.text("/readyz") == "ok":
                    return
            except (ApiError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        log = self.daemon.logs()[-4000:]
        raise RuntimeError(f"kube-apiserver not ready: {last}\n--- log (tail) ---\n{log}")

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed API server goes."""
        assert self.daemon is not None
        self.daemon.proc.kill()
        self.daemon.proc.wait()
        self.daemon.stop()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop(timeout=10)


class KubeCluster:
    """etcd + kube-apiserver in ``workdir``; ``admin`` is a Rest with the admin token."""

    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.etcd: Daemon | None = None
        self.etcd_port = free_port()
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.admin_token = secrets.token_urlsafe(24)
        self.ca_file = workdir / "ca.crt"
        self.startup_seconds = 0.0
        self._write_credentials()
        self.apiserver = ApiServer(self)
        self.port, self.url, self.admin = (
            self.apiserver.port,
            self.apiserver.url,
            self.apiserver.admin,
        )

    # ---- start / stop ---------------------------------------------------------------------
    def start(self) -> None:
        begun = time.monotonic()
        self._start_etcd()
        self.apiserver.start()
        self.startup_seconds = time.monotonic() - begun

    @property
    def apiserver_starts(self) -> list[float]:
        return self.apiserver.starts

    def _write_credentials(self) -> None:
        openssl = require_binary("openssl", "openssl")
        cert, key = self_signed(self.workdir)
        self.ca_file.write_bytes(cert.read_bytes())
        self.cert, self.key = cert, key
        self.sa_key = self.workdir / "sa.key"
        self.sa_pub = self.workdir / "sa.pub"
        run = dict(check=True, capture_output=True)
        subprocess.run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", str(self.sa_key)], **run)  # fmt: skip
        subprocess.run([openssl, "pkey", "-in", str(self.sa_key), "-pubout",
                        "-out", str(self.sa_pub)], **run)  # fmt: skip
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},test-admin,test-admin-uid,"system:masters"\n')
        tokens.chmod(0o600)
        self.tokens_file = tokens

    def _start_etcd(self) -> None:
        data = self.workdir / "etcd-data"
        peer = free_port()
        argv = [
            str(self.bin_dir / "etcd"),
            "--name=test",
            f"--data-dir={data}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=test=http://127.0.0.1:{peer}",
            "--log-level=warn",
            "--unsafe-no-fsync",  # a throwaway store: durability costs start-up and write time
        ]
        self.etcd = Daemon("etcd", argv, self.workdir)
        self.etcd.wait_tcp("127.0.0.1", self.etcd_port, timeout=30)

    def apiserver_argv(self, port: int) -> list[str]:
        return [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir}",
            f"--tls-cert-file={self.cert}",
            f"--tls-private-key-file={self.key}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={self.tokens_file}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={self.sa_pub}",
            f"--service-account-signing-key-file={self.sa_key}",
            f"--service-account-issuer={ISSUER}",
            # dual-stack Service ranges (configuration only: nothing is routed), so a chart knob
            # asking for IPv6 Services meets a cluster that has them
            "--service-cluster-ip-range=10.96.0.0/24,fd00:10:96::/112",
            "--profiling=false",
            "--v=1",
        ]

    def start_apiserver(self) -> None:
        self.apiserver.start()

    def kill_apiserver(self) -> None:
        self.apiserver.kill()

    def extra_apiserver(self, *flags: str) -> ApiServer:
        """A second API server over the same etcd (e.g. ``--watch-cache=false``), started;
        the caller stops it."""
        server = ApiServer(self, flags)
        try:
            server.start()
        except Exception:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        self.apiserver.stop()
        if self.etcd is not None:
            self.etcd.stop(timeout=10)

    # ---- what tests need ------------------------------------------------------------------
    def create_namespace(self, name: str) -> None:
        self.admin.post("/api/v1/namespaces", {"metadata": {"name": name}})

    def token_for(
        self, namespace: str, service_account: str, seconds: int = 3600, audience: str = ""
    ) -> str:
        """A real bound token for the ServiceAccount (TokenRequest), as kubelet projects it."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        spec["audiences"] = [audience or ISSUER]
        answer = self.admin.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        token: str = answer["status"]["token"]
        return token

    def as_token(self, token: str) -> Rest:
        return Rest(self.url, self.ca_file, token)

    def etcd_revision(self) -> int:
        answer = self._etcd("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        return int(answer["header"]["revision"])

    def compact_etcd(self, revision: int | None = None) -> int:
        """Compact etcd's history up to ``revision`` (default: now) through its JSON gateway,
        as the API server's own compactor does every few minutes."""
        rev = self.etcd_revision() if revision is None else revision
        self._etcd("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def _etcd(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.etcd_url + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def kubeconfig(
        self,
        path: Path,
        token: str | None = None,
        namespace: str = "default",
        token_file: Path | None = None,
    ) -> Path:
        """A kubeconfig for kubectl/helm or the agent: the admin token unless told otherwise;
        ``token_file`` makes readers re-read the file (a projected, rotating token)."""
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        user: dict[str, str] = (
            {"tokenFile": str(token_file)} if token_file else {"token": token or self.admin_token}
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "real",
                    "cluster": {"server": self.url, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": "user", "user": user}],
            "contexts": [
                {
                    "name": "real",
                    "context": {"cluster": "real", "user": "user", "namespace": namespace},
                }
            ],
            "current-context": "real",
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path
