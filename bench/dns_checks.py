"""Benchmark: every DNS check for 200 domains against a local knotd (and a local HTTPS policy
server), as the agent runs them: ``DnsChecker.check_once`` on the probed loop, i.e. a worker
process (``python -m agent.dns.worker``: start-up, imports, the run, its JSON reply) and the
agent's own share (reading the reply, /status, metrics, Events). Prints the median wall time
and CPU time of a run and the largest lag of the agent's event loop seen during the runs
(goals: <= 1 s and <= 10 ms). ``--mode thread`` runs ``runner.run_off_loop`` (the run's own
loop in a thread of this process), ``--mode loop`` the run on the probed loop itself.

The policy server presents each ``mta-sts.<domain>`` host its own small certificate, chosen by
the name the client sends (SNI), as real policy hosts do. Until 2026-12-03 it presented one
certificate naming all 200 hosts to every client, so each of the 200 handshakes carried and
checked a 5.8 kB certificate (200 names) instead of a 0.7 kB one: a cost no real run has.
Since then it is haproxy by default (``--policy-server python``: the tests' aiohttp server):
a real run's policy hosts are elsewhere, while the local server shares the machine's two cores
with the run, and with haproxy the local servers (knotd and the policy server) take 0.2-0.3 s
of CPU per run, against 0.4-0.45 s with the Python one (the bench prints it).

    .venv/bin/python bench/dns_checks.py [--domains 200] [--runs 5] [--mode agent|thread|loop]
        [--policy-server haproxy|python]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.app import AgentContext
from agent.dns import runner
from agent.dns.component import DnsChecker
from agent.dns.config import DnsSettings, MtaStsSettings
from agent.settings import DmsSettings, Settings
from agent.status import StatusRegistry
from tests.dnscheck import world
from tests.rig.knot import start_knot
from tests.rig.proc import Daemon, free_port, require_binary


def domain_zone(name: str, p: str) -> str:
    return (
        f"@ MX 10 {world.MX}.\n"
        f'@ TXT "v=spf1 ip4:198.51.100.0/24 include:_spf.hosting.test -all"\n'
        f"mail._domainkey TXT {world.split_txt('v=DKIM1; k=rsa; p=' + p)}\n"
        f'_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@{name}"\n'
        f'_mta-sts TXT "v=STSv1; id=1"\n'
        f'_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls@{name}"\n'
    )


def serve_policies(ca: world.TestCA, policies: dict[str, str], port_q: Any, stop: Any) -> None:
    """The HTTPS policy server in its own process: its TLS work must not share our GIL."""
    with world.PolicyServer(ca, policies) as server:
        port_q.put(server.port)
        stop.wait()


HAPROXY_CONFIG = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend policies
    bind 127.0.0.1:{port} ssl crt {certs}
    http-request return status 200 content-type text/plain file {policy} if {{ path {path} }}
    http-request return status 404
"""


def haproxy_policies(ca: world.TestCA, policy: str, work: Path) -> tuple[Daemon, int]:
    """The policy hosts served by haproxy: each its own certificate (by SNI), the same policy.
    A C server: it takes far less of the machine's two cores than the Python one."""
    certs = work / "haproxy-certs"
    certs.mkdir()
    for name, (cert, key) in ca.hosts.items():
        (certs / f"{name}.pem").write_text(cert.read_text() + key.read_text())
    (work / "policy.txt").write_text(policy)
    port = free_port()
    config = work / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            port=port, certs=certs, policy=work / "policy.txt", path="/.well-known/mta-sts.txt"
        )
    )
    haproxy = require_binary("haproxy", "haproxy")
    daemon = Daemon("haproxy", [haproxy, "-db", "-f", str(config)], work)
    daemon.wait_tcp("127.0.0.1", port)
    return daemon, port


def start_policy_server(
    kind: str, ca: world.TestCA, policy: str, work: Path
) -> tuple[int, int, Callable[[], None]]:
    """The policy server: (port, pid, stop)."""
    if kind == "haproxy":
        daemon, port = haproxy_policies(ca, policy, work)
        return port, daemon.proc.pid, daemon.stop
    mp = multiprocessing.get_context("spawn")
    port_q, stop = mp.Queue(), mp.Event()
    policies = {host.removeprefix("mta-sts."): policy for host in ca.hosts}
    server = mp.Process(target=serve_policies, args=(ca, policies, port_q, stop))
    server.start()

    def end() -> None:
        stop.set()
        server.join(10)

    return port_q.get(timeout=30), server.pid or 0, end


