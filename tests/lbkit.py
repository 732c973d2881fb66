"""Shared parts of the lb tests: the HAProxy host (real webhook + real haproxy + the example
receiver script), test backends standing in for the pod's mail ports, and agent runners."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.app import AgentContext
from agent.lb.component import LbComponent
from agent.settings import Settings
from agent.status import StatusRegistry
from tests.rig.haproxy import HAProxy
from tests.rig.proc import free_port
from tests.rig.webhook import Webhook, WebhookFactory

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "poor-mans-lb"
CLIENT_SOURCE = "127.0.0.9"  # the "real client address" HAProxy must pass on with PROXY v1


@dataclass
class LbHost:
    """The HAProxy host: webhook serving the example hooks.json, the example script, HAProxy."""

    factory: WebhookFactory
    haproxy: HAProxy
    config: Path  # the file the script owns
    state_dir: Path
    hmac_key: Path  # what the agent reads (the receiver got the same key at start)
    token: Path
    hooks: Path
    env: dict[str, str]
    port: int
    webhook: Webhook | None = None
    tls: tuple[Path, Path] | None = None  # (cert, key): serve HTTPS

    def start_webhook(self) -> Webhook:
        self.webhook = self.factory.start(
            self.hooks, env=self.env, template=True, port=self.port, tls=self.tls
        )
        return self.webhook

    def url(self, hook_id: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hooks/{hook_id}"

    @property
    def v2_url(self) -> str:
        return self.url("dms-lb")

    @property
    def legacy_url(self) -> str:
        return self.url("update-haproxy")

    def triggered(self, hook_id: str) -> int:
        assert self.webhook is not None
        return self.webhook.triggered(hook_id)

    def state(self) -> dict[str, Any]:
        path = self.state_dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}


def run_example_hook(
    tmp_path: Path, fmt: str, doc: object, **env: str
) -> tuple[int, dict[str, Any]]:
    """The example receiver script run once, as webhook runs it: (exit status, result line)."""
    environ = {
        **os.environ,
        "LB_STATE_DIR": str(tmp_path / "state"),
        "LB_HAPROXY_CONFIG": str(tmp_path / "dms-lb.cfg"),
        "LB_HAPROXY_CHECK": "true",  # these cases stop before or test around HAProxy
        "LB_RELOAD": "true",
        **env,
    }
    script = str(EXAMPLE / "dms-lb-hook.py")
    payload = doc if isinstance(doc, str) else json.dumps(doc)
    done = subprocess.run(
        [sys.executable, script, fmt, payload], env=environ, capture_output=True, text=True
    )
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def example_hooks(dest: Path) -> Path:
    """The example hooks.json, pointing at the example script in this checkout."""
    hooks = json.loads((EXAMPLE / "hooks.json").read_text())
    for hook in hooks:
        hook["execute-command"] = str(EXAMPLE / "dms-lb-hook.py")
    dest.write_text(json.dumps(hooks, indent=1))
    return dest


def setup_host(
    webhook: WebhookFactory,
    haproxy: HAProxy,
    tmp_path: Path,
    start: bool = True,
    tls: tuple[Path, Path] | None = None,
) -> LbHost:
    """HAProxy running with an empty dms-lb.cfg; webhook started unless ``start=False``."""
    config = tmp_path / "dms-lb.cfg"
    config.write_text("")
    base = haproxy.base_config()
    haproxy.start(base, config)
    hmac_key, token = tmp_path / "hmac.key", tmp_path / "token"
    hmac_key.write_text("k3y-for-tests-0123456789\n")  # the trailing newline is stripped
    token.write_text("t0ken-for-tests\n")
    env = {
        "DMS_LB_HMAC_KEY": "k3y-for-tests-0123456789",
        "DMS_LB_TOKEN": "t0ken-for-tests",
        "LB_STATE_DIR": str(tmp_path / "state"),
        "LB_HAPROXY_CONFIG": str(config),
        "LB_HAPROXY_CHECK": " ".join([haproxy.binary, "-c", "-f", str(base)]),
        "LB_RELOAD": " ".join(haproxy.reload_argv),
        "LB_BIND": "127.0.0.1",
    }
    hooks = example_hooks(tmp_path / "hooks.json")
    host = LbHost(
        webhook, haproxy, config, tmp_path / "state", hmac_key, token, hooks, env, free_port()
    )
    host.tls = tls
    if start:
        host.start_webhook()
    return host


@pytest.fixture
def lb_host(webhook: WebhookFactory, haproxy: HAProxy, tmp_path: Path) -> LbHost:
    return setup_host(webhook, haproxy, tmp_path)


# ---- the original receiver ---------------------------------------------------------------

ORIGINAL_HOOK = Path(__file__).resolve().parent / "rig" / "original_lb" / "update-haproxy.sh"
ORIGINAL_ARGUMENTS = ("name", "frontend-port", "backend-port", "dst-ip", "action")
ORIGINAL_TOKEN = "t0ken-for-tests"


def original_hooks(workdir: Path, confirm: bool = False) -> list[dict[str, Any]]:
    """The original receiver's hooks.json: hook ``update-haproxy`` passes five payload values
    as arguments when ``X-Funkypenguin-Token`` matches, and (without ``confirm``) answers 200
    with an empty body at once, before the script runs. ``confirm`` adds what the docs tell
    users to add: the script's output in the response."""
    hook: dict[str, Any] = {
        "id": "update-haproxy",
        "execute-command": str(ORIGINAL_HOOK),
        "command-working-directory": str(workdir),
        "pass-arguments-to-command": [
            {"source": "payload", "name": name} for name in ORIGINAL_ARGUMENTS
        ],
        "trigger-rule": {
            "match": {
                "type": "value",
                "value": ORIGINAL_TOKEN,
                "parameter": {"source": "header", "name": "X-Funkypenguin-Token"},
            }
        },
    }
    if confirm:
        hook["include-command-output-in-response"] = True
    return [hook]


