"""Exec overhead: one command through KubeExecExecutor (WebSocket v4 to the test API server,
run in its own process, which runs the command as a local process) against the same command
run locally.

Both run ``timeout -k 5 N <cmd>`` so the process work is identical; the wall-time difference is
the exec path (agent side + test server: connect, upgrade, frames, status). The agent's own CPU
per command is measured apart (process time of this process). A real apiserver -> kubelet ->
container runtime adds hops of its own which cannot be measured here. Prints medians, ratio.
Run: .venv/bin/python bench/bench_kube_exec.py [rounds]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.kube.client import KubeClient, load_cluster_config
from agent.kube.config import KubeSettings
from agent.kube.exec import KubeExecExecutor

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "true": (["true"], None),
    "stdin 2 lines": (["sh", "-c", "read a; read b; echo ok"], "pw\npw\n"),
}


async def local(argv: list[str], stdin: str | None) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "timeout", "-k", "5", "60", *argv,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await proc.communicate(stdin.encode() if stdin else b"")
    return (time.perf_counter() - t0) * 1000


async def main(rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp())
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.kube_api", str(workdir), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert server.stdout is not None
    await server.stdout.readline()  # "ready <url>"
    client = KubeClient(load_cluster_config(KubeSettings(kubeconfig=workdir / "kubeconfig")))
    executor = KubeExecExecutor(client, "mail", "dms-0", "mailserver")
    print(f"exec overhead, {rounds} runs each (medians), test API server in its own process")
    for label, (argv, stdin) in COMMANDS.items():
        kube, here, cpu = [], [], []
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            result = await executor.run(argv, stdin=stdin)
            kube.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            assert result.ok, result
            here.append(await local(argv, stdin))
        k, h = statistics.median(kube), statistics.median(here)
        print(
            f"  {label:14s} kube exec {k:6.2f} ms  local {h:6.2f} ms  "
            f"overhead {k - h:5.2f} ms  ratio {k / h:4.2f}  "
            f"agent CPU per exec {statistics.median(cpu):.2f} ms"
        )
    await client.close()
    server.terminate()
    await server.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