async def lag_probe(stop: asyncio.Event, lags: list[float], cpu_lags: list[float]) -> None:
    """Loop lag: how late a 1 ms sleep wakes up. ``cpu_lags``: the loop thread's own CPU time
    in that span, i.e. the lag this code would cause on a machine with nothing else to run."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before, cpu = loop.time(), time.thread_time()
        await asyncio.sleep(0.001)
        lags.append(loop.time() - before - 0.001)
        cpu_lags.append(time.thread_time() - cpu)


@dataclass
class RunResult:
    wall: float
    cpu: float  # CPU seconds of this process (all threads) and its finished children
    worker_cpu: float  # of which the finished children's (the worker process)
    servers_cpu: float  # the local knotd's and policy server's, on the same two cores
    lags: list[float]
    cpu_lags: list[float]
    bad: int


async def idle_lags(seconds: float) -> list[float]:
    """The machine's noise floor: loop lag with nothing to do."""
    stop, lags = asyncio.Event(), []  # type: ignore[var-annotated]
    probe = asyncio.create_task(lag_probe(stop, lags, []))
    await asyncio.sleep(seconds)
    stop.set()
    await probe
    return lags


def expected_results(settings: DnsSettings, plan: runner.Plan) -> int:
    """How many results a complete run has (a failed worker returns none: all count as bad)."""
    per_domain = sum(len(runner.domain_checks(spec)) for spec in plan.domains)
    return per_domain + len(runner.host_checks(settings))


