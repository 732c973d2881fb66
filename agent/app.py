"""Builds the components from the settings and supervises them.

Each component is a long-running coroutine (``run()``) wrapped by ``supervise``: a crash is
logged, shown in /status and a metric, and the component restarts after an exponential backoff,
while its siblings keep running (a bare TaskGroup would cancel them all). Work that must not be
cut by shutdown (a running `setup` command) protects itself with ``asyncio.shield``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import random
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

from agent import __version__
from agent.errors import CannotStart
from agent.events import EventSink, LogEventSink
from agent.executor import DockerExecutor, Executor, LocalExecutor
from agent.hub import Hub
from agent.metrics import COMPONENT_RESTARTS, COMPONENT_UP, SETTINGS_RELOADS
from agent.settings import Settings, SourceSettings
from agent.status import State, StatusRegistry

log = logging.getLogger("dms_agent.app")


class Component(Protocol):
    name: str

    async def run(self) -> None:
        """Run until cancelled. Raising means a crash: the supervisor restarts it."""


@dataclass(slots=True)
class AgentContext:
    """What every component may use. Built once per settings generation."""

    settings: Settings
    status: StatusRegistry
    hub: Hub = field(default_factory=Hub)
    events: EventSink = field(default_factory=LogEventSink)
    executor: Executor | None = None
    # held around every `setup` command and every write to DMS's config folder: DMS takes no
    # lock for add/update/alias/quota and loses writes under concurrency (dms-facts)
    setup_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


Builder = Callable[[AgentContext], Sequence[Component]]

# Each capability's builder as "module:function", imported when the agent starts (capabilities
# import this module for AgentContext, so naming them here by string avoids an import cycle).
BUILDERS: list[str | Builder] = [
    "agent.sources.build:build",
    "agent.reconcile.reconciler:build",
    "agent.dkim:build",
    "agent.dns:build",
    "agent.lb:build",
    "agent.checks:build",
    "agent.mailflow:build",
]


def resolve_builder(entry: str | Builder) -> Builder:
    if not isinstance(entry, str):
        return entry
    module, _, func = entry.partition(":")
    builder: Builder = getattr(importlib.import_module(module), func)
    return builder


def build_executor(settings: Settings) -> Executor | None:
    """The executor the settings ask for; None for ``kind: file`` (no DMS: the file applier)."""
    ex = settings.dms.executor
    if ex.kind == "local":
        return LocalExecutor()
    if ex.kind == "docker":
        return DockerExecutor(ex.container)
    if ex.kind == "kube":
        # lazily: only kube users pay for kubernetes_asyncio
        kube_exec = importlib.import_module("agent.kube.exec")
        return cast(Executor, kube_exec.build_kube_executor(settings))
    return None


@dataclass(slots=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        base: float = min(self.maximum, self.initial * self.factor**attempt)
        return base * (0.5 + random.random() / 2)  # jitter: never a thundering herd


async def supervise(
    component: Component, status: StatusRegistry, backoff: Backoff | None = None
) -> None:
    """Run ``component`` forever, restarting it after crashes with exponential backoff."""
    backoff = backoff or Backoff()
    entry = status.component(component.name)
    attempt = 0
    while True:
        COMPONENT_UP.labels(component.name).set(1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await component.run()
            log.info("component %s finished", component.name)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a crash of one component never takes the others down
            COMPONENT_UP.labels(component.name).set(0)
            COMPONENT_RESTARTS.labels(component.name).inc()
            entry.restarts += 1
            entry.last_crash = f"{type(exc).__name__}: {exc}"
            if loop.time() - started > backoff.maximum:
                attempt = 0  # it ran well for a while: start the backoff over
            delay = backoff.delay(attempt)
            attempt += 1
            entry.set(State.FAILED, f"crashed, restarting in {delay:.1f}s: {entry.last_crash}")
            log.exception("component %s crashed; restart in %.1fs", component.name, delay)
            await asyncio.sleep(delay)


class Agent:
    """The running agent: settings, components, server. ``reload`` swaps the settings."""

    def __init__(
        self, settings: Settings, settings_path: Path | None, status: StatusRegistry | None = None
    ) -> None:
        self.settings = settings
        self.settings_path = settings_path
        self.status = status or StatusRegistry()
        self.hub = Hub()
        self._tasks: list[asyncio.Task[None]] = []
        self._builders = BUILDERS

    def context(self) -> AgentContext:
        from agent.kube.events import make_event_sink  # Kubernetes Events when the API is used

        events = make_event_sink(self.settings)
        return AgentContext(
            settings=self.settings,
            status=self.status,
            hub=self.hub,
            events=events,
            executor=build_executor(self.settings),
        )

    async def start_components(self) -> None:
        ctx = self.context()
        for entry in self._builders:
            for component in resolve_builder(entry)(ctx):
                task = asyncio.create_task(supervise(component, self.status), name=component.name)
                self._tasks.append(task)
        self.status.settings_loaded = True

    async def stop_components(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        from agent.kube.client import close_shared_clients  # API sessions end with components

        await close_shared_clients()

    async def reload(self) -> bool:
        """Re-read the settings; keep the running ones if the new file is invalid."""
        from agent.errors import InvalidDocument
        from agent.settings import load_settings

        try:
            new = await asyncio.to_thread(load_settings, self.settings_path)
        except InvalidDocument as exc:
            SETTINGS_RELOADS.labels("rejected").inc()
            for err in exc.errors:
                log.error("settings rejected, keeping the running ones: %s", err)
            self.status.component("settings").set(
                State.DEGRADED, "new settings rejected", errors=[str(e) for e in exc.errors]
            )
            return False
        if new == self.settings:
            SETTINGS_RELOADS.labels("unchanged").inc()
            return True
        if new.server != self.settings.server:
            log.warning("server settings changed: they take effect at the next restart")
        log.info("settings changed: restarting components")
        await self.stop_components()
        self.settings = new
        await self.start_components()
        SETTINGS_RELOADS.labels("applied").inc()
        self.status.component("settings").set(State.OK, "settings applied")
        return True

    async def watch_settings(self) -> None:
        """Reload when the settings file changes (or its kubelet ``..data`` swaps)."""
        if self.settings_path is None:
            return
        from agent.sources.inotify import FolderWatch, InotifyUnavailable

        # Watch the folder, not the file: editors and kubelet replace the file (new inode),
        # and in a kubelet mount the change shows as the ``..data`` symlink swap. inotify
        # where there is one (no wake-ups while idle), else watchfiles.
        folder = self.settings_path.parent
        try:
            async with FolderWatch(folder) as watch:
                while not watch.gone:
                    if await watch.changes(None):
                        await self.reload()
                return
        except InotifyUnavailable:
            pass
        from watchfiles import awatch

        async for _ in awatch(folder, step=50, recursive=False):
            await self.reload()


NO_SOURCES = (
    "no sources: nothing declares the desired state, so nothing is reconciled until the "
    "settings name one (--config FILE with `sources:`, as in examples/local.yaml)"
)


def startup_lines(settings: Settings, addresses: Sequence[object]) -> list[str]:
    """What a person starting the agent wants to know first: where it answers, what it
    reads, how it writes."""
    urls = [_url(a) for a in addresses] or [f"http://{settings.server.host}:{settings.server.port}"]
    sources = [_describe_source(s) for s in settings.sources] or ["none"]
    dms = settings.dms
    return [
        f"dms-agent {__version__} serving {', '.join(urls)} (/status, /healthz, /metrics)",
        f"sources: {'; '.join(sources)}",
        f"executor: {dms.executor.kind}; DMS config folder: {dms.config_dir or 'not mounted'}",
    ]


def _url(address: object) -> str:
    if not isinstance(address, tuple):
        return str(address)  # a unix socket's path
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"


def _describe_source(source: SourceSettings) -> str:
    if source.kind == "path":
        return f"path {source.path}" + (" (secret)" if source.secret else "")
    what = f"name {source.name}" if source.name else f"selector {source.selector}"
    return f"{source.kind} {what}" + (f" in {source.namespace}" if source.namespace else "")


async def run_agent(settings: Settings, settings_path: Path | None) -> None:
    """The main job: server + components until SIGTERM/SIGINT."""
    from agent.server import serve

    agent = Agent(settings, settings_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(agent.reload()))
    try:
        runner = await serve(agent.status, settings.server)
    except OSError as exc:
        where = f"{settings.server.host}:{settings.server.port}"
        raise CannotStart(f"cannot listen on {where}: {exc.strerror or exc}") from None
    watcher = asyncio.create_task(agent.watch_settings(), name="settings-watch")
    try:
        await agent.start_components()
        # Everything imported and built so far lives as long as the process: take it out of
        # the collector's generations, so a full collection no longer walks it (measured in
        # bench/dns_checks.py: 65-90 ms loop stalls without, under 17 ms with).
        gc.freeze()
        for line in startup_lines(settings, runner.addresses):
            log.info("%s", line)
        if not settings.sources:
            log.warning(NO_SOURCES)
        await stop.wait()
        log.info("shutting down")
    finally:
        # components first: a reconcile must not start its next command while we tidy up;
        # shutting_down tells them this is the end (the LB client withdraws), not a reload
        agent.hub.shutting_down.set(True)
        await agent.stop_components()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await runner.cleanup()
        log.info("stopped")
