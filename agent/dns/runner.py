"""One run of the DNS checks over a set of domains, with a bound on concurrency.

Used by the agent's component (on a schedule and on state changes) and by ``check-dns``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from agent.dns import checks, dkimkeys, spfeval
from agent.dns.model import CHECKS, CheckResult, DomainReport, Finding, Status
from agent.dns.mtasts import PolicyFetcher, ssl_context
from agent.dns.plan import DomainSpec, Plan
from agent.dns.plan import plan_from as plan_from  # re-exported: check-dns and tests use it
from agent.dns.resolver import Lookup
from agent.dns.runsettings import RunSettings, Validated, for_run
from agent.dns.transport import make_transport

T = TypeVar("T")


async def run(
    given: RunSettings | Validated,
    plan: Plan,
    config_dir: Path | None,
    on_error: Callable[[str], None] | None = None,
) -> dict[str, DomainReport]:
    """Check every domain of ``plan`` and the MX host; reports keyed by domain / host name."""
    settings = for_run(given)
    transport = make_transport(settings)
    lookup = Lookup(transport, on_error)
    loop = asyncio.get_running_loop()
    env = checks.Env(
        settings=settings,
        lookup=lookup,
        spf_ask=spfeval.loop_asker(lookup, loop, settings.lifetime + 1),
        dkim_keys=await asyncio.to_thread(dkimkeys.load_domains_keys, config_dir, plan.names),
    )
    try:
        ctx = await asyncio.to_thread(ssl_context, settings.mta_sts.ca_bundle)
    except (OSError, ssl.SSLError) as exc:  # every MTA-STS check says so, as an error
        env.http_problem = f"dns.mtaSts.caBundle {settings.mta_sts.ca_bundle}: {exc}"
        ctx = await asyncio.to_thread(ssl_context, None)
    env.http = PolicyFetcher(ctx, lookup, settings.mta_sts.connect_to, settings.concurrency)
    reports = {spec.name: DomainReport(spec.name) for spec in plan.domains}
    jobs: list[Callable[[], Awaitable[None]]] = [
        functools.partial(_domain, env, spec, reports[spec.name]) for spec in plan.domains
    ]
    host = settings.mx_host
    if host:  # a mail domain that is also the MX host name: one report
        jobs.append(
            functools.partial(_host, env, host, reports.setdefault(host, DomainReport(host)))
        )
    try:
        reason = await _within_deadline(bounded(jobs, settings.concurrency), lookup, settings)
    finally:
        env.http.close()
        lookup.close()
        transport.close()
    if reason is not None:
        for spec in plan.domains:
            _unfinished(reports[spec.name], domain_checks(spec), reason)
        if host:
            _unfinished(reports[host], host_checks(settings), reason)
    for report in reports.values():  # finished in any order; shown in one
        report.results = dict(sorted(report.results.items(), key=lambda kv: CHECKS.index(kv[0])))
    return reports


async def run_off_loop(
    settings: RunSettings | Validated,
    plan: Plan,
    config_dir: Path | None,
    on_error: Callable[[str], None] | None = None,
) -> dict[str, DomainReport]:
    """``run`` on its own event loop in a worker thread, as the agent runs it.

    A run is CPU work on whichever loop runs it (building and parsing ~6 DNS messages per
    domain, TLS handshakes for MTA-STS): on the agent's loop, 200 domains delayed /healthz
    by up to 26 ms. On a loop of its own, the agent's loop only waits for the GIL, which the
    interpreter hands over every few milliseconds. Cancelling this cancels the run.
    """
    handle = _RunHandle()

    async def body() -> dict[str, DomainReport]:
        task = asyncio.ensure_future(run(settings, plan, config_dir, on_error))
        handle.started(asyncio.get_running_loop(), task)
        return await task

    worker = asyncio.ensure_future(asyncio.to_thread(asyncio.run, body()))
    worker.add_done_callback(_retrieve)  # a cancelled run's end is nobody's business
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        handle.cancel()
        raise


class _RunHandle:
    """Cancels a run on another thread's loop, whether or not that run has started yet: the
    run checks ``abandoned`` once it has registered, the canceller after setting it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.abandoned = False
        self._run: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    def started(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._run = (loop, task)
            if self.abandoned:
                task.cancel()

    def cancel(self) -> None:
        with self._lock:
            self.abandoned = True
            if self._run is not None and not self._run[1].done():
                loop, task = self._run
                with contextlib.suppress(RuntimeError):  # its loop closed meanwhile: it ended
                    loop.call_soon_threadsafe(task.cancel)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _within_deadline(
    work: Awaitable[Any], lookup: Lookup, settings: RunSettings
) -> str | None:
    """Run ``work`` until done, the deadline, or the nameserver found silent: None when it
    finished, else why not (the remaining checks' error)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(lookup.watch(settings.timeout))
    silent = asyncio.ensure_future(lookup.dead.wait())
    try:
        await asyncio.wait({task, silent}, timeout=settings.deadline, return_when="FIRST_COMPLETED")
    except asyncio.CancelledError:
        task.cancel()  # the run itself was cancelled: take the checks down with it
        raise
    finally:
        watch.cancel()
        silent.cancel()
    if task.done():
        task.result()  # the jobs guard their checks: only a bug raises here
        return None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if lookup.dead.is_set():
        return f"nameserver not answering: nothing came back within {settings.timeout:g} s"
    return f"not checked: the run's deadline (dns.deadline, {settings.deadline:g} s) passed"


def _unfinished(report: DomainReport, names: list[str], reason: str) -> None:
    fix = "check that the configured nameservers answer, then re-run the check"
    for name in names:
        if name not in report.results:
            finding = Finding(Status.ERROR, reason, fix=fix)
            report.results[name] = CheckResult(report.domain, name, (finding,))


def domain_checks(spec: DomainSpec) -> list[str]:
    names = ["mx", "spf", "dkim", "dmarc"]
    if not spec.send_only:  # MTA-STS and TLS-RPT are about receiving mail
        names += ["mta-sts", "tls-rpt"]
    return names


def host_checks(settings: RunSettings | Validated) -> list[str]:
    return ["mx-address", "tlsa", *(["ptr"] if for_run(settings).egress_addresses() else [])]


async def bounded(jobs: list[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run ``jobs`` with at most ``limit`` at once, results in order.

    A fixed set of workers pulls the next job, rather than one task per job waiting on a
    semaphore: 200 domains then never wake up in the same loop iteration.
    """
    results: list[T | None] = [None] * len(jobs)
    pending = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in pending:
            results[index] = await job()

    await asyncio.gather(*(worker() for _ in range(min(limit, len(jobs)))))
    return [r for r in results if r is not None]


async def _domain(env: checks.Env, spec: DomainSpec, report: DomainReport) -> None:
    d = spec.name
    bodies = {
        "mx": checks.check_mx(env, d, spec.send_only),
        "spf": checks.check_spf(env, d),
        "dkim": _dkim(env, spec, report),
        "dmarc": checks.check_dmarc(env, d),
        "mta-sts": checks.check_mta_sts(env, d),
        "tls-rpt": checks.check_tls_rpt(env, d),
    }
    await _collect(report, {name: bodies.pop(name) for name in domain_checks(spec)})
    for unused in bodies.values():
        unused.close()  # never awaited: no "coroutine was never awaited" warning


async def _collect(report: DomainReport, bodies: dict[str, Awaitable[CheckResult]]) -> None:
    """Run the checks together; each result lands in ``report`` as soon as it is known (a run
    stopped early keeps what was finished)."""

    async def one(name: str, body: Awaitable[CheckResult]) -> None:
        res = await checks.guard(report.domain, name, body)
        report.results[res.check] = res

    await asyncio.gather(*(one(name, body) for name, body in bodies.items()))


async def _dkim(env: checks.Env, spec: DomainSpec, report: DomainReport) -> CheckResult:
    res, infos = await checks.check_dkim(env, spec.name, set(spec.selectors))
    report.dkim = infos
    return res


async def _host(env: checks.Env, host: str, report: DomainReport) -> None:
    bodies: dict[str, Awaitable[CheckResult]] = {
        "mx-address": checks.check_mx_address(env, host),
        "tlsa": checks.check_tlsa(env, host),
    }
    if env.settings.egress_addresses():
        bodies["ptr"] = checks.check_ptr(env, host)
    await _collect(report, bodies)