def process_cpu(pids: list[int]) -> float:
    """CPU seconds so far of running processes (Linux: utime and stime in /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU time of this process's children that have ended (the worker)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


async def one_run(
    settings: DnsSettings, plan: runner.Plan, dms: Path, mode: str, servers: list[int]
) -> RunResult:
    stop, lags, cpu_lags = asyncio.Event(), [], []  # type: ignore[var-annotated]
    probe = asyncio.create_task(lag_probe(stop, lags, cpu_lags))
    await asyncio.sleep(0.01)
    started, cpu, worker_cpu = time.perf_counter(), time.process_time(), children_cpu()
    servers_cpu = process_cpu(servers)
    if mode == "agent":
        agent_settings = Settings(dns=settings, dms=DmsSettings(config_dir=dms))
        ctx = AgentContext(settings=agent_settings, status=StatusRegistry())
        reports = await DnsChecker(ctx).check_once()
    else:
        run = runner.run_off_loop if mode == "thread" else runner.run
        reports = await run(settings, plan, dms)
    wall, worker_cpu = time.perf_counter() - started, children_cpu() - worker_cpu
    cpu = time.process_time() - cpu + worker_cpu
    servers_cpu = process_cpu(servers) - servers_cpu
    stop.set()
    await probe
    bad = sum(1 for r in reports.values() for c in r.results.values() if c.status.value != "pass")
    bad += expected_results(settings, plan) - sum(len(r.results) for r in reports.values())
    return RunResult(wall, cpu, worker_cpu, servers_cpu, lags, cpu_lags, bad)


def profile(path: str, settings: DnsSettings, plan: runner.Plan, dms: Path) -> None:
    """One run on this thread's loop under cProfile (worker threads are not profiled: pyspf's
    evaluation shows as the wait for it)."""
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(runner.run(settings, plan, dms))
    profiler.disable()
    profiler.dump_stats(path)
    print(f"profile of one on-loop run: {path} (python -m pstats {path})")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-freeze", action="store_true", help="skip gc.freeze()")
    parser.add_argument("--concurrency", type=int, default=None, help="dns.concurrency")
    parser.add_argument(
        "--mode",
        choices=("agent", "thread", "loop"),
        default="agent",
        help="agent: a worker process, as the agent runs it; thread: runner.run_off_loop; "
        "loop: on the probed loop",
    )
    parser.add_argument(
        "--policy-server",
        choices=("haproxy", "python"),
        default="haproxy",
        help="what serves the MTA-STS policies: haproxy, or the tests' aiohttp server",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="one extra run on the loop under cProfile, stats to PATH"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dns-bench-"))
    dms = work / "dms"
    keydir = dms / "rspamd" / "dkim"
    keydir.mkdir(parents=True)
    p = world.rsa_public_b64(2048, work, "bench")
    names = [f"d{i:03}.test" for i in range(args.domains)]
    zones = {n: domain_zone(n, p) for n in names}
    zones["hosting.test"] = (
        f'mail A {world.V4}\nmail AAAA {world.V6}\n_spf TXT "v=spf1 ip4:{world.V4} -all"\n'
    )
    zones["2.0.192.in-addr.arpa"] = f"25 PTR {world.MX}.\n"
    for n in names:
        (keydir / f"rsa-2048-mail-{n}.public.dns.txt").write_text(f"v=DKIM1; k=rsa; p={p}\n")
    ca = world.make_ca(work, [f"mta-sts.{n}" for n in names])
    knot = start_knot(work / "knot", zones)
    policy = f"version: STSv1\nmode: enforce\nmx: {world.MX}\nmax_age: 86400\n"
    https_port, server_pid, stop_server = start_policy_server(args.policy_server, ca, policy, work)
    try:
        settings = DnsSettings(
            enabled=True,
            mx_host=world.MX,
            ipv4=[world.V4],
            ipv6=[world.V6],
            egress=[world.V4],
            nameservers=[knot.nameserver],
            domains=names,
            **({"concurrency": args.concurrency} if args.concurrency else {}),
            mta_sts=MtaStsSettings(ca_bundle=ca.ca_pem, port=https_port, connect_to="127.0.0.1"),
        )
        plan = runner.plan_from(settings, None)
        if not args.no_freeze:
            # as run_agent does at start: the long-lived heap (modules, settings) leaves the
            # collector's generations, so a full collection does not walk it (tens of ms)
            gc.freeze()
        idle = asyncio.run(idle_lags(2.0))
        servers = [server_pid, knot.daemon.proc.pid]
        results = [
            asyncio.run(one_run(settings, plan, dms, args.mode, servers)) for _ in range(args.runs)
        ]
        if args.profile:
            profile(args.profile, settings, plan, dms)
    finally:
        stop_server()
        knot.stop()
    walls = [r.wall for r in results]
    cpus = [r.cpu for r in results]
    lags = [lag for r in results for lag in r.lags]
    wall, lag = statistics.median(walls), max(lags)
    how = {
        "agent": "a worker process, as the agent (DnsChecker.check_once)",
        "thread": "off-loop (runner.run_off_loop in a thread)",
        "loop": "on the probed loop",
    }[args.mode]
    print(
        f"domains: {args.domains} (+ MX host), 6 checks each, runs: {args.runs}, "
        f"concurrency: {settings.concurrency}, gc.freeze: {not args.no_freeze}, "
        f"run: {how}, "
        f"load average: {os.getloadavg()[0]:.1f}"
    )
    print(f"non-pass or missing results in the last run: {results[-1].bad} (expected 0)")
    print(
        f"wall time per run: median {wall:.3f} s (min {min(walls):.3f}, max {max(walls):.3f})"
        f"  goal <= 1 s, ratio {wall / 1.0:.2f}"
    )
    print(
        f"CPU time per run (this process and the worker): median {statistics.median(cpus):.3f} s"
        f" (min {min(cpus):.3f}, max {max(cpus):.3f}); the worker's alone: median "
        f"{statistics.median(r.worker_cpu for r in results):.3f} s"
    )
    print(
        "CPU time per run of the local servers (knotd, HTTPS policy server), on the same "
        f"cores: median {statistics.median(r.servers_cpu for r in results):.3f} s"
    )
    print(
        f"event-loop lag during runs: max {lag * 1e3:.1f} ms, p99 {pct(lags, 0.99) * 1e3:.1f} ms,"
        f" p50 {pct(lags, 0.5) * 1e3:.2f} ms  goal max <= 10 ms, ratio {lag / 0.010:.2f}"
    )
    cpu_lags = [lag for r in results for lag in r.cpu_lags]
    print(
        f"same lag counting only the loop thread's own CPU (what an idle machine would see): "
        f"max {max(cpu_lags) * 1e3:.1f} ms, p99 {pct(cpu_lags, 0.99) * 1e3:.1f} ms, "
        f"ratio {max(cpu_lags) / 0.010:.2f}"
    )
    print(
        f"idle loop lag on this machine (noise floor, 2 s): max {max(idle) * 1e3:.1f} ms, "
        f"p99 {pct(idle, 0.99) * 1e3:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
