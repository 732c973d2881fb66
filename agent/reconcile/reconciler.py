"""The reconciler: observe, plan, guard, apply — as a one-shot pass (CLI) and as a component.

Triggers: a new desired state on ``ctx.hub.desired``, start-up, ``ctx.hub.resync`` and the
periodic resync (``reconcile.resyncInterval``). A change that arrives during a pass is not lost
and not debounced: the versions are compared when the pass ends and the next pass starts at
once (the dirty flag). A failing op is retried with exponential backoff and jitter while the
other ops proceed (it is re-planned from a fresh observe each time, never blindly re-run); an
unknown outcome ends the pass and a new one starts from a fresh observe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.dms.actual import Actual, DmsInfo
from agent.dms.observe import (
    AGENT_LOCK,
    FolderReader,
    ObserveError,
    dms_started,
    info_without_dms,
    observe,
    read_info,
)
from agent.events import EventSink, LogEventSink
from agent.executor import Executor
from agent.mailstate.model import Desired, MailState, PasswordIntent
from agent.reconcile.apply import Applier, ApplyLock, LockBusy, OpResult
from agent.reconcile.dkimwork import dkim_work
from agent.reconcile.ledger import (
    LEDGER_NAME,
    Ledger,
    LedgerError,
    intent_digests,
    load_key,
    new_entry,
)
from agent.reconcile.metrics import (
    DRIFT,
    LAST_SUCCESS,
    MANAGED,
    OP_SECONDS,
    OPS,
    PENDING,
    RECONCILE_SECONDS,
    RECONCILES,
    REFUSED,
)
from agent.reconcile.plan import Op, Plan, PlanPolicy, plan
from agent.settings import Settings
from agent.status import ComponentStatus, State

if TYPE_CHECKING:
    from agent.app import AgentContext, Component

log = logging.getLogger("dms_agent.reconcile")

MAX_STATUS_RESULTS = 200  # /status keeps the failures plus the most recent results
# ops of one kind done with one write per DMS file: bounds what a failed write takes with it
MAX_BATCH = 1000


# (ops done, ops planned, seconds left or None before the first op): called after every op
Progress = Callable[[int, int, float | None], None]


class ReconcileError(Exception):
    """A pass could not run (settings, ledger, DMS not readable); the message says why."""


class LedgerUnusable(ReconcileError):
    """The pass failed closed because of the ledger or its key (logged at ERROR, one Event
    per distinct cause)."""


@dataclass(slots=True)
class Retry:
    attempt: int
    not_before: float  # time.monotonic()


@dataclass(slots=True)
class PassReport:
    plan: Plan | None = None
    results: list[OpResult] = field(default_factory=list)
    error: str | None = None
    applied: bool = False  # apply mode (not observe, not plan-only)
    interrupted: bool = False  # ended early on an unknown outcome
    ledger_failed: bool = False  # the error came from the ledger or its key
    duration: float = 0.0
    commands_time: float = 0.0  # sum of the ops' own durations (executor-measured)

    @property
    def failed(self) -> list[OpResult]:
        return [r for r in self.results if r.status != "ok"]

    @property
    def outcome(self) -> str:
        if self.error is not None or (self.plan is not None and self.plan.fatal):
            return "failed"
        if not self.applied:
            return "observed"
        if not self.results:
            return "noop"
        if self.failed:
            return "partial" if len(self.failed) < len(self.results) else "failed"
        return "applied"

    def describe(self) -> dict[str, Any]:
        failures = [r.describe() for r in self.results if r.status != "ok"]
        recent = [r.describe() for r in self.results if r.status == "ok"]
        keep = max(0, MAX_STATUS_RESULTS - len(failures))
        return {
            "outcome": self.outcome,
            "error": self.error,
            "plan": self.plan.describe(MAX_STATUS_RESULTS) if self.plan is not None else None,
            "results": failures + recent[-keep:] if keep else failures,
            "opsDone": sum(1 for r in self.results if r.status == "ok"),
            "opsFailed": len(failures),
            "interrupted": self.interrupted,
            "duration": round(self.duration, 4),
        }


class Engine:
    """Everything one pass needs; kept between passes (ledger, retries, DMS info)."""

    def __init__(
        self,
        settings: Settings,
        executor: Executor | None,
        events: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.events = events or LogEventSink()
        self.clock = clock
        dms = settings.dms
        self.config_dir = dms.config_dir
        self.mail_dir = dms.mail_dir
        ledger_path = settings.reconcile.ledger_path
        if ledger_path is None and self.config_dir is not None:
            ledger_path = self.config_dir / LEDGER_NAME
        self.ledger_path = ledger_path
        self.ledger = Ledger(ledger_path) if ledger_path is not None else None
        self._ledger_sig: tuple[Any, ...] | None = None
        self.info: DmsInfo | None = None
        self.readiness = "not probed yet"  # what the start-up probe said (shown in /status)
        self.reader = FolderReader()  # re-parses DMS's files only when one changed
        self.retries: dict[str, Retry] = {}
        self._digests: tuple[MailState, dict[str, str]] | None = None
        # the last passwords and their digests (the dicts themselves, not a copy: 100,000
        # (intent, digest) pairs held ~11 MB), and the key they were made with
        self._intents: tuple[Mapping[str, PasswordIntent], Mapping[str, str]] = ({}, {})
        self._intents_key = b""
        self._last_refused: tuple[str, ...] = ()
        self._last_drift: tuple[str, ...] = ()
        self._last_ledger_error: str | None = None
        self._plan_memo: tuple[tuple[object, ...], PlanPolicy, Plan] | None = None
        self._key: tuple[tuple[int, ...] | None, bytes] | None = None  # (file signature, key)

    # --- DMS ------------------------------------------------------------------------------
    @property
    def via_commands(self) -> bool:
        return self.executor is not None

    async def check_dms(self) -> str | None:
        """None when DMS is up; else why not (still starting). Refreshes DMS's settings."""
        dms = self.settings.dms
        if self.executor is None:
            self.info = info_without_dms(dms.environment)
            self.readiness = "no start-up probe (file executor)"
            return None
        kind = dms.executor.kind
        try:
            started = await dms_started(self.executor, dms.ready_command, dms.command_timeout, kind)
            self.readiness = started.message
            if not started.ready:
                return started.message
            self.info = await read_info(self.executor, dms.environment, dms.command_timeout, kind)
        except OSError as exc:
            return f"cannot reach the mailserver: {exc}"
        return None

    async def observe(self) -> Actual:
        if self.info is None:
            waiting = await self.check_dms()
            if waiting is not None:
                raise ReconcileError(waiting)
        assert self.info is not None
        dms = self.settings.dms
        try:
            return await observe(
                self.config_dir,
                self.executor,
                dms.setup_command,
                dms.command_timeout,
                self.info,
                missing_ok=self.executor is None,
                reader=self.reader,
                container_config_dir=dms.container_config_dir,
            )
        except (ObserveError, OSError) as exc:
            raise ReconcileError(str(exc)) from None

    async def reread(self) -> None:
        """After a pass that wrote DMS's files: parse them again now, so the next update's
        pass finds them read instead of re-parsing what we wrote on its path."""
        if self.config_dir is None or self.info is None:
            return
        folder, info, missing_ok = self.config_dir, self.info, self.executor is None
        with contextlib.suppress(ObserveError, OSError):  # the next observe says it properly
            await asyncio.to_thread(self.reader.read, folder, info, missing_ok)

    # --- ledger & digests -----------------------------------------------------------------
    def _ledger_signature(self) -> tuple[Any, ...]:
        assert self.ledger is not None
        sig: list[Any] = []
        for p in (self.ledger.path, self.ledger.journal_path):
            try:
                st = p.stat()
                sig.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                sig.append(None)
        return tuple(sig)

    async def current_ledger(self) -> Ledger:
        """refresh_ledger, in a thread only when the ledger's files changed (two stats on the
        loop decide: the common case, nothing changed, costs no thread hop)."""
        if self.ledger is not None and self._ledger_sig is not None:
            if self._ledger_signature() == self._ledger_sig:
                return self.ledger
        return await asyncio.to_thread(self.refresh_ledger)

    def refresh_ledger(self) -> Ledger:
        """(Re)load the ledger if another agent or a crash changed it since we last wrote it."""
        if self.ledger is None:
            raise ReconcileError(
                "no place for the ledger: set dms.configDir (mounted) or reconcile.ledgerPath"
            )
        sig = self._ledger_signature()
        if sig != self._ledger_sig:
            try:
                self.ledger.load()
            except LedgerError as exc:
                raise LedgerUnusable(str(exc)) from None
            self._ledger_sig = sig
        return self.ledger

    def digests(self, desired: Desired) -> dict[str, str]:
        """Keyed digests of the declared password intents, computed once per desired state."""
        # the state object itself is kept, so "is" can never match a new object at a reused id
        if self._digests is not None and self._digests[0] is desired.state:
            return self._digests[1]
        passwords = desired.state.passwords
        if not passwords:
            result: dict[str, str] = {}
        else:
            result = self._digest_changed(self._digest_key(), passwords)
        self._digests = (desired.state, result)
        return result

    def _digest_key(self) -> bytes:
        """The digest key, read and checked again only when its file changed (one stat per
        pass instead of resolving, checking and reading it on every update's path)."""
        assert self.ledger_path is not None
        rec = self.settings.reconcile
        sig = _file_signature(rec.ledger_key_file)
        if sig is not None and self._key is not None and self._key[0] == sig:
            return self._key[1]
        try:
            key = load_key(rec.ledger_key_file, self.ledger_path, rec.create_ledger_key)
        except LedgerError as exc:
            self._key = None
            raise LedgerUnusable(str(exc)) from None
        self._key = (_file_signature(rec.ledger_key_file), key)
        return key

    def _digest_changed(
        self, key: bytes, passwords: Mapping[str, PasswordIntent]
    ) -> dict[str, str]:
        """Digests, recomputing only intents that differ from the previous desired state's
        (a new state with one change costs one HMAC, not 10,000)."""
        old_intents, old_digests = self._intents if self._intents_key == key else ({}, {})
        result: dict[str, str] = {}
        fresh: dict[str, PasswordIntent] = {}
        for addr, intent in passwords.items():
            if old_intents.get(addr) == intent:
                result[addr] = old_digests[addr]
            else:
                fresh[addr] = intent
        result.update(intent_digests(key, fresh))
        self._intents = (passwords, result)
        self._intents_key = key
        return result

    def _plan(self, desired: Desired, actual: Actual, ledger: Ledger, policy: PlanPolicy) -> Plan:
        """plan(), computed once per pass for the same inputs: under the apply lock the plan
        is made again only when something it reads changed since the first one (another
        agent applied, the ledger was reloaded, a retry fell due), not a second time for
        nothing on every update's path."""
        digests = self.digests(desired)
        inputs = (desired, actual, ledger.data, digests)
        memo = self._plan_memo
        if memo is not None and memo[1] == policy and all(map(operator.is_, memo[0], inputs)):
            return memo[2]
        p = plan(desired, actual, ledger.data, policy, digests)
        self._plan_memo = (inputs, policy, p)
        return p

    def policy(self, allow_deletions: int = 0) -> PlanPolicy:
        rec = self.settings.reconcile
        now = self.clock()
        return PlanPolicy(
            prune=rec.prune,
            prune_unmanaged=rec.prune_unmanaged,
            delete_mail_data=rec.delete_mail_data,
            max_count=rec.max_deletions.count,
            max_percent=rec.max_deletions.percent,
            passwords=rec.passwords,
            allow_deletions=allow_deletions,
            via_commands=self.via_commands,
            deferred=frozenset(k for k, r in self.retries.items() if r.not_before > now),
            dkim_ops=not self.settings.dkim.enabled,
        )

    # --- one pass -------------------------------------------------------------------------
    async def plan_only(self, desired: Desired) -> PassReport:
        """Plan against the actual state without writing anything (observe mode, CLI plan)."""
        started = time.monotonic()
        report = PassReport()
        try:
            ledger = await asyncio.to_thread(self.refresh_ledger)
            digests = self.digests(desired)
            actual = await self.observe()
            report.plan = plan(desired, actual, ledger.data, self.policy(), digests)
            await self._add_dkim_work(desired, report.plan)
        except ReconcileError as exc:
            report.error = str(exc)
            report.ledger_failed = isinstance(exc, LedgerUnusable)
        report.duration = time.monotonic() - started
        self._publish(report)
        return report

    async def run_pass(
        self,
        desired: Desired,
        allow_deletions: int = 0,
        progress: Progress | None = None,
    ) -> PassReport:
        """Observe and plan; when there is anything to write, take the apply lock, plan again
        under it (another agent may just have applied) and apply; the ledger follows each op.
        An idle pass takes no lock and writes nothing."""
        started = time.monotonic()
        report = PassReport(applied=True)
        lock = None
        self._plan_memo = None
        try:
            ledger = await self.current_ledger()
            actual = await self.observe()
            p = self._plan(desired, actual, ledger, self.policy(allow_deletions))
            report.plan = p
            if p.fatal is None and self._writes(desired, actual, p):
                lock = await self._take_lock()
                await self._pass(desired, allow_deletions, report, progress)
            else:
                self._settle_retries(p, report)
            if report.plan is not None:
                await self._add_dkim_work(desired, report.plan)
        except (ReconcileError, LockBusy, LedgerError) as exc:
            report.error = str(exc)  # a LedgerError: the ledger could not record an op
            report.ledger_failed = isinstance(exc, LedgerUnusable | LedgerError)
        finally:
            if lock is not None:
                lock.release()
        report.duration = time.monotonic() - started
        self._publish(report)
        return report

    async def _add_dkim_work(self, desired: Desired, p: Plan) -> None:
        """What the DKIM component will do, when it owns DKIM (the plan then makes no key)."""
        dkim = self.settings.dkim
        if not dkim.enabled or self.config_dir is None or p.fatal or self.info is None:
            return
        specs = {d: dom.dkim for d, dom in desired.state.domains.items() if dom.dkim is not None}
        if not specs:
            return
        backend = dkim.backend if dkim.backend != "auto" else self.info.dkim_backend
        p.dkim = await asyncio.to_thread(
            dkim_work, specs, self.config_dir, backend, dkim.state_file,
            dkim.require_published, time.time(),
        )  # fmt: skip

    def _writes(self, desired: Desired, actual: Actual, p: Plan) -> bool:
        """Whether the plan or the ledger-only facts would write anything."""
        return bool(p.ops) or self._facts_pending(desired, actual, p)

    def _facts_pending(self, desired: Desired, actual: Actual, p: Plan) -> bool:
        """Whether _record_plan_facts has anything to record (else its thread hop is saved)."""
        if p.adopt or p.forget or p.settled:
            return True
        assert self.ledger is not None
        data = self.ledger.data
        if any(data.aliases.get(a) != frozenset(r) for a, r in desired.state.aliases.items()):
            return True
        hashes = actual.hashes
        if hashes is None:
            return False
        return any(e.hash is None and hashes.get(a) is not None for a, e in data.accounts.items())

    async def _take_lock(self) -> ApplyLock | None:
        """The apply lock in the config folder (a fresh file target's folder is created now)."""
        folder = self.config_dir or (self.ledger_path.parent if self.ledger_path else None)
        if folder is None:
            return None
        if not folder.is_dir():
            if self.executor is not None:
                return None
            folder.mkdir(parents=True, exist_ok=True)
        lock = ApplyLock(folder / AGENT_LOCK)
        await lock.acquire(self.settings.reconcile.lock_wait)
        return lock

    async def _pass(
        self,
        desired: Desired,
        allow_deletions: int,
        report: PassReport,
        progress: Progress | None,
    ) -> None:
        ledger = await self.current_ledger()
        actual = await self.observe()
        p = self._plan(desired, actual, ledger, self.policy(allow_deletions))
        if p.ops and self.executor is not None:
            # DMS compatibility is checked again right before applying anything
            info_before = self.info
            waiting = await self.check_dms()
            if waiting is not None:
                raise ReconcileError(waiting)
            if self.info != info_before:
                actual = await self.observe()
                p = self._plan(desired, actual, ledger, self.policy(allow_deletions))
        report.plan = p
        if p.fatal:
            return
        if self._facts_pending(desired, actual, p):
            await asyncio.to_thread(self._record_plan_facts, desired, actual, p)
        await self._apply(p, report, progress)
        self._settle_retries(p, report)
        await asyncio.to_thread(ledger.compact)
        self._ledger_sig = self._ledger_signature()

    def _record_plan_facts(self, desired: Desired, actual: Actual, p: Plan) -> None:
        """Ledger-only changes: adoptions, forgotten accounts, learned hashes, alias claims."""
        assert self.ledger is not None
        ledger = self.ledger
        if p.adopt:  # an empty batch would still open and fsync the journal
            ledger.set_accounts(
                {a.address: new_entry(a.digest, a.hash, "adopted") for a in p.adopt}
            )
        for addr in p.forget:
            ledger.forget_account(addr)
        for a in p.settled:
            entry = ledger.data.accounts.get(a.address)
            if entry is not None:
                ledger.set_account(a.address, replace(entry, digest=a.digest, hash=a.hash))
        if actual.hashes is not None:
            drift = set(p.drift)
            for addr, entry in list(ledger.data.accounts.items()):
                current = actual.hashes.get(addr)
                if entry.hash is None and current is not None and addr not in drift:
                    ledger.record_hash(addr, current)  # e.g. after a v1 ledger migration
        for alias, recipients in desired.state.aliases.items():
            claimed = frozenset(recipients)
            if ledger.data.aliases.get(alias) != claimed:
                ledger.set_alias(alias, claimed)

    async def _apply(
        self,
        p: Plan,
        report: PassReport,
        progress: Progress | None,
    ) -> None:
        assert self.ledger is not None and self.info is not None
        dms = self.settings.dms
        applier = Applier(
            self.ledger,
            self.executor,
            dms.setup_command,
            dms.command_timeout,
            self.config_dir,
            self.mail_dir,
            self.info.dkim_backend,
            dms.container_mail_dir,
        )
        total = len(p.ops)
        started = time.monotonic()
        last_progress = started
        interval = self.settings.reconcile.progress_interval
        if progress is not None:
            progress(0, total, None)
        done = 0
        for group in _batches(p.ops, applier.batchable):
            # yield once: a stop (SIGTERM) that arrived with the last op's end cancels us here,
            # before the next command starts
            await asyncio.sleep(0)
            if len(group) > 1:
                results = await applier.run_batch(group)
            else:
                results = [await applier.run(group[0])]
            done += len(results)
            for result in results:
                self._count(result, report)
            if results[-1].status == "unknown":
                report.interrupted = True  # observe afresh before anything else runs
                break
            now = time.monotonic()
            eta = (now - started) / done * (total - done)
            if progress is not None:
                progress(done, total, eta)  # /status: after every op (or batch)
            if now - last_progress >= interval and done < total:
                last_progress = now  # the log: every progressInterval seconds
                log.info("reconcile progress: %d/%d ops done, ETA %.0fs", done, total, eta)

    def _count(self, result: OpResult, report: PassReport) -> None:
        op = result.op
        report.results.append(result)
        report.commands_time += result.duration
        OPS.labels(op.kind, result.status).inc()
        OP_SECONDS.labels(op.kind).observe(result.duration)
        if result.status != "ok":
            log.warning("op %s %s: %s", op.kind, op.target, result.message or result.status)
            self.events.emit("OpFailed", f"{op.key}: {result.message}", "Warning")

    def _settle_retries(self, p: Plan, report: PassReport) -> None:
        rec = self.settings.reconcile
        now = self.clock()
        for r in report.results:
            key = r.op.key
            if r.status == "ok":
                self.retries.pop(key, None)
            else:  # failed, or unknown (re-planned from a fresh observe after its backoff)
                attempt = self.retries[key].attempt + 1 if key in self.retries else 0
                base = min(rec.retry_max, rec.retry_initial * 2**attempt)
                delay = base * (0.5 + random.random() / 2)
                self.retries[key] = Retry(attempt, now + delay)
        live = {op.key for op in p.ops} | {op.key for op in p.deferred}
        for key in list(self.retries):
            if key not in live:
                del self.retries[key]  # resolved otherwise (undeclared, done from outside)

    def next_retry(self) -> float | None:
        """Monotonic time of the earliest pending retry."""
        return min((r.not_before for r in self.retries.values()), default=None)

    # --- reporting ------------------------------------------------------------------------
    def _publish(self, report: PassReport) -> None:
        RECONCILES.labels(report.outcome).inc()
        RECONCILE_SECONDS.observe(report.duration)
        p = report.plan
        if self.ledger is not None:
            MANAGED.set(len(self.ledger.data.accounts))
        self._report_ledger(report)
        if p is None:
            return
        done = {r.op.key for r in report.results if r.status == "ok"}
        waiting = len([op for op in p.ops if op.key not in done])
        PENDING.set(waiting + len(p.deferred) + len(p.blocked) + len(p.refused) + len(p.pending))
        DRIFT.set(len(p.drift))
        REFUSED.set(len(p.refused))
        if report.outcome in ("noop", "applied"):
            LAST_SUCCESS.set(time.time())
        refused = tuple(op.key for op in p.refused)
        if refused and refused != self._last_refused:
            self.events.emit("DeletionsRefused", p.refused_reason, "Warning")
        self._last_refused = refused
        drift = tuple(p.drift)
        if drift and drift != self._last_drift:
            shown = ", ".join(drift[:5]) + (" …" if len(drift) > 5 else "")
            self.events.emit("PasswordDrift", f"{len(drift)} changed outside: {shown}", "Warning")
        self._last_drift = drift
        if p.fatal:
            self.events.emit("ReconcileRefused", p.fatal, "Warning")
        if report.applied and report.results and not report.failed:
            self.events.emit("Reconciled", f"{len(report.results)} ops applied")

    def _report_ledger(self, report: PassReport) -> None:
        """A pass failed closed because of the ledger: ERROR and an Event, once per cause."""
        cause = report.error if report.ledger_failed else None
        if cause is not None and cause != self._last_ledger_error:
            log.error("reconcile failed closed, the ledger is unusable: %s", cause)
            self.events.emit("LedgerUnusable", cause, "Warning")
        self._last_ledger_error = cause


