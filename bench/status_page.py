"""Benchmark: the status page at ``/`` for 200 domains and 8 checks.

1. Render: ``snapshot()`` + ``render_page`` as the handler runs them in the event loop,
   repeated; median and p95 against the goal of 20 ms (issue #21).
2. Serve: the agent's own app on loopback; from separate processes (open loop), ``/healthz``
   at 100 req/s (the load bench/checks_load.py puts on it) alone, with ``/livez`` at 20 req/s
   (the control: a second client, no page) and with ``/`` at 20 req/s; /healthz p99 against
   its goal of 5 ms (issue #7), and the loop's lag.

    .venv/bin/python bench/status_page.py [--domains 200] [--seconds 10] [--repeat 3] [--no-cache]

``--no-cache`` renders on every request (the handler otherwise renders at most once per 5 s).
The machine is shared (2 cores): run it more than once and read the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web

from agent.server import STATUS_KEY, healthz, livez, make_app
from agent.status import StatusRegistry
from agent.web.dns import TableCache
from agent.web.handler import page_handler
from agent.web.page import render_page
from bench.checks_load import lag_monitor, pct
from tests.rig.proc import free_port
from tests.web_support import registry_for

RENDER_GOAL_MS = 20.0
HEALTHZ_P99_GOAL_MS = 5.0

LOAD_CLIENT = str(Path(__file__).with_name("load_client.py"))


def measure_render(
    registry: StatusRegistry, runs: int, cache: bool
) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds per render. ``cache``: the handler's steady state (DNS tables
    kept between DNS runs); without it, every render is like the first after a DNS run. On a
    shared machine wall time includes waiting for a core; CPU time is the loop's own work."""
    tables = TableCache() if cache else None
    render_page(registry.snapshot(), time.time(), dns_tables=tables)  # warm, as in steady state
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.thread_time()
        render_page(registry.snapshot(), time.time(), dns_tables=tables)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, cpu


async def serve_under_load(
    registry: StatusRegistry, rates: dict[str, float], seconds: float, cache: bool
) -> tuple[dict[str, list[float]], int, list[float]]:
    app = make_app(registry)
    if not cache:  # the same handler, rendering on every request
        app = web.Application()
        app[STATUS_KEY] = registry
        app.router.add_get("/", page_handler(registry, max_age=0))
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/livez", livez)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    lag: list[float] = []
    monitor = asyncio.create_task(lag_monitor(lag))
    try:
        # one client process per path: reading the page must not delay the client that
        # times /healthz (its own event loop would show up as /healthz latency)
        base = f"http://127.0.0.1:{port}"
        clients = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                LOAD_CLIENT,
                base,
                json.dumps({path: rate}),
                str(seconds),
                stdout=asyncio.subprocess.PIPE,
            )
            for path, rate in rates.items()
        ]
        outs = await asyncio.gather(*(c.communicate() for c in clients))
    finally:
        monitor.cancel()
        await runner.cleanup()
    results = [json.loads(out) for out, _ in outs]
    latencies = {p: v for r in results for p, v in r["latencies"].items()}
    return latencies, sum(r["errors"] for r in results), lag


def report_load(
    title: str, latencies: dict[str, list[float]], errors: int, lag: list[float]
) -> None:
    print(title)
    for path, values in latencies.items():
        ms = [v * 1000 for v in values]
        ratio = pct(ms, 0.99) / HEALTHZ_P99_GOAL_MS
        goal = f"   (goal p99 <= {HEALTHZ_P99_GOAL_MS:g} ms: ratio {ratio:.2f})"
        goal = goal if path == "/healthz" else ""
        print(
            f"  {path:9} n={len(ms):5d}  median {statistics.median(ms):6.2f} ms  "
            f"p99 {pct(ms, 0.99):6.2f} ms  max {max(ms):6.2f} ms{goal}"
        )
    lag_ms = [v * 1000 for v in lag]
    print(f"  loop lag  median {statistics.median(lag_ms):6.2f} ms  p99 {pct(lag_ms, 0.99):6.2f} ms"
          f"  max {max(lag_ms):6.2f} ms;  errors: {errors}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--runs", type=int, default=50, help="renders measured")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--healthz-rate", type=float, default=100.0)
    parser.add_argument("--page-rate", type=float, default=20.0)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="load runs of each scenario")
    args = parser.parse_args()
    broken = {f"d{i}.example.com" for i in range(0, args.domains, 10)}  # a tenth broken
    registry = registry_for(args.domains, broken=broken, failing={"smtp0"})
    page = render_page(registry.snapshot(), time.time()).encode()
    print(f"page: {args.domains} domains, 8 checks, {len(page) / 1024:.0f} KiB")
    for cached, what in ((True, "steady (DNS tables kept)"), (False, "first after a DNS run")):
        wall, cpu = measure_render(registry, args.runs, cached)
        print(f"render, {what}: n={len(wall)}")
        for name, ms in (("wall", wall), ("cpu", cpu)):
            median = statistics.median(ms)
            print(
                f"  {name:4} median {median:6.2f} ms  p95 {pct(ms, 0.95):6.2f} ms"
                f"  (goal median <= {RENDER_GOAL_MS:g} ms: ratio {median / RENDER_GOAL_MS:.2f})"
            )
    cache = not args.no_cache
    how = "cached 5 s" if cache else "rendered on every request"
    scenarios = {
        f"/healthz alone at {args.healthz_rate:g} req/s": {"/healthz": args.healthz_rate},
        # the control: the same second client process, asking for something trivial
        f"/healthz at {args.healthz_rate:g} req/s with /livez at {args.page_rate:g} req/s": {
            "/healthz": args.healthz_rate,
            "/livez": args.page_rate,
        },
        f"/healthz at {args.healthz_rate:g} req/s with / at {args.page_rate:g} req/s ({how})": {
            "/healthz": args.healthz_rate,
            "/": args.page_rate,
        },
    }
    p99s: dict[str, list[float]] = {title: [] for title in scenarios}
    for r in range(args.repeat):  # alternated, so a busy spell of the machine hits both
        for title, rates in scenarios.items():
            latencies, errors, lag = asyncio.run(
                serve_under_load(registry, rates, args.seconds, cache)
            )
            report_load(f"[{r + 1}/{args.repeat}] {title}, {args.seconds:g} s:", latencies,
                        errors, lag)  # fmt: skip
            p99s[title].append(pct([v * 1000 for v in latencies["/healthz"]], 0.99))
    print("/healthz p99, median of the repeats:")
    for title, values in p99s.items():
        median = statistics.median(values)
        print(f"  {median:6.2f} ms  (ratio {median / HEALTHZ_P99_GOAL_MS:.2f})  {title}")


if __name__ == "__main__":
    main()