@dataclass
class OriginalHost:
    """The original receiver: webhook + the rebuilt ``update-haproxy.sh`` + HAProxy running
    the single config file the script writes."""

    factory: WebhookFactory
    haproxy: HAProxy
    workdir: Path  # the hook's working directory: parts/, candidate.cfg, haproxy.cfg
    token: Path
    env: dict[str, str]
    port: int
    webhook: Webhook | None = None

    def start_webhook(self, confirm: bool = False) -> Webhook:
        if self.webhook is not None:
            self.webhook.stop()
        hooks = original_hooks(self.workdir, confirm)
        self.webhook = self.factory.start(hooks, env=self.env, port=self.port)
        return self.webhook

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/update-haproxy"

    def triggered(self) -> int:
        assert self.webhook is not None
        return self.webhook.triggered("update-haproxy")

    def part(self, frontend: int) -> str:
        path = self.workdir / "parts" / f"{frontend}.inc"
        return path.read_text() if path.exists() else ""


def setup_original_host(webhook: WebhookFactory, haproxy: HAProxy, tmp_path: Path) -> OriginalHost:
    workdir = tmp_path / "original"
    (workdir / "parts").mkdir(parents=True)
    base = haproxy.base_config().read_text()
    (workdir / "parts" / "global").write_text(base)
    config = workdir / "haproxy.cfg"
    config.write_text(base)
    haproxy.start(config)
    token = tmp_path / "token"
    token.write_text(ORIGINAL_TOKEN + "\n")
    env = {
        "RELOAD": " ".join(haproxy.reload_argv),
        "BIND": "127.0.0.1",
        "HAPROXY": haproxy.binary,
    }
    host = OriginalHost(webhook, haproxy, workdir, token, env, free_port())
    host.start_webhook()
    return host


# ---- the pod's side: test backends ------------------------------------------------------


