"""Idle cost of the agent as shipped (``dms-agent run``), with every component of a pod on.

Two set-ups, both with ``dms.executor.kind: kube`` against the test API server (run in this
process, so it is not counted) and the DMS `setup` double behind its exec:
1. mounted sources (a kubelet-style ConfigMap and Secret mount);
2. API sources (ConfigMap + Secret through list/watch).
Components: sources, reconcile, DKIM (keys made through `setup`; publication asked in the
DKIM worker), DNS checks (each run a worker process; against a loopback port where nothing
answers: the run completes with errors, as fast as its timeouts), the DMS default checks,
Kubernetes Events, the HTTP server.

Prints
- the foundation's pieces (aiohttp, prometheus_client, pydantic with the settings models),
  each over a bare interpreter (they share asyncio and ssl, so they do not add up);
- each component's import cost in the agent: RSS of a fresh interpreter that imported the
  foundation (settings, HTTP server, metrics, supervisor) and then that component, minus the
  foundation; and, for the rare work that runs in a worker process, that worker's RSS once its
  libraries are imported (memory the agent gives back when the worker exits);
- per set-up, the agent's RSS (VmRSS) once serving (before its first DNS run and DKIM pass
  end), after the first DNS run and DKIM pass, and after an idle window, each against the
  55 MB goal; the workers' peak RSS while they ran; the agent's CPU share over the idle window,
  and that share with the workers' CPU spread over their intervals (a DNS run each
  ``dns.interval``, a DKIM publication job each ``dkim.interval``), against the 0.3 % goal.
The agent's modules are compiled to bytecode first, as an installed copy has them
(bench/bytecode.py).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bytecode import compile_agent
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
FOUNDATION_PIECES = {
    "aiohttp (server and client)": "import aiohttp.web",
    "prometheus_client": "import prometheus_client",
    "pydantic + the settings models": "import agent.settings",
}
# component: (modules the agent imports, modules its worker process imports)
COMPONENTS = {
    "mounted sources (inotify)": ("agent.sources.mounted", ""),
    "API sources + kube client": ("agent.sources.kube", ""),
    "kube exec + Events": ("agent.kube.exec, agent.kube.events", ""),
    "reconcile": ("agent.reconcile.reconciler", ""),
    "checks": ("agent.checks.runner, agent.checks.probes", ""),
    "DKIM manager": ("agent.dkim.manager", "agent.dkim.byo, agent.dkim.publication"),
    "DNS checks": ("agent.dns.component", "agent.dns.runner"),
    "LB client": ("agent.lb.component", ""),
}
DNS_INTERVAL, DKIM_INTERVAL = 3600.0, 300.0  # the defaults: one worker run each


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, (int(stat[11]) + int(stat[12])) / TICKS


def children_cpu(pid: int) -> float:
    """CPU seconds of ``pid``'s children that ended and were reaped (its workers)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[13]) + int(stat[14])) / TICKS


def children_rss(pid: int) -> float:
    """Total RSS MB of ``pid``'s running children (its workers), 0 when none runs."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == pid:
                status = (entry / "status").read_text()
                total += int(status.split("VmRSS:")[1].split()[0]) / 1024
        except (OSError, IndexError):
            continue  # it ended meanwhile
    return total


def rss_of(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport pathlib\n"
         "print(pathlib.Path('/proc/self/status').read_text().split('VmRSS:')[1].split()[0])"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return int(out.stdout.split()[-1]) / 1024


def import_costs() -> None:
    bare, base = rss_of("pass"), rss_of(FOUNDATION)
    print(f"the foundation: {base:.1f} MB (a bare interpreter {bare:.1f} MB); its pieces, each "
          "over a bare interpreter (they share asyncio and ssl):")  # fmt: skip
    for name, code in FOUNDATION_PIECES.items():
        print(f"  {name:32s} +{rss_of(code) - bare:5.1f} MB")
    print(f"\n  {'component':32s} {'in the agent':>14s}   {'its worker process (RSS)':>24s}")
    for name, (modules, worker) in COMPONENTS.items():
        cost = rss_of(f"{FOUNDATION}\nimport {modules}") - base
        there = f"{rss_of(f'import {worker}'):5.1f} MB" if worker else "-"
        print(f"  {name:32s} +{cost:5.1f} MB       {there:>18s}")
    print(f"  {'all of them':32s} +{rss_of(everything()) - base:5.1f} MB")


def everything() -> str:
    modules = ", ".join(m for m, _ in COMPONENTS.values())
    return f"{FOUNDATION}\nimport {modules}"


def worker_cpu(module: str, request: dict[str, Any]) -> float:
    """CPU seconds of one worker run (interpreter start, imports, the job)."""
    before = os.times()
    subprocess.run(
        [sys.executable, "-m", module], input=json.dumps(request), capture_output=True,
        text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    after = os.times()
    return (after.children_user + after.children_system) - (
        before.children_user + before.children_system
    )


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
        components: dict[str, Any] = json.load(resp)["components"]
        return components


def first_passes_done(components: dict[str, Any]) -> bool:
    """The first DNS run over the mail state's domain, and the first DKIM pass, have ended."""
    dns = components.get("dns", {})
    dkim = components.get("dkim", {})
    reconcile = components.get("reconcile", {})
    return (
        "example.com" in dns.get("details", {}).get("domains", {})
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


@dataclass
class Figures:
    serving: float = 0.0
    after: float = 0.0
    idle: float = 0.0
    worker_peak: float = 0.0
    cpu_share: float = 0.0


async def wait_serving(port: int) -> None:
    started = time.monotonic()
    while True:
        try:
            await asyncio.to_thread(status, port)
            return
        except OSError:
            if time.monotonic() - started > 60:
                raise SystemExit("the agent did not start serving") from None
            await asyncio.sleep(0.05)


async def watch_workers(pid: int, figures: Figures, stop: asyncio.Event) -> None:
    while not stop.is_set():
        figures.worker_peak = max(figures.worker_peak, await asyncio.to_thread(children_rss, pid))
        await asyncio.sleep(0.05)


async def measure(label: str, settings: dict[str, Any], workdir: Path, seconds: float) -> Figures:
    cfg = workdir / f"{label.split()[0]}.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "POD_NAME": "dms-0", "POD_NAMESPACE": "mail"}
    agent = await asyncio.create_subprocess_exec(
        DMS_AGENT, "run", "--config", str(cfg), cwd=ROOT, env=env
    )
    port = settings["server"]["port"]
    figures, stop = Figures(), asyncio.Event()
    watcher = asyncio.create_task(watch_workers(agent.pid, figures, stop))
    try:
        await wait_serving(port)
        figures.serving, _ = proc_stats(agent.pid)
        components = await wait_ready(port, agent.pid)
        stop.set()
        await watcher
        figures.after, cpu0 = proc_stats(agent.pid)
        await asyncio.sleep(seconds)
        figures.idle, cpu1 = proc_stats(agent.pid)
    finally:
        stop.set()
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 15)
    figures.cpu_share = 100 * (cpu1 - cpu0) / seconds
    states = ", ".join(f"{k} {v['state']}" for k, v in sorted(components.items()))
    print(f"  {label}: {states}")
    for name in ("dns", "dkim"):
        print(f"    {name}: {components[name]['message'][:150]}")
    return figures


