"""Benchmark: every DNS check of 23 domains against a nameserver that never answers, default
timeouts (2 s per attempt, 5 s per lookup, 15 s per run). Prints the median wall time of a run
(goal: <= 10 s; before the run deadline and the silence watch it took 56-62 s).

    .venv/bin/python bench/dns_dead_nameserver.py [--domains 23] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.dns import runner
from agent.dns.config import DnsSettings


async def one_run(settings: DnsSettings, plan: runner.Plan) -> tuple[float, int]:
    started = time.perf_counter()
    reports = await runner.run(settings, plan, None)
    wall = time.perf_counter() - started
    errors = sum(1 for r in reports.values() for c in r.results.values() if c.status == "error")
    return wall, errors


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domains", type=int, default=23)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: every query times out
        settings = DnsSettings(
            enabled=True,
            mx_host="mail.hosting.test",
            ipv4=["192.0.2.25"],
            nameservers=[f"127.0.0.1:{silent.getsockname()[1]}"],
            domains=[f"d{i:02}.test" for i in range(args.domains)],
        )
        plan = runner.plan_from(settings, None)
        results = [asyncio.run(one_run(settings, plan)) for _ in range(args.runs)]
    walls = [w for w, _ in results]
    wall = statistics.median(walls)
    print(
        f"domains: {args.domains} (+ MX host), silent nameserver, runs: {args.runs}, "
        f"load average: {os.getloadavg()[0]:.1f}"
    )
    print(f"error results per run: {results[-1][1]} (expected {args.domains * 6 + 3})")
    print(
        f"wall time per run: median {wall:.2f} s (min {min(walls):.2f}, max {max(walls):.2f})"
        f"  goal <= 10 s, ratio {wall / 10.0:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