@dataclass
class Backend:
    """A TCP server standing in for the pod's SMTP port: greets with its label and the PROXY
    header it received (``-`` for none). With ``proxy`` it waits for that header first (as a
    mailserver with postscreen_upstream_proxy_protocol does); without, it greets at once and
    still records a PROXY line that arrives unasked."""

    label: str
    host: str
    port: int
    proxy: bool
    proxy_lines: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = "-"
        if self.proxy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    seen = await self._proxy_line(reader) or "-"
        writer.write(f"220 {self.label} {seen}\r\n".encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            if not self.proxy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._proxy_line(reader)
        writer.close()

    async def _proxy_line(self, reader: asyncio.StreamReader) -> str | None:
        line = await reader.readline()
        if line.startswith(b"PROXY "):
            self.proxy_lines.append(line.decode().strip())
            return self.proxy_lines[-1]
        return None


@contextlib.asynccontextmanager
async def backend(
    label: str, host: str, port: int | None = None, proxy: bool = False
) -> AsyncIterator[Backend]:
    b = Backend(label, host, port or free_port(host), proxy)
    b.server = await asyncio.start_server(b._handle, host, b.port)
    try:
        yield b
    finally:
        b.server.close()
        await b.server.wait_closed()


async def probe(port: int, source: str = CLIENT_SOURCE) -> tuple[str, int]:
    """Connect to HAProxy's frontend from ``source``: (the backend's greeting, client port)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    client_port = writer.get_extra_info("sockname")[1]
    try:
        async with asyncio.timeout(3):
            line = await reader.readline()
    finally:
        writer.close()
    return line.decode().strip(), client_port


async def wait_route(port: int, label: str, timeout: float = 30.0) -> tuple[str, int]:
    """Probe until the frontend reaches the backend ``label`` (a reload takes a moment)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            greeting, client_port = await probe(port)
            if greeting.split()[1:2] == [label]:
                return greeting, client_port
            last = greeting
        except (OSError, TimeoutError, IndexError) as exc:
            last = repr(exc)
        await asyncio.sleep(0.05)
    raise AssertionError(f"frontend {port} never reached {label}; last: {last}")


# ---- the agent's side -------------------------------------------------------------------


@dataclass
class RunningAgent:
    ctx: AgentContext
    component: LbComponent
    task: asyncio.Task[None]

    def status(self) -> dict[str, Any]:
        snap: dict[str, Any] = self.ctx.status.snapshot()["components"]["lb"]
        return snap

    def target(self, label: str | None = None) -> dict[str, Any]:
        targets: dict[str, Any] = self.status()["details"]["targets"]
        return targets[label] if label else next(iter(targets.values()))

    async def wait(self, predicate: Callable[[RunningAgent], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if self.task.done():
                self.task.result()  # a crash: show it
            if time.monotonic() > deadline:
                raise AssertionError(f"lb status never got there: {self.status()}")
            await asyncio.sleep(0.02)

    async def stop(self, shutdown: bool = False) -> None:
        """Cancel the component; ``shutdown`` as on SIGTERM (not a settings reload)."""
        if shutdown:
            self.ctx.hub.shutting_down.set(True)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def lb_settings(**lb: Any) -> Settings:
    return Settings.model_validate({"lb": {"enabled": True, **lb}})


def start_agent(settings: Settings, environ: dict[str, str] | None = None) -> RunningAgent:
    ctx = AgentContext(settings=settings, status=StatusRegistry())
    component = LbComponent(ctx, environ=environ or {})
    task = asyncio.create_task(component.run(), name="lb")
    return RunningAgent(ctx, component, task)


def ok(agent: RunningAgent) -> bool:
    return bool(agent.status()["state"] == "ok")


def failed_times(n: int) -> Callable[[RunningAgent], bool]:
    def check(agent: RunningAgent) -> bool:
        targets = agent.status()["details"]["targets"].values()
        return all(t["consecutiveFailures"] >= n for t in targets)

    return check
