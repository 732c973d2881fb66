"""/livez latency while others hold the port: 3,000 idle + 500 slowloris connections.

The server runs in a child process (as in the pod: its own event loop, its own open-file
limit), with the default server settings; this process opens the connections, then times
fresh-connection GET /livez requests (the kubelet opens one per probe). Printed: p50/p99/max
over the probes, for an open-file limit of 1024 (the usual default) and of 256, against the
goal of 100 ms. Run: .venv/bin/python bench/http_limits.py [probes]
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 100.0
IDLE, SLOWLORIS = 3000, 500

SERVER = """
import asyncio, resource, sys
sys.path.insert(0, {root!r})
from agent.server import serve
from agent.settings import ServerSettings
from agent.status import StatusRegistry
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
async def main():
    runner = await serve(StatusRegistry(), ServerSettings(host="127.0.0.1", port=0))
    print(runner.addresses[0][1], flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_many(port: int, n: int, head: bytes = b"") -> list[Conn]:
    async def one() -> Conn:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(head)
        return r, w

    out: list[Conn] = []
    for start in range(0, n, 100):
        out += await asyncio.gather(*(one() for _ in range(min(100, n - start))))
    return out


async def probe_ms(port: int) -> float:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(5):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            ok = (await r.read()).startswith(b"HTTP/1.1 200")
            w.close()
    except (TimeoutError, ConnectionError):
        ok = False
    return (time.perf_counter() - started) * 1000 if ok else float("inf")


async def measure(port: int, probes: int) -> list[float]:
    conns = await open_many(port, IDLE)
    conns += await open_many(port, SLOWLORIS, b"GET /livez HTTP/1.1\r\nX-a: ")
    times = []
    for _ in range(probes):
        times.append(await probe_ms(port))
        await asyncio.sleep(0.02)
    for _, w in conns:
        w.close()
    return sorted(times)


def run(limit: int, probes: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(ROOT), limit=limit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        times = asyncio.run(measure(int(proc.stdout.readline()), probes))
    finally:
        proc.kill()
        proc.wait()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"open-file limit {limit:5d}: /livez p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
        f"max {times[-1]:6.2f} ms  (goal {GOAL_MS:.0f} ms: p99 at {p99 / GOAL_MS:.2f}x)"
    )


def main() -> None:
    probes = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * (IDLE + SLOWLORIS) + 512), hard))
    print(f"{IDLE} idle + {SLOWLORIS} slowloris connections held, {probes} probes")
    for limit in (1024, 256):
        run(limit, probes)


if __name__ == "__main__":
    main()
