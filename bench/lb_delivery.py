"""Benchmark: how long a registration takes, end to end, with the real receiver.

The agent's TargetClient posts a signed v2 document to adnanh/webhook, which runs the example
script (state, render, `haproxy -c`, reload of a real master-worker HAProxy). Measured:
- delivery: the client's request until the proven answer (a moved address: check + reload),
- routed: from sending until a TCP client through HAProxy reaches the new backend,
- heartbeat: an unchanged registration (no check, no reload).

    .venv/bin/python bench/lb_delivery.py [--rounds 20]

The machine is shared (2 cores, several builds at once): read medians, run it twice.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from agent.lb.client import TargetClient
from agent.lb.config import LbPort, LbTarget
from agent.lb.payload import Registration
from agent.lb.sequence import SequenceSource
from tests.lbkit import backend, setup_host, wait_route
from tests.rig.haproxy import HAProxy
from tests.rig.proc import free_port
from tests.rig.webhook import WebhookFactory


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms"


async def main(rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    (work / "webhook").mkdir()
    (work / "haproxy").mkdir()
    hooks = WebhookFactory(None, work / "webhook", shutil.which("webhook") or "webhook")
    proxy = HAProxy(None, work / "haproxy", shutil.which("haproxy") or "/usr/sbin/haproxy")
    host = setup_host(hooks, proxy, work)
    port, front = free_port("127.0.0.2"), free_port()
    smtp = LbPort(name="smtp", frontend=front, backend=port)
    target = LbTarget(url=host.v2_url, secret_file=host.hmac_key)
    delivery, routed, heartbeat = [], [], []
    try:
        async with (
            backend("a", "127.0.0.2", port),
            backend("b", "127.0.0.3", port),
            aiohttp.ClientSession() as session,
        ):
            client = TargetClient(target, session, SequenceSource(None))
            for i in range(rounds):
                label, address = ("a", "127.0.0.2") if i % 2 == 0 else ("b", "127.0.0.3")
                reg = Registration("mailserver", "bench", None, address, (smtp,))
                started = time.perf_counter()
                outcome = await client.deliver(reg, "add")
                delivery.append(time.perf_counter() - started)
                assert outcome.ok, outcome
                await wait_route(front, label)
                routed.append(time.perf_counter() - started)
                started = time.perf_counter()
                assert (await client.deliver(reg, "add")).ok
                heartbeat.append(time.perf_counter() - started)
    finally:
        hooks.stop_all()
        proxy.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"rounds: {rounds}")
    print(f"delivery, address moved (check + reload): {ms(delivery)}")
    print(f"until HAProxy routes to the new node:      {ms(routed)}")
    print(f"heartbeat, unchanged (no reload):          {ms(heartbeat)}")
    ratio = statistics.median(delivery) / statistics.median(heartbeat)
    print(f"ratio moved/unchanged: {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
