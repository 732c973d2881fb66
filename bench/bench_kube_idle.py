"""Idle cost of the agent as shipped (``dms-agent run``), with every component of a pod on.

Two set-ups, both with ``dms.executor.kind: kube`` against the test API server (run in this
process, so it is not counted) and the DMS `setup` double behind its exec:
1. mounted sources (a kubelet-style ConfigMap and Secret mount);
2. API sources (ConfigMap + Secret through list/watch).
Components: sources, reconcile, DKIM (keys made through `setup`), DNS checks (against a
loopback port where nothing answers: the run completes with errors, as fast as its timeouts),
the DMS default checks, Kubernetes Events, the HTTP server.

Prints
- each component's import cost: RSS of a fresh interpreter that imported the foundation
  (settings, HTTP server, metrics, supervisor) and then that component, minus the foundation;
- per set-up, RSS (VmRSS) once serving, after the first reconcile, DNS run and DKIM pass, and
  after an idle window, with the CPU share over that window; each against its goal
  (55 MB RSS, 0.3 % CPU).
Run: .venv/bin/python bench/bench_kube_idle.py [seconds=60]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.dms_double.fixtures import DmsDouble
from tests.kube_api.fixtures import start_kube_api
from tests.kube_support import kubelet_write
from tests.rig.proc import free_port

ROOT = Path(__file__).resolve().parent.parent
DMS_AGENT = str(Path(sys.executable).parent / "dms-agent")
GOAL_RSS_MB, GOAL_CPU_PCT = 55.0, 0.3
STATE = (
    "apiVersion: dms-agent/v1\ndomains:\n  example.com: {dkim: {selector: mail}}\naccounts:\n"
    + "".join(f"  user{i}@example.com: {{quota: 1G}}\n" for i in range(100))
)
PASSWORDS = "".join(f"user{i}@example.com: {{password: pw{i}-secret}}\n" for i in range(100))
TICKS = os.sysconf("SC_CLK_TCK")
FOUNDATION = "import agent.app, agent.server, agent.settings, agent.metrics"
COMPONENTS = {
    "mounted sources (watchfiles)": "agent.sources.mounted, watchfiles",
    "API sources + kube client": "agent.sources.kube",
    "kube exec + Events": "agent.kube.exec, agent.kube.events",
    "reconcile": "agent.reconcile.reconciler",
    "checks": "agent.checks.runner, agent.checks.probes",
    "DKIM manager": "agent.dkim.manager",
    "DNS checks (component)": "agent.dns.component",
    "DNS checks (the run itself)": "agent.dns.runner",
    "LB client": "agent.lb.component",
}


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, (int(stat[11]) + int(stat[12])) / TICKS


def rss_of(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport pathlib\n"
         "print(pathlib.Path('/proc/self/status').read_text().split('VmRSS:')[1].split()[0])"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return int(out.stdout.split()[-1]) / 1024


def import_costs() -> None:
    bare, base = rss_of("pass"), rss_of(FOUNDATION)
    print(f"import cost over the foundation ({base:.1f} MB; a bare interpreter {bare:.1f} MB)")
    for name, modules in COMPONENTS.items():
        cost = rss_of(f"{FOUNDATION}\nimport {modules}") - base
        print(f"  {name:32s} +{cost:5.1f} MB")


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
        components: dict[str, Any] = json.load(resp)["components"]
        return components


def first_passes_done(components: dict[str, Any]) -> bool:
    dns = components.get("dns", {})
    dkim = components.get("dkim", {})
    reconcile = components.get("reconcile", {})
    return (
        "lastRun" in dns.get("details", dns)
        and dkim.get("state") not in (None, "starting")
        and reconcile.get("state") not in (None, "starting")
    )


async def wait_ready(port: int, pid: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            components = await asyncio.to_thread(status, port)
            if first_passes_done(components):
                return components
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"agent {pid}: no first DNS run / DKIM pass in {timeout}s")


async def measure(label: str, settings: dict[str, Any], workdir: Path, seconds: float) -> None:
    cfg = workdir / f"{label.split()[0]}.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "POD_NAME": "dms-0", "POD_NAMESPACE": "mail"}
    agent = await asyncio.create_subprocess_exec(
        DMS_AGENT, "run", "--config", str(cfg), cwd=ROOT, env=env
    )
    port = settings["server"]["port"]
    try:
        started = time.monotonic()
        while True:
            try:
                await asyncio.to_thread(status, port)
                break
            except OSError:
                if time.monotonic() - started > 60:
                    raise SystemExit("the agent did not start serving") from None
                await asyncio.sleep(0.05)
        serving, _ = proc_stats(agent.pid)
        components = await wait_ready(port, agent.pid)
        after, cpu0 = proc_stats(agent.pid)
        await asyncio.sleep(seconds)
        idle, cpu1 = proc_stats(agent.pid)
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 15)
    share = 100 * (cpu1 - cpu0) / seconds
    states = ", ".join(f"{k} {v['state']}" for k, v in sorted(components.items()))
    print(f"{label}")
    print(f"  components: {states}")
    print(f"  RSS serving                    {serving:5.1f} MB")
    print(f"  RSS after first DNS+DKIM pass  {after:5.1f} MB   {after / GOAL_RSS_MB:4.2f}x goal")
    print(f"  RSS after {seconds:3.0f} s idle          {idle:5.1f} MB   "
          f"{idle / GOAL_RSS_MB:4.2f}x goal ({GOAL_RSS_MB:.0f} MB)")  # fmt: skip
    print(f"  idle CPU                        {share:5.3f} %   "
          f"{share / GOAL_CPU_PCT:4.2f}x goal ({GOAL_CPU_PCT} %)")  # fmt: skip


async def main(seconds: float) -> None:
    import_costs()
    workdir = Path(tempfile.mkdtemp())
    dms = DmsDouble(workdir / "dms")
    api = await start_kube_api(workdir, bookmark_interval=60.0)
    api.container_env.clear()
    api.container_env.update({**os.environ, **dms.env, "PATH": dms.path_env()})
    store = api.server.store
    store.create("configmaps", "mail", {"metadata": {"name": "mail-state"},
                                        "data": {"mailserver.yaml": STATE}})  # fmt: skip
    store.create("secrets", "mail", {"metadata": {"name": "mail-passwords"},
                                     "stringData": {"passwords.yaml": PASSWORDS}})  # fmt: skip
    kubelet_write(workdir / "state", {"mailserver.yaml": STATE})
    kubelet_write(workdir / "passwords", {"passwords.yaml": PASSWORDS})
    key = workdir / "ledger.key"
    key.write_text("a bench ledger key, long enough\n")
    key.chmod(0o600)  # the agent refuses a digest key others can read
    common: dict[str, Any] = {
        "logging": {"level": "warning"},
        "kube": {"kubeconfig": str(api.kubeconfig)},
        "dms": {
            "configDir": str(dms.config_dir),
            "setupCommand": dms.setup_argv,
            "readyCommand": [],
            "executor": {"kind": "kube"},
            "environment": {k: v for k, v in dms.env.items() if not k.startswith("DMS_DOUBLE")},
        },
        "reconcile": {"ledgerKeyFile": str(key)},
        "checks": {"enabled": True, "verdictFile": str(workdir / "verdict")},
        "dns": {
            "enabled": True,
            "nameservers": [f"127.0.0.1:{free_port()}"],  # nothing answers: errors, quickly
            "timeout": 0.2,
            "lifetime": 0.5,
        },
        "dkim": {"requirePublished": False},
    }
    mounted = [
        {"kind": "path", "path": str(workdir / "state")},
        {"kind": "path", "path": str(workdir / "passwords"), "secret": True},
    ]
    via_api = [
        {"kind": "configmap", "name": "mail-state"},
        {"kind": "secret", "name": "mail-passwords"},
    ]
    print(f"\nidle agent, every pod component on; idle window {seconds:.0f} s")
    setups = (("mounted sources + kube exec", mounted), ("API sources + kube exec", via_api))
    for label, sources in setups:
        settings = {**common, "server": {"port": free_port()}, "sources": sources}
        await measure(label, settings, workdir, seconds)
    await api.server.stop()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
