"""The DKIM component: keys for every declared domain, signing switched only when safe.

One pass: import BYO keys -> generate missing keys through DMS's `setup config dkim` -> ask DNS
which keys are published -> for each domain take the rotation step (agent/dkim/rotation.py) ->
write the backend's signing files -> make OpenDKIM keys live in place. Passes run when the
desired state changes and every ``dkim.interval`` seconds (DNS publication is not an event).

What needs big libraries (``cryptography`` to import BYO keys and make keys here, dnspython to
ask DNS about publication) runs in a worker process (agent/dkim/worker.py), so they do not stay
in the agent's memory between passes.
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
from agent.dkim import worker
from agent.dkim.keys import Backend, PublicKey, read_public_keys
from agent.dkim.rotation import DomainState, Facts, Step, after_retire, after_switch, next_step
from agent.dkim.signing import read_signing, write_signing
from agent.dkim.state import load_state, save_state
from agent.executor import Executor, Result
from agent.mailstate.model import DkimSpec
from agent.status import State
from agent.worker import WorkerFailed, run_worker

log = logging.getLogger("dms_agent.dkim")

# seconds a job of the DKIM worker may take: an interpreter's start on a busy node, plus a
# 4096-bit RSA key's generation (~1-3 s) or a lookup's dkim.dnsTimeout with room to spare, per
# key or file it handles
WORKER_DEADLINE = 60.0
WORKER_DEADLINE_PER_ITEM = 10.0


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
class DkimPass:
    """Everything one pass knows and decides; the manager's steps read and fill it in."""

    backend: Backend
    specs: dict[str, DkimSpec]
    state: dict[str, DomainState] = field(default_factory=dict)
    keys: dict[tuple[str, str], PublicKey] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)
    published: dict[tuple[str, str], bool | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    restart_required: bool = False

    def facts(self, domain: str, now: float = 0.0) -> Facts:
        have = {sel: (k.key_type, k.bits) for (d, sel), k in self.keys.items() if d == domain}
        pub = {sel: v for (d, sel), v in self.published.items() if d == domain}
        return Facts(have, pub, now)


class DkimManager:
    name = "dkim"

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.dkim
        self.status = ctx.status.component(self.name)
        self.known_records: set[str] = set()
        self.restart_required = False
        # the BYO folder and declarations the last import job saw, and its reply
        self._byo_last: tuple[object, dict[str, Any]] | None = None

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

    async def run_pass(self, domains: dict[str, Any]) -> DkimPass:
        specs = {d: dom.dkim for d, dom in domains.items() if dom.dkim is not None}
        backend = detect_backend(self.settings.backend, self.ctx.settings.dms.environment)
        p = DkimPass(backend, specs)
        async with self.ctx.setup_lock:
            p.state = await asyncio.to_thread(load_state, self.state_path)
            await self._import_byo(p)
            p.keys = await self._keys(p)
            await self._generate(p)
            p.keys = await self._keys(p)
        for domain, spec in sorted(specs.items()):
            if (domain, spec.selector) not in p.keys:  # DMS exits 0 even when genkey failed
                p.errors.append(f"{domain}: no key for selector {spec.selector!r} on disk")
        await self._check_publication(p)
        async with self.ctx.setup_lock:
            assert self.config_dir is not None  # run() does not start passes without it
            adopted = await asyncio.to_thread(read_signing, self.config_dir, p.backend)
            changed, retired = self._take_steps(p, adopted)
            if retired:
                await asyncio.to_thread(move_aside, self.config_dir, retired)
            if changed:
                await self._make_live(p)
            await asyncio.to_thread(save_state, self.state_path, p.state)
        self._report(p)
        return p

    async def _keys(self, p: DkimPass) -> dict[tuple[str, str], PublicKey]:
        assert self.config_dir is not None
        return await asyncio.to_thread(
            read_public_keys, self.config_dir, p.backend, frozenset(p.specs)
        )

    async def _import_byo(self, p: DkimPass) -> None:
        folder = self.settings.byo_keys_dir
        if folder is None or self.config_dir is None:
            return
        allow = self.settings.byo_allow_undeclared
        # the worker (and cryptography's import) only when the folder or the declarations
        # changed, or a key it imported is gone: passes run every dkim.interval
        seen = (await asyncio.to_thread(folder_listing, folder), tuple(sorted(p.specs.items())))
        present = await self._keys(p)
        last = self._byo_last
        if last and last[0] == seen and all((d, s) in present for d, s in last[1]["valid"]):
            reply = {**last[1], "written": []}
        else:
            request = worker.import_request(self.config_dir, p.backend, folder, p.specs, allow)
            answer = await self._work(p, request, len(p.specs) + 1)
            if answer is None:
                return
            self._byo_last = (seen, answer)
            reply = answer
        for err in worker.refused_errors(reply):
            p.errors.append(str(err))
            self.ctx.events.emit("Invalid", f"DKIM key refused: {err}", "Warning")
        for domain, selector in reply["written"]:
            m.ACTIONS.labels("import", "ok").inc()
            log.info("imported DKIM key %s._domainkey.%s", selector, domain)

    async def _work(
        self, p: DkimPass, request: dict[str, Any], items: int
    ) -> dict[str, Any] | None:
        """One job of the DKIM worker; None when it failed (the pass's error says where)."""
        try:
            deadline = WORKER_DEADLINE + WORKER_DEADLINE_PER_ITEM * items
            return await run_worker(worker.MODULE, request, deadline)
        except WorkerFailed as exc:
            log.error("DKIM %s failed: %s", request["job"], exc)
            p.errors.append(f"DKIM {request['job']} failed: {exc}")
            return None

    async def _generate(self, p: DkimPass) -> None:
        wanted = {}
        for domain, spec in p.specs.items():
            state = p.state.get(domain, DomainState())
            if next_step(spec, state, p.facts(domain), 0, True).kind == "generate":
                wanted[domain] = spec
        if not wanted:
            return
        if self.ctx.settings.dms.executor.kind == "file" or p.backend == "rspamd":
            # Rspamd: DMS's `config dkim` takes one domain per call and restarts Rspamd on each;
            # the agent makes the whole batch and writes it at once, so DMS's change detector
            # (it watches rspamd/**) restarts Rspamd once (docs/dms-compat.md)
            await self._generate_here(p, wanted)
            return
        executor = self.ctx.executor
        if executor is None:
            p.errors.append("new DKIM keys need DMS's setup (dms.executor: local/docker/kube)")
            return
        setup = list(self.ctx.settings.dms.setup_command)
        timeout = self.ctx.settings.dms.command_timeout
        for argv in generate_commands(setup, p.backend, wanted):
            res = await _run(executor, argv, timeout)
            m.ACTIONS.labels("generate", "ok" if res.ok else "failed").inc()
            if not res.ok:
                cmd = " ".join(argv[len(setup) :])
                msg = f"`setup {cmd}` failed ({res.exit_code}): {res.stderr.strip()[-300:]}"
                p.errors.append(msg)
                self.ctx.events.emit("ApplyFailed", msg, "Warning")

    async def _generate_here(self, p: DkimPass, wanted: dict[str, DkimSpec]) -> None:
        """Make the keys ourselves, in DMS's layout and modes: all of them first (the slow
        part), then write them one right after the other."""
        assert self.config_dir is not None
        request = worker.generate_request(self.config_dir, p.backend, wanted)
        reply = await self._work(p, request, len(wanted))
        for domain, selector in reply["written"] if reply else []:
            m.ACTIONS.labels("generate", "ok").inc()
            log.info("generated DKIM key %s._domainkey.%s", selector, domain)

    async def _check_publication(self, p: DkimPass) -> None:
        """Ask DNS (in the worker: dnspython stays out of the agent) which keys it serves;
        a failed worker leaves every answer unknown, never "not published"."""
        wanted = set()
        for domain, spec in p.specs.items():
            st = p.state.get(domain, DomainState())
            for sel in (spec.selector, st.signing, st.retiring):
                if sel and (domain, sel) in p.keys:
                    wanted.add((domain, sel))
        ordered = sorted(wanted)
        if not ordered:
            return
        # the DNS checks' nameservers unless DKIM names its own
        servers = self.settings.nameservers or self.ctx.settings.dns.nameservers
        keys = [(d, sel, p.keys[(d, sel)].p) for d, sel in ordered]
        request = worker.published_request(servers, self.settings.dns_timeout, keys)
        reply = await self._work(p, request, 1)
        answers = reply["published"] if reply else [None] * len(ordered)
        p.published = dict(zip(ordered, answers, strict=True))

    def _take_steps(self, p: DkimPass, adopted: dict[str, str]) -> tuple[bool, list[PublicKey]]:
        """Decide and record each domain's step (no I/O); returns whether signing changed and
        the keys to move aside. ``adopted``: what the backend's files sign with today."""
        now, changed, retired = time.time(), False, []
        for domain, spec in sorted(p.specs.items()):
            st = p.state.setdefault(domain, DomainState())
            if st.signing is None and (domain, adopted.get(domain, "")) in p.keys:
                st.signing = adopted[domain]  # take over what DMS already signs with
                changed = True
            step = next_step(
                spec, st, p.facts(domain, now), self.settings.grace_period,
                self.settings.require_published,
            )  # fmt: skip
            p.steps[domain] = step
            if step.kind == "switch" and step.selector:
                p.state[domain] = after_switch(st, step.selector, now, self.settings.grace_period)
                m.ACTIONS.labels("switch", "ok").inc()
                self.ctx.events.emit(
                    "DkimRotation",
                    f"{domain}: signing with selector {step.selector!r} ({step.reason})",
                )
                changed = True
            elif step.kind == "retire" and step.selector:
                key = p.keys.pop((domain, step.selector), None)
                if key is not None:
                    retired.append(key)
                p.state[domain] = after_retire(st)
                m.ACTIONS.labels("retire", "ok").inc()
                self.ctx.events.emit(
                    "DkimRetired",
                    f"{domain}: selector {step.selector!r} retired after its grace period; "
                    f"its TXT record {step.selector}._domainkey.{domain} may now be removed",
                )
                changed = True
        return changed, retired

    async def _make_live(self, p: DkimPass) -> None:
        assert self.config_dir is not None
        signing = {d: st.signing for d, st in p.state.items() if st.signing and d in p.specs}
        live = {k: v for k, v in p.keys.items() if k[0] in p.specs}
        await asyncio.to_thread(
            write_signing, self.config_dir, p.backend, signing, live,
            self.ctx.settings.dms.container_config_dir,
        )  # fmt: skip
        if p.backend == "rspamd":
            return  # DMS's change detector watches rspamd/** and reloads Rspamd itself
        if not self.settings.opendkim_reload:
            return  # no mailserver to make keys live in (the local demo): nothing to restart
        executor = self.ctx.executor
        ok = False
        if executor is not None and self.ctx.settings.dms.executor.kind != "file":
            res = await _run(executor, self.settings.opendkim_reload, 60.0)
            ok = res.ok
        m.ACTIONS.labels("reload", "ok" if ok else "failed").inc()
        self.restart_required = not ok
        if not ok:
            p.restart_required = True
            self.ctx.events.emit(
                "RestartRequired",
                "new OpenDKIM signing could not be made live in place: restart the mailserver",
                "Warning",
            )

    def _report(self, p: DkimPass) -> None:
        for gauge in (m.KEY_PRESENT, m.KEY_BITS, m.PUBLISHED, m.ROTATION_STATE):
            gauge.clear()
        domains: dict[str, Any] = {}
        for domain, spec in sorted(p.specs.items()):
            st = p.state.get(domain, DomainState())
            step = p.steps.get(domain)
            records = []
            for (d, sel), key in sorted(p.keys.items()):
                if d != domain:
                    continue
                m.KEY_PRESENT.labels(d, sel).set(1)
                m.KEY_BITS.labels(d, sel).set(key.bits)
                pub = p.published.get((d, sel))
                m.PUBLISHED.labels(d, sel).set(-1 if pub is None else int(pub))
                records.append({"selector": sel, "zoneLine": key.zone_line(), "published": pub})
                if key.record not in self.known_records:
                    self.known_records.add(key.record)
                    self.ctx.events.emit(
                        "DkimRecord",
                        f"publish {key.name} (`dms-agent dkim records` prints it): "
                        + key.zone_line(),
                    )
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
            p.errors
            or self.restart_required
            or any(d["rotation"] == "mismatch" for d in domains.values())
        )
        message = "; ".join(p.errors) or (
            "restart required" if self.restart_required else f"{len(domains)} domain(s)"
        )
        self.status.set(
            State.DEGRADED if bad else State.OK,
            message,
            backend=p.backend,
            domains=domains,
            restartRequired=self.restart_required,
        )


