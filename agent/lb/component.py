"""The ``lb`` component: track the node's address, register it with every target, keep it
registered, and (optionally) withdraw it on SIGTERM within the shutdown grace period."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from agent.hub import Observable
from agent.lb.address import AddressError, resolve_address
from agent.lb.client import TargetClient
from agent.lb.payload import Registration
from agent.lb.sender import TargetSender, TargetState
from agent.lb.sequence import SequenceSource
from agent.status import State

if TYPE_CHECKING:
    from agent.app import AgentContext

log = logging.getLogger("dms_agent.lb")


def endpoint(url: str) -> str:
    """The URL without credentials or query: safe for /status and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_passed(results: Mapping[str, Any], name: str) -> bool:
    result = results.get(name)
    if isinstance(result, Mapping):
        return result.get("ok") is True
    return getattr(result, "ok", None) is True


_WARNED: set[tuple[str, str]] = set()  # once per process, not again at each settings reload


def _warn_once(label: str, warning: str) -> None:
    if (label, warning) not in _WARNED:
        _WARNED.add((label, warning))
        log.warning("lb target %s: %s (use https://; requireTLS: true refuses)", label, warning)


class LbComponent:
    name = "lb"

    def __init__(self, ctx: AgentContext, environ: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.lb
        self.environ = os.environ if environ is None else environ
        self.pod = self.settings.pod or self.environ.get("POD_NAME") or socket.gethostname()
        self.node = self.settings.node or self.environ.get("NODE_NAME")
        self.address: str | None = None
        self.phase = "starting"
        self.states = {
            t.label: TargetState(t.format, endpoint(t.url)) for t in self.settings.targets
        }
        for t in self.settings.targets:
            if t.token_in_clear and not t.require_tls:
                warning = "the funkypenguin token goes in clear text to an http:// URL"
                self.states[t.label].warning = warning
                _warn_once(t.label, warning)
        self._report()

    async def run(self) -> None:
        desired: Observable[Registration | None] = Observable(None)
        sequences = SequenceSource(self.settings.state_file)
        self._report()
        async with aiohttp.ClientSession() as session:
            senders = [
                TargetSender(
                    TargetClient(t, session, sequences),
                    self.settings,
                    desired,
                    self.states[t.label],
                    self._report,
                )
                for t in self.settings.targets
            ]
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._track(desired))
                    for sender in senders:
                        tg.create_task(sender.run())
            except asyncio.CancelledError:
                if self._should_deregister(desired.value):
                    assert desired.value is not None
                    await self._deregister(senders, desired.value)
                raise

    def _should_deregister(self, reg: Registration | None) -> bool:
        # Only on the agent's shutdown: a settings reload also cancels us, and withdrawing
        # then would cut mail for nothing.
        return self.settings.delete_on_shutdown and reg is not None and self._shutting_down()

    def _shutting_down(self) -> bool:
        return bool(self.ctx.hub.shutting_down.value)

    async def _deregister(self, senders: list[TargetSender], reg: Registration) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # let the bounded delete run; CancelledError is re-raised after
        self.phase = "deregistering"
        self._report()
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_grace
        results = await asyncio.gather(
            *(s.deregister(reg, deadline) for s in senders), return_exceptions=True
        )
        done = sum(1 for r in results if not isinstance(r, BaseException) and r and r.ok)
        log.info("lb: delete sent to %d of %d targets before shutdown", done, len(senders))
        self.phase = "deregistered"
        self._report()

    async def _track(self, desired: Observable[Registration | None]) -> None:
        check = self.settings.wait_for_check
        if check:
            self.phase = f"waiting for check {check!r} to pass"
            self._report()
            version = -1
            while True:
                version, results = await self.ctx.hub.check_results.wait_newer(version)
                if check_passed(results, check):
                    break
        source = self.settings.address.source
        while True:
            await self._refresh(desired)
            if source == "fixed" or (source == "env" and self.address is not None):
                return  # these cannot change while the process lives
            await asyncio.sleep(self.settings.address.refresh_interval)

    async def _refresh(self, desired: Observable[Registration | None]) -> None:
        try:
            address = await resolve_address(
                self.settings.address, self.ctx.settings.kube, self.environ
            )
        except AddressError as exc:
            if self.phase != f"no address: {exc}":
                log.warning("lb: node address unknown: %s", exc)
            self.phase = f"no address: {exc}"
            self._report()
            return
        if address != self.address:
            if self.address is not None:
                log.info("lb: node address changed from %s to %s", self.address, address)
            self.address = address
            desired.set(
                Registration(
                    name=self.settings.name,
                    pod=self.pod,
                    node=self.node,
                    address=address,
                    ports=tuple(self.settings.ports),
                )
            )
        self.phase = "registering"
        self._report()

    def _report(self) -> None:
        targets = {label: st.as_dict() for label, st in self.states.items()}
        failing = sorted(label for label, st in self.states.items() if st.consecutive_failures)
        delivered = all(st.last_success_at is not None for st in self.states.values())
        if self.phase.startswith("deregister"):
            state, message = State.DISABLED, self.phase
        elif self.phase.startswith("no address"):
            state, message = State.DEGRADED, self.phase
        elif failing:
            state, message = State.DEGRADED, f"delivery failing to {', '.join(failing)}"
        elif self.phase == "registering" and delivered:
            state, message = State.OK, f"registered {self.address} with every target"
            unconfirmed = sorted(k for k, st in self.states.items() if st.confirmed is False)
            if unconfirmed:
                message += f" (unconfirmed by {', '.join(unconfirmed)}: see expectResponse)"
        else:
            state, message = State.STARTING, self.phase
        self.ctx.status.component(self.name).set(
            state,
            message,
            name=self.settings.name,
            pod=self.pod,
            node=self.node,
            address=self.address,
            addressSource=self.settings.address.source,
            ports=[p.model_dump(by_alias=True) for p in self.settings.ports],
            targets=targets,
        )
