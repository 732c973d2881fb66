"""Idle cost of the agent as shipped (``python -m agent run``), two set-ups:

1. mounted sources (a kubelet-style ConfigMap and Secret mount) + ``dms.executor.kind: kube``;
2. API sources (ConfigMap + Secret through list/watch) + ``dms.executor.kind: kube``.

Both talk to the test API server (in this process, so it is not counted), with Kubernetes
Events on. After a warm-up the agent is left alone; prints its RSS (VmRSS, and the peak VmHWM)
and its CPU time over the window. Goals: <= 45 MB (1) and <= 60 MB (2).
For comparison it also prints the RSS of a bare interpreter importing kubernetes_asyncio.
Only the components of this branch run (sources, merge, Events, HTTP server); the reconciler
and checks live elsewhere.
Run: .venv/bin/python bench/bench_kube_idle.py [seconds=60]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kube_api.fixtures import start_kube_api
from tests.kube_support import kubelet_write
from tests.rig.proc import free_port

ROOT = Path(__file__).resolve().parent.parent
STATE = "apiVersion: dms-agent/v1\naccounts:\n" + "".join(
    f"  user{i}@example.com: {{quota: 1G}}\n" for i in range(100)
)
PASSWORDS = "".join(f"user{i}@example.com: {{password: pw{i}-secret}}\n" for i in range(100))
TICKS = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> tuple[float, float, float]:
    """(RSS MB, peak RSS MB, CPU seconds) of ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = {k: v.split()[0] for k, _, v in (ln.partition(":") for ln in status) if v.split()}
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICKS
    return int(fields["VmRSS"]) / 1024, int(fields["VmHWM"]) / 1024, cpu


async def measure(label: str, settings: dict[str, object], workdir: Path, seconds: float) -> None:
    cfg = workdir / f"{label}.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "POD_NAME": "dms-0", "POD_NAMESPACE": "mail"}
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(cfg), "--log-level", "warning",
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        await asyncio.sleep(3)  # start-up and first publish
        assert agent.returncode is None, "the agent exited"
        _, _, cpu0 = proc_stats(agent.pid)
        await asyncio.sleep(seconds)
        rss, peak, cpu1 = proc_stats(agent.pid)
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 10)
    busy = cpu1 - cpu0
    print(
        f"  {label:28s} RSS {rss:5.1f} MB (peak {peak:5.1f})  CPU {busy * 1000:6.1f} ms "
        f"over {seconds:.0f} s ({100 * busy / seconds:.3f}%)"
    )


def baseline(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport pathlib\n"
         "print(pathlib.Path('/proc/self/status').read_text().split('VmRSS:')[1].split()[0])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.split()[-1]) / 1024


async def main(seconds: float) -> None:
    workdir = Path(tempfile.mkdtemp())
    api = await start_kube_api(workdir, bookmark_interval=60.0)
    store = api.server.store
    store.create("configmaps", "mail", {"metadata": {"name": "mail-state"},
                                        "data": {"mailserver.yaml": STATE}})  # fmt: skip
    store.create("secrets", "mail", {"metadata": {"name": "mail-passwords"},
                                     "stringData": {"passwords.yaml": PASSWORDS}})  # fmt: skip
    kubelet_write(workdir / "state", {"mailserver.yaml": STATE})
    kubelet_write(workdir / "passwords", {"passwords.yaml": PASSWORDS})
    common = {
        "logging": {"level": "warning"},
        "kube": {"kubeconfig": str(api.kubeconfig)},
        "dms": {"configDir": None, "executor": {"kind": "kube"}},
    }
    mounted = [
        {"kind": "path", "path": str(workdir / "state")},
        {"kind": "path", "path": str(workdir / "passwords"), "secret": True},
    ]
    via_api = [
        {"kind": "configmap", "name": "mail-state"},
        {"kind": "secret", "name": "mail-passwords"},
    ]
    print(f"idle agent, {seconds:.0f} s after a 3 s warm-up")
    for label, sources in (("mounted + kube exec", mounted), ("API sources + kube exec", via_api)):
        settings = {**common, "server": {"port": free_port()}, "sources": sources}
        await measure(label, settings, workdir, seconds)
    found = baseline("import agent.settings, agent.server")
    print(
        f"  reference: bare python {baseline('pass'):.1f} MB; foundation imports (settings, "
        f"HTTP server) {found:.1f} MB; bare python + kubernetes_asyncio "
        f"{baseline('import kubernetes_asyncio'):.1f} MB (not used by the agent)"
    )
    await api.server.stop()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
