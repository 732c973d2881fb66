"""Run the test API server on its own: ``python -m tests.kube_api DIR [PORT]``.

Writes DIR/kubeconfig and DIR/token, prints ``ready <url>`` and serves until SIGTERM/SIGINT.
For benchmarks that keep the server out of the measured process. Objects can be preloaded
from DIR/objects.json: ``[{"plural": "configmaps", "namespace": "mail", "body": {...}}]``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.kube_api.fixtures import start_kube_api


async def main(workdir: Path) -> None:
    api = await start_kube_api(workdir, bookmark_interval=60.0)
    preload = workdir / "objects.json"
    if preload.exists():
        for item in json.loads(preload.read_text()):
            api.server.store.create(item["plural"], item["namespace"], item["body"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {api.server.url}", flush=True)
    await stop.wait()
    await api.server.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
