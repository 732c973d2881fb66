"""ConfigMap update on a real kube-apiserver -> the agent's reconcile started, and the agent's
memory over many edits.

A real etcd + kube-apiserver (built by .ci/build-kube); the ServiceAccount, Role and
RoleBinding rendered by charts-lite/; the agent in-cluster with a TokenRequest token of that
ServiceAccount, its API sources and reconciler (executor ``file``: DMS's files written
directly, so no `setup` time is in the figures). A 100-account state ConfigMap and a passwords
Secret (pre-hashed). Each edit changes one account's quota, written by the admin with a PUT.

- end to end: the PUT is sent -> the reconciler starts its pass on the new state (includes the
  API server's write to etcd and its watch fan-out). Goal p50 <= 20 ms.
- agent's own share: the watch line is read by the agent -> the reconciler starts. Goal p50
  <= 5 ms.
- RSS of this process (the agent is most of it) after 100 edits and after 2,000: goal equal
  within 2 MB.

Run from the repository root: .venv/bin/python bench/kube_real_path.py [edits] [timed]
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.app import Agent
from agent.reconcile import reconciler
from agent.settings import Settings
from agent.sources import kube as kube_source
from tests.dms_double.fixtures import doveadm_hash
from tests.kube_real.cluster import KubeCluster, binary_dir
from tests.kube_real.pod import AgentPod, rendered

ACCOUNTS = 100


def state(edit: int) -> str:
    lines = ["apiVersion: dms-agent/v1", "accounts:"]
    for i in range(ACCOUNTS):
        quota = "2G" if i == edit % ACCOUNTS else "1G"  # never the state before
        lines.append(f"  user{i}@example.com: {{quota: {quota}}}")
    return "\n".join(lines) + "\n"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Stamps:
    """When the agent read a watch line, and when the reconciler started / ended a pass."""

    def __init__(self) -> None:
        self.read: list[float] = []
        self.started: list[float] = []
        self.done = asyncio.Event()
        read_line = kube_source.KubeSource._handle
        reconcile = reconciler.Reconciler.reconcile

        def handle(source: kube_source.KubeSource, event: dict[str, Any]) -> None:
            if event.get("type") == "MODIFIED":
                self.read.append(time.perf_counter())
            read_line(source, event)

        async def timed(rec: reconciler.Reconciler, desired: Any) -> Any:
            self.started.append(time.perf_counter())
            try:
                return await reconcile(rec, desired)
            finally:
                self.done.set()

        kube_source.KubeSource._handle = handle  # type: ignore[method-assign]
        reconciler.Reconciler.reconcile = timed  # type: ignore[method-assign]


async def main(edits: int, timed: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="kube-real-bench-"))
    cluster = KubeCluster(work, binary_dir())
    cluster.start()
    try:
        await run(cluster, work, edits, timed)
    finally:
        cluster.stop()


async def run(cluster: KubeCluster, work: Path, edits: int, timed: int) -> None:
    ns = "bench"
    cluster.create_namespace(ns)
    pod = AgentPod.deploy(cluster, ns, rendered("chart"), work)
    names = pod.source_names()
    hashed = doveadm_hash("user@example.com", "a bench password")
    pod.put("ConfigMap", names["configmap"], {"data": {"mailserver.yaml": state(-1)}})
    pw = "".join(f'user{i}@example.com: {{hash: "{hashed}"}}\n' for i in range(ACCOUNTS))
    pod.put("Secret", names["secret"], {"stringData": {"passwords.yaml": pw}})

    os.environ.update(pod.environ())
    os.environ.pop("KUBECONFIG", None)
    (work / "keys").mkdir()
    (work / "keys" / "ledger.key").write_text("bench ledger key\n")
    (work / "keys" / "ledger.key").chmod(0o600)
    settings = Settings.model_validate(
        {
            "sources": pod.settings["sources"],
            "kube": {**pod.settings.get("kube", {}), "serviceAccountDir": str(pod.sa_dir)},
            "dms": {"configDir": str(work / "dms-config"), "executor": {"kind": "file"}},
            "reconcile": {"ledgerKeyFile": str(work / "keys" / "ledger.key")},
            "dkim": {"enabled": False},
            "logging": {"level": "warning"},
        }
    )
    (work / "dms-config").mkdir()
    stamps = Stamps()
    agent = Agent(settings, None)
    agent._builders = ["agent.sources.build:build", "agent.reconcile.reconciler:build"]
    await agent.start_components()
    try:
        total, own, rss = await edit_rounds(cluster, ns, names["configmap"], stamps, edits, timed)
    finally:
        await agent.stop_components()
    report(total, own, rss, edits, timed)


async def edit_rounds(
    cluster: KubeCluster, ns: str, name: str, stamps: Stamps, edits: int, timed: int
) -> tuple[list[float], list[float], dict[int, float]]:
    await asyncio.wait_for(stamps.done.wait(), 60)  # the first sync
    path = f"/api/v1/namespaces/{ns}/configmaps/{name}"
    current = cluster.admin.get(path)
    total: list[float] = []
    own: list[float] = []
    rss: dict[int, float] = {}
    for edit in range(edits):
        stamps.done.clear()
        body = {**current, "data": {"mailserver.yaml": state(edit)}}
        sent = time.perf_counter()
        current = await asyncio.to_thread(cluster.admin.put, path, body)
        await asyncio.wait_for(stamps.done.wait(), 30)
        if edit < timed:
            total.append((stamps.started[-1] - sent) * 1000)
            own.append((stamps.started[-1] - stamps.read[-1]) * 1000)
        if edit + 1 in (100, edits):
            gc.collect()
            rss[edit + 1] = rss_mb()
    return total, own, rss


def report(
    total: list[float], own: list[float], rss: dict[int, float], edits: int, timed: int
) -> None:
    print(f"real kube-apiserver, {ACCOUNTS}-account state, {timed} timed edits of {edits}")
    print(
        f"  end to end (PUT sent -> reconcile started): p50 {statistics.median(total):.2f} ms, "
        f"p99 {pct(total, 0.99):.2f} ms; goal p50 <= 20 ms: ratio "
        f"{statistics.median(total) / 20:.2f}"
    )
    print(
        f"  agent's share (watch line read -> reconcile started): p50 "
        f"{statistics.median(own):.2f} ms, p99 {pct(own, 0.99):.2f} ms; goal p50 <= 5 ms: "
        f"ratio {statistics.median(own) / 5:.2f}"
    )
    first, last = rss[100], rss[edits]
    print(
        f"  RSS after 100 edits {first:.1f} MB, after {edits} {last:.1f} MB: "
        f"difference {last - first:+.1f} MB (goal within 2 MB)"
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    t = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    asyncio.run(main(max(n, 100), min(t, n)))