# --- the component -------------------------------------------------------------------------


class Reconciler:
    """The long-running component: waits for triggers, runs passes, reports."""

    name = "reconcile"

    def __init__(self, ctx: AgentContext, engine: Engine | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.engine = engine or Engine(ctx.settings, ctx.executor, ctx.events)
        self.status: ComponentStatus = ctx.status.component(self.name)
        self.dirty = False
        self.passes = 0

    async def run(self) -> None:
        await self._wait_for_dms()
        hub = self.ctx.hub
        interval = self.settings.reconcile.resync_interval
        desired_seen = -1
        resync_seen = hub.resync.version
        next_resync = time.monotonic() + interval
        while True:
            desired_seen = hub.desired.version
            desired = hub.desired.value
            if desired is None:
                self.status.set(State.STARTING, "waiting for a desired state from the sources")
            else:
                await self.reconcile(desired)
                next_resync = time.monotonic() + interval
            resync_seen = await self._wait_trigger(desired_seen, resync_seen, next_resync)

    async def _wait_for_dms(self) -> None:
        delay = 1.0
        while True:
            waiting = await self.engine.check_dms()
            if waiting is None:
                return
            self.status.set(State.STARTING, waiting)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def reconcile(self, desired: Desired) -> PassReport:
        self.passes += 1
        self.status.set(
            self.status.state,
            f"pass {self.passes}: observing DMS and planning",
            progress={"phase": "planning"},
        )
        if self.settings.reconcile.mode == "observe":
            report = await self.engine.plan_only(desired)
        else:
            # one writer of DMS's config folder at a time within this process (DKIM too)
            async with self.ctx.setup_lock:
                report = await self.engine.run_pass(desired, progress=self._progress)
        self.dirty = report.interrupted or self._blocked_progress(report)
        self._show(report)
        if report.results:
            await self.engine.reread()
        return report

    @staticmethod
    def _blocked_progress(report: PassReport) -> bool:
        """Ops blocked by DMS's order rules may run once the others have: go again."""
        p = report.plan
        return bool(p and p.blocked and any(r.status == "ok" for r in report.results))

    def _progress(self, done: int, total: int, eta: float | None) -> None:
        """The pass in progress, in /status (the log says it every progressInterval)."""
        left = "" if eta is None else f", ETA {eta:.0f}s"
        self.status.set(
            self.status.state,
            f"pass {self.passes}: applying, {done}/{total} ops done{left}",
            progress={
                "phase": "applying",
                "done": done,
                "total": total,
                "etaSeconds": None if eta is None else round(eta, 1),
            },
        )

    def _show(self, report: PassReport) -> None:
        details = report.describe()
        details["progress"] = None  # the pass is over
        info = self.engine.info
        details["dms"] = {**(info.describe() if info else {}), "readiness": self.engine.readiness}
        details["mode"] = self.settings.reconcile.mode
        details["passes"] = self.passes
        p = report.plan
        if report.error is not None:
            self.status.set(State.FAILED, report.error, **details)
        elif p is not None and p.fatal:
            self.status.set(State.FAILED, p.fatal, **details)
        elif report.failed or (p is not None and (p.refused or p.blocked or p.pending)):
            self.status.set(State.DEGRADED, _headline(report), **details)
        else:
            self.status.set(State.OK, _headline(report), **details)

    async def _wait_trigger(self, desired_seen: int, resync_seen: int, next_resync: float) -> int:
        """Wait for the next reason to reconcile; returns the resync version seen."""
        hub = self.ctx.hub
        if self.dirty:
            return hub.resync.version
        wake = next_resync
        retry = self.engine.next_retry()
        if retry is not None:
            wake = min(wake, retry)
        timeout = max(0.0, wake - time.monotonic())
        waits = [
            asyncio.ensure_future(hub.desired.wait_newer(desired_seen)),
            asyncio.ensure_future(hub.resync.wait_newer(resync_seen)),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # cancelled, not awaited: awaiting them under suppress(CancelledError) would also
            # swallow a cancellation of this task arriving at that moment (a stop)
            for w in waits:
                w.cancel()
        return hub.resync.version


def _batches(ops: Sequence[Op], batchable: Callable[[Op], bool]) -> Iterator[list[Op]]:
    """``ops`` in order, a run of batchable ops of one kind together (at most MAX_BATCH)."""
    group: list[Op] = []
    for op in ops:
        if group and not (batchable(op) and op.kind == group[0].kind and len(group) < MAX_BATCH):
            yield group
            group = []
        group.append(op)
        if not batchable(op):
            yield group
            group = []
    if group:
        yield group


def _file_signature(path: Path | None) -> tuple[int, ...] | None:
    """What changes when a file is replaced (a kubelet ..data swap too), edited or chmod'ed."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _headline(report: PassReport) -> str:
    p = report.plan
    if p is None:
        return report.outcome
    parts = [f"{report.outcome}: {len(p.ops)} ops planned"]
    if report.applied:
        parts.append(f"{len(report.results) - len(report.failed)} done")
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    if p.refused:
        parts.append(f"{len(p.refused)} deletions refused")
    if p.drift:
        parts.append(f"{len(p.drift)} drifted")
    if p.pending:
        parts.append(f"{len(p.pending)} pending")
    if p.blocked:
        parts.append(f"{len(p.blocked)} blocked")
    if p.dkim:
        parts.append(f"{len(p.dkim)} DKIM steps for the DKIM component")
    if p.kept:
        parts.append(f"{len(p.kept)} kept, undeclared")
    return ", ".join(parts)


def build(ctx: AgentContext) -> list[Component]:
    """The reconciler: it idles until the sources publish a desired state."""
    components: list[Component] = [Reconciler(ctx)]
    return components