def folder_listing(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of each file: a changed BYO key shows here. Blocking."""
    if not folder.is_dir():
        return []
    listing = []
    for path in sorted(folder.iterdir()):
        with contextlib.suppress(OSError):  # gone meanwhile: not listed
            st = path.stat()  # through kubelet's symlinks: a Secret update shows
            listing.append((path.name, st.st_size, st.st_mtime_ns))
    return listing


def move_aside(config_dir: Path, keys: list[PublicKey]) -> None:
    """Move retired keys' files aside (never delete a private key silently). Blocking."""
    for key in keys:
        dest = config_dir / "dms-agent-retired-dkim" / key.domain
        dest.mkdir(parents=True, exist_ok=True)
        # OpenDKIM: <sel>.private + <sel>.txt; Rspamd: <stem>.private.txt + <stem>.public*.txt
        name = key.source.name
        prefix = name.split(".public")[0] if name.count(".") > 1 else key.selector
        for sibling in key.source.parent.iterdir():
            if sibling.name.startswith(prefix + "."):
                sibling.rename(dest / sibling.name)


async def _run(executor: Executor, argv: list[str], timeout: float) -> Result:
    """Run one command to its end even if we are cancelled meanwhile; a transport failure
    (Kubernetes exec refused or unreachable) is an unknown outcome, not a crash."""
    try:
        return await asyncio.shield(executor.run(argv, timeout=timeout))
    except OSError as exc:
        return Result(None, "", f"{type(exc).__name__}: {exc}", 0.0)


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
