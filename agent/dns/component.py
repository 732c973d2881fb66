"""The ``dns`` component: runs the checks on a schedule and whenever the desired mail state
changes, then publishes the results (hub, /status, metrics, Events).

Each run is a worker process (agent/dns/worker.py): the run's libraries (dnspython, pyspf,
dkimpy, TLS contexts; ~12 MB) live only while it runs, not in the agent all day. A worker that
crashes or hangs leaves the last results in place and says where it failed in /status; the next
run comes at the interval or with the next desired state, as usual.

DNS results never touch liveness, readiness or the mailserver verdict: a wrong record is a
problem for a person to fix, not a reason to restart anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from agent.dns import metrics, worker
from agent.dns.model import DomainReport, Status
from agent.dns.plan import plan_from
from agent.events import EventType
from agent.pacing import Pacer
from agent.status import State
from agent.worker import WorkerFailed, run_worker_text

if TYPE_CHECKING:
    from agent.app import AgentContext, Component

log = logging.getLogger("dms_agent.dns")

MAX_EVENTS_PER_RUN = 20  # one summary Event carries the rest
# seconds the worker may take beyond dns.deadline: an interpreter's start and imports on a
# busy node (the run itself stops at dns.deadline)
WORKER_GRACE = 30.0


class DnsChecker:
    name = "dns"

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.dns
        self._previous: dict[tuple[str, str], Status] = {}
        self.runs = 0

    async def run(self) -> None:
        hub = self.ctx.hub
        self.ctx.status.component(self.name).set(State.STARTING, "first run pending")
        while True:
            seen = hub.desired.version
            await self.check_once()
            try:  # the next run: at the interval, or at once when the desired state changes
                async with asyncio.timeout(self.settings.interval):
                    await hub.desired.wait_newer(seen)
            except TimeoutError:
                pass

    async def check_once(self) -> dict[str, DomainReport]:
        """One run in a worker process; its reports ({} when the worker failed)."""
        started = time.monotonic()
        plan = plan_from(self.settings, self.ctx.hub.desired.value)
        request = worker.request(self.settings, plan, self.ctx.settings.dms.config_dir)
        pace = Pacer()
        deadline = self.settings.deadline + WORKER_GRACE
        try:
            reply = await run_worker_text(worker.MODULE, request, deadline)
            reports, query_errors = await worker.read_reply(reply, pace)
        except WorkerFailed as exc:
            self._worker_failed(str(exc))
            return {}
        for kind, count in query_errors.items():
            for _ in range(count):
                metrics.count_error(kind)
        duration = time.monotonic() - started
        self.runs += 1
        await self._publish_metrics(reports, duration, pace)
        await self._publish_status(reports, duration, pace)
        await self._emit_events(reports, pace)
        self.ctx.hub.dns_results.set(reports)
        log.info("dns checks: %s in %.2fs", self.ctx.status.component(self.name).message, duration)
        return reports

    def _worker_failed(self, error: str) -> None:
        """The last results stay (status page, metrics); the state and message say why no new
        ones came, and where the worker failed."""
        log.error("dns checks: the run failed: %s", error)
        entry = self.ctx.status.component(self.name)
        entry.set(State.FAILED, f"the DNS run failed: {error}", workerError=error)

    async def _publish_metrics(
        self, reports: dict[str, DomainReport], duration: float, pace: Pacer
    ) -> None:
        current = {(d, c): r.status for d, rep in reports.items() for c, r in rep.results.items()}
        if self.runs == 1:
            metrics.CHECK_STATE.clear()  # series a previous generation (before a reload) left
        for domain, check in set(self._previous) - set(current):
            metrics.CHECK_STATE.remove(domain, check)  # a domain left the state: no stale series
        for (domain, check), status in current.items():
            metrics.CHECK_STATE.labels(domain, check).state(status.value)
            await pace()
        metrics.DOMAINS.set(len(reports))
        metrics.RUN_DURATION.set(duration)
        metrics.LAST_RUN.set(time.time())

    async def _publish_status(
        self, reports: dict[str, DomainReport], duration: float, pace: Pacer
    ) -> None:
        counts = {s.value: 0 for s in Status}
        problems = []
        views = {}
        for domain, rep in sorted(reports.items()):
            views[domain] = domain_view(rep)
            await pace()
            for res in rep.results.values():
                counts[res.status.value] += 1
                if res.status is not Status.PASS:
                    head = res.headline
                    problems.append(
                        {"domain": domain, "check": res.check, "status": res.status.value}
                        | {"message": head.message, "fix": head.fix}
                    )
        bad = counts["fail"] + counts["error"]
        state = State.DEGRADED if bad else State.OK
        message = f"{len(reports)} names checked: " + ", ".join(
            f"{n} {s}" for s, n in counts.items() if n
        )
        entry = self.ctx.status.component(self.name)
        entry.details.pop("workerError", None)  # a failed run before this one: over
        entry.set(
            state,
            message,
            counts=counts,
            problems=problems,
            domains=views,
            lastRun=time.time(),
            durationSeconds=round(duration, 3),
        )

    async def _emit_events(self, reports: dict[str, DomainReport], pace: Pacer) -> None:
        current = {(d, c): r for d, rep in reports.items() for c, r in rep.results.items()}
        changes = []
        for key, res in sorted(current.items()):
            before = self._previous.get(key)
            if res.status != before and not (before is None and res.status is Status.PASS):
                changes.append((before, res))
            await pace()
        self._previous = {k: r.status for k, r in current.items()}
        for before, res in changes[:MAX_EVENTS_PER_RUN]:
            head = res.headline
            kind: EventType = "Normal" if res.status is Status.PASS else "Warning"
            was = f" (was {before.value})" if before else ""
            text = f"{res.domain} {res.check}: {res.status.value}{was}: {head.message}"
            if head.fix:
                text += f". Fix: {head.fix}"
            self.ctx.events.emit(f"DnsCheck{res.status.value.capitalize()}", text, kind)
        if len(changes) > MAX_EVENTS_PER_RUN:
            rest = len(changes) - MAX_EVENTS_PER_RUN
            self.ctx.events.emit("DnsChecksChanged", f"{rest} more DNS results changed", "Warning")


def domain_view(rep: DomainReport) -> dict[str, Any]:
    """One domain's every check for /status and the status page: the deciding finding's
    found/expected, and every distinct fix of the check's non-passing findings, deciding first."""
    checks: dict[str, Any] = {}
    for name, res in rep.results.items():
        head = res.headline
        fixes = [head.fix] if head.fix else []
        for finding in res.findings:
            if finding.status is not Status.PASS and finding.fix and finding.fix not in fixes:
                fixes.append(finding.fix)
        checks[name] = {"status": res.status.value, "message": head.message}
        checks[name] |= {"found": head.found, "expected": head.expected, "fixes": fixes}
    return {"status": rep.status.value, "checkedAt": rep.checked_at, "checks": checks}


def build(ctx: AgentContext) -> list[Component]:
    if not ctx.settings.dns.enabled:
        ctx.status.component("dns").set(State.DISABLED, "dns.enabled is false")
        return []
    return [DnsChecker(ctx)]
