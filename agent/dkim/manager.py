"""The DKIM component: keys for every declared domain, signing switched only when safe.

One pass: import BYO keys -> generate missing keys through DMS's `setup config dkim` -> ask DNS
which keys are published -> for each domain take the rotation step (agent/dkim/rotation.py) ->
write the backend's signing files -> make OpenDKIM keys live in place. Passes run when the
desired state changes and every ``dkim.interval`` seconds (DNS publication is not an event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.app import AgentContext
from agent.dkim import metrics as m
from agent.dkim.byo import generate_key, install_byo_key, load_byo_keys
from agent.dkim.keys import Backend, PublicKey, read_public_keys
from agent.dkim.publication import is_published, make_resolver
from agent.dkim.rotation import DomainState, Facts, Step, after_retire, after_switch, next_step
from agent.dkim.signing import read_signing, write_signing
from agent.dkim.state import load_state, save_state
from agent.mailstate.model import DkimSpec
from agent.status import State

log = logging.getLogger("dms_agent.dkim")


def detect_backend(configured: str, environment: dict[str, str]) -> Backend:
    if configured in ("opendkim", "rspamd"):
        return "rspamd" if configured == "rspamd" else "opendkim"
    rspamd = environment.get("ENABLE_RSPAMD") == "1"
    opendkim = environment.get("ENABLE_OPENDKIM", "1" if not rspamd else "0") == "1"
    return "rspamd" if rspamd and not opendkim else "opendkim"


def generate_commands(
    setup: list[str], backend: Backend, wanted: dict[str, DkimSpec]
) -> list[list[str]]:
    """`setup config dkim` calls for ``wanted`` (domain -> spec). OpenDKIM takes several domains
    per call when selector and size agree; Rspamd takes exactly one (dms-facts)."""
    if backend == "rspamd":
        cmds = []
        for domain, spec in sorted(wanted.items()):
            size = ["keysize", str(spec.key_size)] if spec.key_type == "rsa" else []
            cmds.append(
                [*setup, "config", "dkim", "keytype", spec.key_type, *size,
                 "selector", spec.selector, "domain", domain]
            )  # fmt: skip
        return cmds
    groups: dict[tuple[str, int], list[str]] = {}
    for domain, spec in sorted(wanted.items()):
        groups.setdefault((spec.selector, spec.key_size), []).append(domain)
    return [
        [*setup, "config", "dkim", "keysize", str(size), "selector", sel, "domain", ",".join(ds)]
        for (sel, size), ds in sorted(groups.items())
    ]


@dataclass(slots=True)
class PassResult:
    steps: dict[str, Step] = field(default_factory=dict)
    published: dict[tuple[str, str], bool | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    restart_required: bool = False


class DkimManager:
    name = "dkim"

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.dkim
        self.status = ctx.status.component(self.name)
        self.known_records: set[str] = set()
        self.restart_required = False

    @property
    def config_dir(self) -> Path | None:
        return self.ctx.settings.dms.config_dir

    @property
    def state_path(self) -> Path:
        assert self.config_dir is not None
        return self.settings.state_file or self.config_dir / "dms-agent-dkim.json"

    async def run(self) -> None:
        if self.config_dir is None:
            self.status.set(State.DISABLED, "dms.configDir is not mounted: DKIM not managed")
            await asyncio.Event().wait()
        version = -1
        while True:
            version = self.ctx.hub.desired.version
            desired = self.ctx.hub.desired.value
            if desired is not None:
                await self.run_pass(desired.state.domains)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval):
                    await self.ctx.hub.desired.wait_newer(version)

    async def run_pass(self, domains: dict[str, Any]) -> PassResult:
        specs = {d: dom.dkim for d, dom in domains.items() if dom.dkim is not None}
        backend = detect_backend(self.settings.backend, self.ctx.settings.dms.environment)
        result = PassResult()
        async with self.ctx.setup_lock:
            state = await asyncio.to_thread(load_state, self.state_path)
            await self._import_byo(backend, specs, result)
            keys = await self._keys(backend, specs)
            await self._generate(backend, specs, keys, state, result)
            keys = await self._keys(backend, specs)
        for domain, spec in sorted(specs.items()):
            if (domain, spec.selector) not in keys:  # DMS exits 0 even when genkey failed
                result.errors.append(f"{domain}: no key for selector {spec.selector!r} on disk")
        await self._check_publication(specs, keys, state, result)
        async with self.ctx.setup_lock:
            changed = self._take_steps(specs, keys, state, result)
            if changed:
                await self._make_live(backend, specs, keys, state, result)
            await asyncio.to_thread(save_state, self.state_path, state)
        self._report(backend, specs, keys, state, result)
        return result

    async def _keys(
        self, backend: Backend, specs: dict[str, DkimSpec]
    ) -> dict[tuple[str, str], PublicKey]:
        assert self.config_dir is not None
        return await asyncio.to_thread(read_public_keys, self.config_dir, backend, frozenset(specs))

    async def _import_byo(
        self, backend: Backend, specs: dict[str, DkimSpec], result: PassResult
    ) -> None:
        folder = self.settings.byo_keys_dir
        if folder is None or self.config_dir is None:
            return
        keys, errors = await asyncio.to_thread(load_byo_keys, folder, specs)
        for err in errors:
            result.errors.append(str(err))
            self.ctx.events.emit("Invalid", f"DKIM key refused: {err}", "Warning")
        for key in keys:
            if await asyncio.to_thread(install_byo_key, self.config_dir, backend, key):
                m.ACTIONS.labels("import", "ok").inc()
                log.info("imported DKIM key %s._domainkey.%s", key.selector, key.domain)

    async def _generate(
        self,
        backend: Backend,
        specs: dict[str, DkimSpec],
        keys: dict[tuple[str, str], PublicKey],
        state: dict[str, DomainState],
        result: PassResult,
    ) -> None:
        wanted = {}
        for domain, spec in specs.items():
            step = next_step(spec, state.get(domain, DomainState()), _facts(keys, domain), 0, True)
            if step.kind == "generate":
                wanted[domain] = spec
        if not wanted:
            return
        if self.ctx.settings.dms.executor.kind == "file":
            await self._generate_here(backend, wanted)
            return
        executor = self.ctx.executor
        if executor is None:
            result.errors.append("new DKIM keys need DMS's setup (dms.executor: local/docker/kube)")
            return
        setup = list(self.ctx.settings.dms.setup_command)
        timeout = self.ctx.settings.dms.command_timeout
        for argv in generate_commands(setup, backend, wanted):
            res = await asyncio.shield(executor.run(argv, timeout=timeout))
            m.ACTIONS.labels("generate", "ok" if res.ok else "failed").inc()
            if not res.ok:
                cmd = " ".join(argv[len(setup) :])
                msg = f"`setup {cmd}` failed ({res.exit_code}): {res.stderr.strip()[-300:]}"
                result.errors.append(msg)
                self.ctx.events.emit("ApplyFailed", msg, "Warning")

    async def _generate_here(self, backend: Backend, wanted: dict[str, DkimSpec]) -> None:
        """No DMS (``file`` executor): make the keys ourselves, in DMS's layout and modes."""
        assert self.config_dir is not None
        for domain, spec in sorted(wanted.items()):
            key = await asyncio.to_thread(generate_key, domain, spec)
            await asyncio.to_thread(install_byo_key, self.config_dir, backend, key)
            m.ACTIONS.labels("generate", "ok").inc()
            log.info("generated DKIM key %s._domainkey.%s", spec.selector, domain)

    async def _check_publication(
        self,
        specs: dict[str, DkimSpec],
        keys: dict[tuple[str, str], PublicKey],
        state: dict[str, DomainState],
        result: PassResult,
    ) -> None:
        resolver = make_resolver(self.settings.nameservers, self.settings.dns_timeout)
        wanted = set()
        for domain, spec in specs.items():
            st = state.get(domain, DomainState())
            for sel in (spec.selector, st.signing, st.retiring):
                if sel and (domain, sel) in keys:
                    wanted.add((domain, sel))
        ordered = sorted(wanted)
        answers = await asyncio.gather(*(is_published(resolver, keys[k]) for k in ordered))
        result.published = dict(zip(ordered, answers, strict=True))

    def _take_steps(
        self,
        specs: dict[str, DkimSpec],
        keys: dict[tuple[str, str], PublicKey],
        state: dict[str, DomainState],
        result: PassResult,
    ) -> bool:
        assert self.config_dir is not None
        adopted = read_signing(self.config_dir, "opendkim") | read_signing(
            self.config_dir, "rspamd"
        )
        now, changed = time.time(), False
        for domain, spec in sorted(specs.items()):
            st = state.setdefault(domain, DomainState())
            if st.signing is None and (domain, adopted.get(domain, "")) in keys:
                st.signing = adopted[domain]  # take over what DMS already signs with
                changed = True
            have = {sel: (k.key_type, k.bits) for (d, sel), k in keys.items() if d == domain}
            pub = {sel: v for (d, sel), v in result.published.items() if d == domain}
            step = next_step(
                spec, st, Facts(have, pub, now), self.settings.grace_period,
                self.settings.require_published,
            )  # fmt: skip
            result.steps[domain] = step
            if step.kind == "switch" and step.selector:
                state[domain] = after_switch(st, step.selector, now, self.settings.grace_period)
                m.ACTIONS.labels("switch", "ok").inc()
                self.ctx.events.emit(
                    "DkimRotation",
                    f"{domain}: signing with selector {step.selector!r} ({step.reason})",
                )
                changed = True
            elif step.kind == "retire" and step.selector:
                self._retire(domain, step.selector, keys)
                state[domain] = after_retire(st)
                m.ACTIONS.labels("retire", "ok").inc()
                self.ctx.events.emit(
                    "DkimRetired",
                    f"{domain}: selector {step.selector!r} retired after its grace period; "
                    f"its TXT record {step.selector}._domainkey.{domain} may now be removed",
                )
                changed = True
        return changed

    def _retire(self, domain: str, selector: str, keys: dict[tuple[str, str], PublicKey]) -> None:
        """Move the retired key's files aside (never delete a private key silently)."""
        assert self.config_dir is not None
        key = keys.pop((domain, selector), None)
        if key is None:
            return
        dest = self.config_dir / "dms-agent-retired-dkim" / domain
        dest.mkdir(parents=True, exist_ok=True)
        stem = key.source.name.split(".")[0] if key.source.suffix == ".txt" else key.source.stem
        for sibling in key.source.parent.iterdir():
            if sibling.name.startswith(stem + ".") or sibling.name.startswith(
                key.source.name.removesuffix(".public.dns.txt") + "."
            ):
                sibling.rename(dest / sibling.name)

    async def _make_live(
        self,
        backend: Backend,
        specs: dict[str, DkimSpec],
        keys: dict[tuple[str, str], PublicKey],
        state: dict[str, DomainState],
        result: PassResult,
    ) -> None:
        assert self.config_dir is not None
        signing = {d: st.signing for d, st in state.items() if st.signing and d in specs}
        live = {k: v for k, v in keys.items() if k[0] in specs}
        await asyncio.to_thread(
            write_signing, self.config_dir, backend, signing, live,
            self.ctx.settings.dms.container_config_dir,
        )  # fmt: skip
        if backend == "rspamd":
            return  # DMS's change detector watches rspamd/** and reloads Rspamd itself
        executor = self.ctx.executor
        ok = False
        if executor is not None and self.ctx.settings.dms.executor.kind != "file":
            res = await asyncio.shield(executor.run(self.settings.opendkim_reload, timeout=60.0))
            ok = res.ok
        m.ACTIONS.labels("reload", "ok" if ok else "failed").inc()
        self.restart_required = not ok
        if not ok:
            result.restart_required = True
            self.ctx.events.emit(
                "RestartRequired",
                "new OpenDKIM signing could not be made live in place: restart the mailserver",
                "Warning",
            )

    def _report(
        self,
        backend: Backend,
        specs: dict[str, DkimSpec],
        keys: dict[tuple[str, str], PublicKey],
        state: dict[str, DomainState],
        result: PassResult,
    ) -> None:
        for gauge in (m.KEY_PRESENT, m.KEY_BITS, m.PUBLISHED, m.ROTATION_STATE):
            gauge.clear()
        domains: dict[str, Any] = {}
        for domain, spec in sorted(specs.items()):
            st = state.get(domain, DomainState())
            step = result.steps.get(domain)
            records = []
            for (d, sel), key in sorted(keys.items()):
                if d != domain:
                    continue
                m.KEY_PRESENT.labels(d, sel).set(1)
                m.KEY_BITS.labels(d, sel).set(key.bits)
                pub = result.published.get((d, sel))
                m.PUBLISHED.labels(d, sel).set(-1 if pub is None else int(pub))
                records.append({"selector": sel, "zoneLine": key.zone_line(), "published": pub})
                if key.record not in self.known_records:
                    self.known_records.add(key.record)
                    self.ctx.events.emit("DkimRecord", f"publish: {key.zone_line()}")
            rotation = _rotation_state(step, st)
            for name in m.ROTATION_STATES:
                m.ROTATION_STATE.labels(domain, name).set(int(name == rotation))
            domains[domain] = {
                "declaredSelector": spec.selector,
                "signing": st.signing,
                "retiring": st.retiring,
                "retireAfter": st.retire_after,
                "rotation": rotation,
                "step": step.reason if step else "",
                "records": records,
            }
        m.RESTART_REQUIRED.set(int(self.restart_required))
        bad = (
            result.errors
            or self.restart_required
            or any(d["rotation"] == "mismatch" for d in domains.values())
        )
        message = "; ".join(result.errors) or (
            "restart required" if self.restart_required else f"{len(domains)} domain(s)"
        )
        self.status.set(
            State.DEGRADED if bad else State.OK,
            message,
            backend=backend,
            domains=domains,
            restartRequired=self.restart_required,
        )


def _facts(
    keys: dict[tuple[str, str], PublicKey],
    domain: str,
    published: dict[str, bool | None] | None = None,
    now: float = 0.0,
) -> Facts:
    have = {sel: (k.key_type, k.bits) for (d, sel), k in keys.items() if d == domain}
    return Facts(have, published or {}, now)


def _rotation_state(step: Step | None, st: DomainState) -> str:
    if step is None:
        return "stable"
    if step.kind == "mismatch":
        return "mismatch"
    if step.kind == "generate":
        return "generating"
    if step.kind == "wait":
        return "waiting"
    return "grace" if st.retiring else "stable"


def build(ctx: AgentContext) -> list[DkimManager]:
    return [DkimManager(ctx)] if ctx.settings.dkim.enabled else []