def ratio(value: float, unit: str, target: float) -> str:
    return f"{value:6.{3 if unit == '%' else 1}f} {unit} {value / target:4.2f}x"


def print_table(results: dict[str, Figures], seconds: float, spread: float) -> None:
    """One row per figure, one column per set-up: the value and its ratio to the goal."""
    head = "".join(f"{label:>22s}" for label in results)

    def row(name: str, cells: list[str]) -> None:
        print(f"  {name:48s}" + "".join(f"{c:>22s}" for c in cells))

    print(f"\n  {'RSS (VmRSS), ratio to the 55 MB goal':48s}{head}")
    for name, attr in (
        ("serving, before the first DNS run + DKIM pass", "serving"),
        ("after the first DNS run + DKIM pass", "after"),
        (f"after {seconds:.0f} s idle", "idle"),
    ):
        row(name, [ratio(getattr(f, attr), "MB", GOAL_RSS_MB) for f in results.values()])
    row("workers' peak RSS (returned when they exit)",
        [f"{f.worker_peak:6.1f} MB      " for f in results.values()])  # fmt: skip
    print(f"\n  {'idle CPU, ratio to the 0.3 % goal':48s}{head}")
    cpu = [f.cpu_share for f in results.values()]
    row("the agent, over the idle window", [ratio(c, "%", GOAL_CPU_PCT) for c in cpu])
    row("with the workers' runs spread over their interval",
        [ratio(c + spread, "%", GOAL_CPU_PCT) for c in cpu])  # fmt: skip


async def main(seconds: float) -> None:
    compile_agent()
    import_costs()
    workdir = Path(tempfile.mkdtemp())
    api = await start_kube_api(workdir, bookmark_interval=60.0)
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
    dns_cpu = worker_cpu("agent.dns.worker", dns_request(common, workdir))
    dkim_cpu = worker_cpu("agent.dkim.worker", dkim_request(common))
    amortized = 100 * (dns_cpu / DNS_INTERVAL + dkim_cpu / DKIM_INTERVAL)
    print(f"\nworker CPU: a DNS run {dns_cpu:.2f} s each {DNS_INTERVAL:.0f} s, a DKIM "
          f"publication job {dkim_cpu:.2f} s each {DKIM_INTERVAL:.0f} s: "
          f"+{amortized:.3f} % spread")  # fmt: skip
    print(f"\nidle agent, every pod component on; idle window {seconds:.0f} s")
    setups = (("mounted sources", mounted), ("API sources", via_api))
    results = {}
    for label, sources in setups:
        # a DMS of its own each: each agent's first DKIM pass makes the key through `setup`
        dms = DmsDouble(workdir / f"dms-{label.split()[0]}")
        api.container_env.clear()
        api.container_env.update({**os.environ, **dms.env, "PATH": dms.path_env()})
        settings = {**common, "dms": dms_settings(dms), "server": {"port": free_port()}}
        settings["sources"] = sources
        results[label] = await measure(label, settings, workdir, seconds)
    await api.server.stop()
    print_table(results, seconds, amortized)


def dms_settings(dms: DmsDouble) -> dict[str, Any]:
    return {
        "configDir": str(dms.config_dir),
        "setupCommand": dms.setup_argv,
        "readyCommand": [],
        "executor": {"kind": "kube"},
        "environment": {k: v for k, v in dms.env.items() if not k.startswith("DMS_DOUBLE")},
    }


def dns_request(common: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The bench's DNS run as the component sends it (one domain, no mail state)."""
    from agent.dns import worker
    from agent.dns.config import DnsSettings
    from agent.dns.plan import plan_from

    dns = DnsSettings.model_validate({**common["dns"], "domains": ["example.com"]})
    return worker.request(dns, plan_from(dns, None), workdir)


def dkim_request(common: dict[str, Any]) -> dict[str, Any]:
    """One publication lookup, as the DKIM manager sends it each pass."""
    from agent.dkim import worker

    return worker.published_request(
        common["dns"]["nameservers"], 0.5, [("example.com", "mail", "AAAA")]
    )


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
