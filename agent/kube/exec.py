"""KubeExecExecutor: run a command in the mailserver container of this pod over the exec API.

WebSocket subprotocol ``v4.channel.k8s.io``: binary frames, first byte the channel (0 stdin,
1 stdout, 2 stderr, 3 status). The exit code exists only in the Status on channel 3 (a client
that just collects output loses it). v4 cannot close stdin, so ``stdin`` must hold complete
answers (the command stops reading by itself). The deadline is enforced inside the container
(``timeout -k 5 N``) so a stuck command dies where it runs; if the stream ends or stalls without
a Status the outcome is unknown (``exit_code=None``): the caller observes again.

RBAC: exec needs ``get`` and ``create`` on ``pods/exec``; a 403 raises ExecForbidden naming them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from prometheus_client import Counter, Histogram

from agent.executor import Result
from agent.kube.client import KubeClient, shared_client
from agent.metrics import REGISTRY
from agent.settings import Settings

V4 = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
KILL_AFTER = 5  # seconds between TERM and KILL inside the container
TIMEOUT_EXIT_CODES = frozenset({124, 137})  # timeout(1): TERM expired / had to KILL

EXEC_COMMANDS = Counter(
    "dms_agent_kube_exec_commands_total",
    "Commands run through Kubernetes exec, by result (ok, failed, timeout, unknown, forbidden).",
    ["result"],
    registry=REGISTRY,
)
EXEC_SECONDS = Histogram(
    "dms_agent_kube_exec_duration_seconds",
    "Wall time of one exec: connect, run, status.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)


class ExecForbidden(PermissionError):
    """RBAC refuses exec: a configuration problem, not a command's failure."""


class ExecUnavailable(ConnectionError):
    """The exec stream could not be opened: the command did not start."""


def exit_code_of(status: dict[str, Any]) -> int | None:
    """``Success`` -> 0; ``NonZeroExitCode`` -> its code; another Failure (the command could not
    start) -> 126, as a shell says "cannot execute"; unreadable -> None (unknown)."""
    if status.get("status") == "Success":
        return 0
    causes = (status.get("details") or {}).get("causes") or []
    for cause in causes:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", ""))
            except ValueError:
                return None
    return 126 if status.get("status") == "Failure" else None


class KubeExecExecutor:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        pod: str,
        container: str,
        margin: float = 10.0,
        use_timeout: bool = True,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.margin = margin
        self.use_timeout = use_timeout
        self.path = f"/api/v1/namespaces/{namespace}/pods/{pod}/exec"

    def command(self, argv: Sequence[str], timeout: float) -> list[str]:
        if not self.use_timeout:
            return list(argv)
        return ["timeout", "-k", str(KILL_AFTER), str(max(1, math.ceil(timeout))), *argv]

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        started = time.monotonic()
        query = [
            ("container", self.container),
            ("stdin", "true" if stdin is not None else "false"),
            ("stdout", "true"),
            ("stderr", "true"),
            ("tty", "false"),
            *(("command", part) for part in self.command(argv, timeout)),
        ]
        try:
            ws = await self.client.ws_connect(self.path, query, V4)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 403:
                EXEC_COMMANDS.labels("forbidden").inc()
                raise ExecForbidden(
                    f"RBAC forbids exec into pod {self.namespace}/{self.pod}: the agent's service "
                    f'account needs verbs "get" and "create" on resource "pods/exec" in namespace '
                    f"{self.namespace} (HTTP 403)"
                ) from None
            raise ExecUnavailable(f"exec into {self.namespace}/{self.pod}: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ExecUnavailable(f"exec into {self.namespace}/{self.pod}: {exc}") from None
        deadline = timeout + KILL_AFTER + self.margin
        try:
            code, out, err, timed_out = await self._converse(ws, stdin, deadline)
        finally:
            await ws.close()
        duration = time.monotonic() - started
        EXEC_SECONDS.observe(duration)
        if code in TIMEOUT_EXIT_CODES and self.use_timeout:
            code, timed_out = None, True  # killed by the deadline mid-way: outcome unknown
        EXEC_COMMANDS.labels(_result_label(code, timed_out)).inc()
        return Result(
            code,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
            duration,
            timed_out,
        )

    async def _converse(
        self, ws: Any, stdin: str | None, deadline: float
    ) -> tuple[int | None, bytes, bytes, bool]:
        out, err = bytearray(), bytearray()
        if stdin is not None:
            await ws.send_bytes(bytes([STDIN]) + stdin.encode("utf-8"))
        try:
            async with asyncio.timeout(deadline):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                        continue
                    channel, data = msg.data[0], msg.data[1:]
                    if channel == STDOUT:
                        out += data
                    elif channel == STDERR:
                        err += data
                    elif channel == STATUS:
                        try:
                            status = json.loads(data)
                        except ValueError:
                            return None, bytes(out), bytes(err), False
                        return exit_code_of(status), bytes(out), bytes(err), False
        except TimeoutError:
            return None, bytes(out), bytes(err), True
        return None, bytes(out), bytes(err), False  # stream ended without a status: unknown


def _result_label(code: int | None, timed_out: bool) -> str:
    if timed_out:
        return "timeout"
    if code is None:
        return "unknown"
    return "ok" if code == 0 else "failed"


def build_kube_executor(settings: Settings) -> KubeExecExecutor:
    """For ``dms.executor.kind: kube``: this pod's mailserver container (downward API)."""
    ex = settings.dms.executor
    client = shared_client(settings.kube)
    pod = ex.pod or os.environ.get("POD_NAME")
    namespace = ex.namespace or os.environ.get("POD_NAMESPACE") or client.namespace
    if not pod or not namespace:
        raise ValueError(
            "dms.executor.kind: kube needs the pod and namespace: set dms.executor.pod/namespace "
            "or POD_NAME/POD_NAMESPACE from the downward API"
        )
    return KubeExecExecutor(client, namespace, pod, ex.container, settings.kube.exec_margin)
