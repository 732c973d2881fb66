"""An open-loop HTTP load client, run as its own process so the server's event loop is what
gets measured: requests leave on schedule (each path at its own rate), not after the previous
answer. Prints ``{"latencies": {path: [seconds...]}, "errors": n}`` as JSON; 200 and 503 (the
verdict) are answers, anything else or no answer is an error.

    python bench/load_client.py BASE_URL '{"/healthz": 100, "/": 20}' SECONDS
"""

import asyncio
import json
import sys
import time

import aiohttp


async def main(base: str, rates: dict[str, float], seconds: float) -> None:
    plan = sorted(
        (i / rate, path) for path, rate in rates.items() if rate for i in range(int(rate * seconds))
    )
    lat: dict[str, list[float]] = {p: [] for p in rates}
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:

        async def one(path: str) -> None:
            nonlocal errors
            t = time.perf_counter()
            try:
                async with s.get(base + path) as r:
                    await r.read()
                    errors += r.status not in (200, 503)
            except aiohttp.ClientError:
                errors += 1
                return
            lat[path].append(time.perf_counter() - t)

        start = time.perf_counter()
        tasks = []
        for at, path in plan:
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(path)))
        await asyncio.gather(*tasks)
    print(json.dumps({"latencies": lat, "errors": errors}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])))
