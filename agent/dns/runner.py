"""One run of the DNS checks over a set of domains, with a bound on concurrency.

Used by the agent's component (on a schedule and on state changes) and by ``check-dns``.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from agent.dns import checks, dkimkeys, spfeval
from agent.dns.config import DnsSettings
from agent.dns.model import CheckResult, DomainReport
from agent.dns.mtasts import LookupResolver, ssl_context
from agent.dns.resolver import Lookup, make_async_resolver

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DomainSpec:
    name: str
    selectors: frozenset[str] = frozenset()  # DKIM selectors the mail state declares
    send_only: bool = False


@dataclass(slots=True)
class Plan:
    """The mail domains to check (the MX host comes from the settings, in ``run``)."""

    domains: list[DomainSpec] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.domains]


def plan_from(settings: DnsSettings, desired: Any, only: Iterable[str] = ()) -> Plan:
    """Domains of the desired mail state (``agent.mailstate.model.Desired`` or None) plus the
    settings' extra domains; ``only`` restricts to those names (the CLI's arguments)."""
    selectors: dict[str, set[str]] = {}
    state = getattr(desired, "state", None)
    if state is not None:
        for name, domain in state.domains.items():
            sel = selectors.setdefault(name.lower(), set())
            if domain.dkim is not None:
                sel.add(domain.dkim.selector)
        for address in [*state.accounts, *state.aliases]:
            _local, at, part = address.rpartition("@")
            if at and part:  # a bare local-part alias ("postmaster") names no domain
                selectors.setdefault(part.lower(), set())
    for name in [*settings.domains, *settings.send_only_domains]:
        selectors.setdefault(name, set())
    wanted = [n.lower().rstrip(".") for n in only]
    for name in wanted:
        selectors.setdefault(name, set())
    names = sorted(n for n in selectors if not wanted or n in wanted)
    send_only = set(settings.send_only_domains)
    return Plan([DomainSpec(n, frozenset(selectors[n]), n in send_only) for n in names])


async def run(
    settings: DnsSettings,
    plan: Plan,
    config_dir: Path | None,
    on_error: Callable[[str], None] | None = None,
) -> dict[str, DomainReport]:
    """Check every domain of ``plan`` and the MX host; reports keyed by domain / host name."""
    lookup = Lookup(make_async_resolver(settings), on_error)
    loop = asyncio.get_running_loop()
    env = checks.Env(
        settings=settings,
        lookup=lookup,
        spf_ask=spfeval.loop_asker(lookup, loop, settings.lifetime + 1),
        dkim_keys=await asyncio.to_thread(_load_keys, config_dir, plan.names),
    )
    try:
        ctx = await asyncio.to_thread(ssl_context, settings.mta_sts.ca_bundle)
    except (OSError, ssl.SSLError) as exc:  # every MTA-STS check says so, as an error
        env.http_problem = f"dns.mtaSts.caBundle {settings.mta_sts.ca_bundle}: {exc}"
        ctx = await asyncio.to_thread(ssl_context, None)
    resolver = LookupResolver(lookup, settings.mta_sts.connect_to)
    # Each policy host is fetched once per run: no keep-alive. (Closing 200 idle TLS
    # connections together at the end stalled the loop for 15 ms in bench/dns_checks.py.)
    connector = aiohttp.TCPConnector(
        ssl=ctx, resolver=resolver, limit=settings.concurrency, force_close=True
    )
    async with aiohttp.ClientSession(connector=connector) as http:
        env.http = http
        jobs: list[Callable[[], Awaitable[DomainReport]]] = [
            functools.partial(_domain, env, spec) for spec in plan.domains
        ]
        if settings.mx_host:
            jobs.append(functools.partial(_host, env, settings.mx_host))
        reports: dict[str, DomainReport] = {}
        for report in await bounded(jobs, settings.concurrency):
            existing = reports.get(report.domain)
            if existing is None:
                reports[report.domain] = report
            else:  # a mail domain that is also the MX host name: one report
                existing.results.update(report.results)
    return reports


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


def _load_keys(config_dir: Path | None, names: list[str]) -> dict[str, dict[str, Any]]:
    return {n: dkimkeys.load_public_keys(config_dir, n) for n in names}


async def _domain(env: checks.Env, spec: DomainSpec) -> DomainReport:
    d, g = spec.name, checks.guard
    report = DomainReport(d)
    jobs = [
        g(d, "mx", checks.check_mx(env, d, spec.send_only)),
        g(d, "spf", checks.check_spf(env, d)),
        g(d, "dkim", _dkim(env, spec, report)),
        g(d, "dmarc", checks.check_dmarc(env, d)),
    ]
    if not spec.send_only:  # MTA-STS and TLS-RPT are about receiving mail
        jobs.append(g(d, "mta-sts", checks.check_mta_sts(env, d)))
        jobs.append(g(d, "tls-rpt", checks.check_tls_rpt(env, d)))
    for res in await asyncio.gather(*jobs):
        report.results[res.check] = res
    return report


async def _dkim(env: checks.Env, spec: DomainSpec, report: DomainReport) -> CheckResult:
    res, infos = await checks.check_dkim(env, spec.name, set(spec.selectors))
    report.dkim = infos
    return res


async def _host(env: checks.Env, host: str) -> DomainReport:
    report = DomainReport(host)
    jobs = [
        checks.guard(host, "mx-address", checks.check_mx_address(env, host)),
        checks.guard(host, "tlsa", checks.check_tlsa(env, host)),
    ]
    if env.settings.egress_addresses():
        jobs.append(checks.guard(host, "ptr", checks.check_ptr(env, host)))
    for res in await asyncio.gather(*jobs):
        report.results[res.check] = res
    return report
