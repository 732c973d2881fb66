"""dms-agent's watch path against a reference watcher, side by side, on one API server.

The reference (bench/reference_watcher.py) is "watch a ConfigMap, write its key to a file" on
the official ``kubernetes`` client — what k8s-sidecar does, with its default timeouts. Both run
as processes as shipped (``dms-agent run``; ``python reference_watcher.py``) against the test
API server of tests/kube_api, run in this process (with ``--real``: a real kube-apiserver + etcd
from .ci/build-kube, written to with PUTs as the admin; no fault rows there). Each watches its
own ConfigMap holding a byte-identical 100-account state; dms-agent also reads a passwords
Secret (pre-hashed, so no hashing is timed) and applies the state with the ``file`` executor
(DMS's files written atomically with fsync; DKIM and the mail checks off: the API path alone).

Every row prints both figures and the ratio dms-agent / reference (below 1: dms-agent faster):
- start-up: process start -> the first file written (the agent: the first of DMS's files, i.e.
  the first op of its first pass) and -> the whole first state applied (the agent: DMS's account
  and quota files hold all 100 accounts, 200 ops on an empty folder; the reference: its file),
  median of ``starts``;
- ConfigMap updated -> file written (the agent: dovecot-quotas.cf renamed into place), p50 / p99
  of ``rounds`` alternating updates (user0's quota changes: one op); beside it the CPU time
  each process spent per update (all of its work, also after the file is written: a figure
  the machine's load does not disturb), and the floor the agent's durability sets on this disk:
  the same file replaced atomically with fsync by the bench itself (no row of its own: the
  reference does no fsync);
- recovery, API server down 5 s with an update during the outage: server back -> file written;
- recovery, watch cut, then 410 on the re-watch: cut -> file written;
- recovery, silent stall (connection open, nothing sent, not even bookmarks): stall -> file
  written, the update made just after the stall began (skip with --no-stall: it takes ~85 s);
- idle RSS and idle CPU over ``idle`` seconds once the start-up is done.
Goals (issue #24): e2e p50 and p99 <= 2x the reference; stall <= 90 s; start-up and idle CPU
<= the reference's.

Run from the repository root:
  .venv/bin/python bench/watch_vs_reference.py [--rounds 200] [--starts 5] [--idle 60] [--faults 3]
      [--no-stall] [--real]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.dms.files import NATIVE_FILES
from agent.fsio import write_file
from agent.sources.inotify import FolderWatch
from tests.dms_double.fixtures import doveadm_hash
from tests.kube_api.fixtures import NAMESPACE, KubeApi, start_kube_api
from tests.kube_real.cluster import KubeCluster, binary_dir
from tests.rig.proc import free_port

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DMS_AGENT = str(Path(sys.executable).parent / "dms-agent")
ACCOUNTS = 100
KEY = "mailserver.yaml"
AGENT_CM, REF_CM, SECRET = "mail-state", "ref-state", "mail-passwords"
QUOTAS, ACCOUNTS_FILE = "dovecot-quotas.cf", "postfix-accounts.cf"
WATCHES = 3  # the agent's ConfigMap and Secret, the reference's ConfigMap


def state(edit: int) -> str:
    """The 100-account state; edit ``n`` gives user0 a quota of 100+n MB: one change, one op."""
    lines = ["apiVersion: dms-agent/v1", "accounts:"]
    for i in range(ACCOUNTS):
        quota = f"{100 + edit}M" if i == 0 else "1G"
        lines.append(f"  user{i}@example.com: {{quota: {quota}}}")
    return "\n".join(lines) + "\n"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of ``pid``, all its threads; the CPU time from the scheduler's
    nanosecond account (utime/stime count 10 ms ticks: too coarse for an idle process)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
    ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            ns += int((task / "schedstat").read_text().split()[0])
    return rss, ns / 1e9


@dataclass
class Watcher:
    """One side: how to start it, which ConfigMap it watches, which file says "applied"."""

    label: str
    configmap: str
    folder: Path
    applied_name: str  # the file whose replacement means "the update is applied"
    argv: Callable[[Path], list[str]]
    complete: Callable[[Path], bool]  # the whole first state is there
    proc: asyncio.subprocess.Process | None = None
    edits: int = 0
    e2e: list[float] = field(default_factory=list)
    rows: dict[str, list[float]] = field(default_factory=dict)

    async def start(self) -> tuple[float, float]:
        """Start on an empty folder; seconds from process start to the first file written
        (the agent: any of DMS's files) and to the whole state applied."""
        for entry in self.folder.iterdir() if self.folder.exists() else []:
            if entry.is_file():
                entry.unlink()
        self.folder.mkdir(parents=True, exist_ok=True)
        first = None
        async with FolderWatch(self.folder) as changes:
            started = time.perf_counter()
            self.proc = await asyncio.create_subprocess_exec(*self.argv(self.folder), cwd=ROOT)
            while not self.complete(self.folder):
                names = await changes.changes(60)
                if first is None and names & {KEY, *NATIVE_FILES}:
                    first = time.perf_counter() - started
                if time.perf_counter() - started > 60:
                    raise SystemExit(f"{self.label}: no first state in 60 s")
            done = time.perf_counter() - started
            return (first or done), done

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 15)
        self.proc = None

    async def applied(self, changes: FolderWatch, timeout: float) -> float:
        """Wait until the applied file is replaced or closed after writing; its time."""
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise SystemExit(f"{self.label}: update not applied in {timeout:.0f} s")
            if self.applied_name in await changes.changes(left):
                return time.perf_counter()

    async def update(self, target: Target) -> None:
        self.edits += 1
        await target.put(self.configmap, state(self.edits))


def has_all_accounts(folder: Path) -> bool:
    try:
        quotas = (folder / QUOTAS).read_text().count("\n")
        accounts = (folder / ACCOUNTS_FILE).read_text().count("\n")
    except FileNotFoundError:
        return False
    return quotas >= ACCOUNTS and accounts >= ACCOUNTS


@dataclass
class Target:
    """The API server both watch: its kubeconfig, how the bench writes a ConfigMap, and the
    test server (for faults) when it is that one."""

    kubeconfig: Path
    put: Callable[[str, str], Awaitable[None]]  # (ConfigMap name, state text)
    api: KubeApi | None = None

    @property
    def server(self) -> Any:
        assert self.api is not None, "faults need the test API server"
        return self.api.server


async def test_server_target(workdir: Path) -> Target:
    api = await start_kube_api(workdir, bookmark_interval=60.0)
    store = api.server.store

    async def put(name: str, text: str) -> None:
        body = {"metadata": {"name": name}, "data": {KEY: text}}
        store.update("configmaps", NAMESPACE, name, body)

    for name in (AGENT_CM, REF_CM):
        store.create("configmaps", NAMESPACE, {"metadata": {"name": name}, "data": {KEY: state(0)}})
    body = {"metadata": {"name": SECRET}, "stringData": {"passwords.yaml": passwords()}}
    store.create("secrets", NAMESPACE, body)
    return Target(api.kubeconfig, put, api)


def real_target(cluster: KubeCluster, workdir: Path) -> Target:
    """The real kube-apiserver + etcd; the bench writes as the admin, with a PUT."""
    cluster.create_namespace(NAMESPACE)
    admin = cluster.admin
    base = f"/api/v1/namespaces/{NAMESPACE}"
    for name in (AGENT_CM, REF_CM):
        admin.post(f"{base}/configmaps", {"metadata": {"name": name}, "data": {KEY: state(0)}})
    body = {"metadata": {"name": SECRET}, "stringData": {"passwords.yaml": passwords()}}
    admin.post(f"{base}/secrets", body)

    async def put(name: str, text: str) -> None:
        body = {"metadata": {"name": name}, "data": {KEY: text}}
        await asyncio.to_thread(admin.put, f"{base}/configmaps/{name}", body)

    kubeconfig = cluster.kubeconfig(workdir / "kubeconfig", namespace=NAMESPACE)
    return Target(kubeconfig, put)


def agent_settings(kubeconfig: Path, workdir: Path, folder: Path, port: int) -> Path:
    key = workdir / "ledger.key"
    key.write_text("a bench ledger key, long enough\n")
    key.chmod(0o600)
    settings: dict[str, Any] = {
        "logging": {"level": "warning"},
        "server": {"port": port},
        "kube": {"kubeconfig": str(kubeconfig)},
        "sources": [
            {"kind": "configmap", "name": AGENT_CM},
            {"kind": "secret", "name": SECRET},
        ],
        "dms": {"configDir": str(folder), "executor": {"kind": "file"}},
        "reconcile": {"ledgerKeyFile": str(key)},
        "dkim": {"enabled": False},
        "checks": {"enabled": False},
    }
    path = workdir / "agent.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def passwords() -> str:
    """Pre-hashed (no hashing is timed), one per account."""
    hashed = doveadm_hash("user@example.com", "a bench password")
    return "".join(f'user{i}@example.com: {{hash: "{hashed}"}}\n' for i in range(ACCOUNTS))


def watchers(target: Target, workdir: Path) -> list[Watcher]:
    agent_dir, ref_dir = workdir / "dms-config", workdir / "reference"
    config = agent_settings(target.kubeconfig, workdir, agent_dir, free_port())
    env_argv = [DMS_AGENT, "run", "--config", str(config)]
    ref_argv = [sys.executable, str(BENCH / "reference_watcher.py"), str(target.kubeconfig),
                NAMESPACE, REF_CM, KEY]  # fmt: skip
    return [
        Watcher("dms-agent", AGENT_CM, agent_dir, QUOTAS, lambda _f: env_argv, has_all_accounts),
        Watcher(
            "reference",
            REF_CM,
            ref_dir,
            KEY,
            lambda f: [*ref_argv, str(f / KEY)],
            lambda f: (f / KEY).exists(),
        ),
    ]


async def e2e_rounds(target: Target, sides: list[Watcher], rounds: int, floor: list[float]) -> None:
    for side in sides:
        async with FolderWatch(side.folder) as changes:
            for _ in range(3):  # warm-up, not timed
                await side.update(target)
                await side.applied(changes, 30)
    watches = [FolderWatch(s.folder) for s in sides]
    for w in watches:
        await w.__aenter__()
    cpu = {s.label: proc_stats(s.pid)[1] for s in sides}
    try:
        for _ in range(rounds):
            for side, changes in zip(sides, watches, strict=True):
                await asyncio.sleep(0.02)  # let the last write's ledger and Events settle
                await changes.changes(0)  # drop what the settling wrote
                t0 = time.perf_counter()
                await side.update(target)
                side.e2e.append((await side.applied(changes, 30) - t0) * 1000)
            floor.append(write_floor(sides[0]))
    finally:
        for w in watches:
            await w.__aexit__(None, None, None)
    for side in sides:  # all of each process's work for an update, whatever the machine's load
        side.rows["cpu"] = [(proc_stats(side.pid)[1] - cpu[side.label]) * 1000 / rounds]


def write_floor(agent: Watcher) -> float:
    """ms to replace a copy of the agent's applied file as it does (atomic, fsync'd), beside
    it: what the agent's durability alone costs an update on this disk, its floor."""
    data = (agent.folder / agent.applied_name).read_bytes()
    t0 = time.perf_counter()
    write_file(agent.folder.parent / "floor.cf", data)
    return (time.perf_counter() - t0) * 1000


async def recovery(
    target: Target, sides: list[Watcher], row: str, fault: Callable[[], Any], timeout: float
) -> None:
    """Both watchers at once: ``fault`` returns when the clock starts (after updating)."""
    watches = [FolderWatch(s.folder) for s in sides]
    for w in watches:
        await w.__aenter__()
    try:
        await all_watching(target, sides, watches)
        for w in watches:
            await w.changes(0)
        t0 = await fault()
        done = await asyncio.gather(
            *(s.applied(w, timeout) for s, w in zip(sides, watches, strict=True))
        )
        for side, t in zip(sides, done, strict=True):
            side.rows.setdefault(row, []).append(t - t0)
    finally:
        for w in watches:
            await w.__aexit__(None, None, None)


async def all_watching(
    target: Target, sides: list[Watcher], watches: list[FolderWatch], timeout: float = 60
) -> None:
    """Every watch open (the agent's two, the reference's one), so a fault meets them all.
    The server's count alone can include streams a cut left behind (it notices a dead client
    only when it next writes), so each side first takes an update: after it, its watch is
    open (or opening, from the list that brought the update)."""
    server = target.server
    server.force_410(0)  # none left over from the last fault
    for side, changes in zip(sides, watches, strict=True):
        await side.update(target)
        await side.applied(changes, timeout)
    deadline = time.perf_counter() + timeout
    while server.watch_count() < WATCHES:
        if time.perf_counter() > deadline:
            raise SystemExit(f"{server.watch_count()} watches open, not {WATCHES}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


def fault_outage(target: Target, sides: list[Watcher]) -> Callable[[], Any]:
    server = target.server

    async def outage() -> float:
        await server.stop()
        for side in sides:
            await side.update(target)
        await asyncio.sleep(5.0)
        await server.start()
        return time.perf_counter()

    return outage


def fault_cut_410(target: Target, sides: list[Watcher]) -> Callable[[], Any]:
    server = target.server

    async def cut() -> float:
        for side in sides:
            await side.update(target)  # before the cut: the re-watch is refused, the list has it
        server.force_410(WATCHES)
        t0 = time.perf_counter()
        server.drop_streams(abrupt=True)
        return t0

    return cut


def fault_stall(target: Target, sides: list[Watcher]) -> Callable[[], Any]:
    server = target.server

    async def stall() -> float:
        t0 = time.perf_counter()
        server.stall_streams()
        await asyncio.sleep(0.05)
        for side in sides:
            await side.update(target)
        return t0

    return stall


def ratio(a: float, b: float) -> str:
    return f"{a / b:5.2f}x" if b else "   n/a"


def report(
    sides: list[Watcher],
    starts: dict[str, list[tuple[float, float]]],
    idle: dict[str, Any],
    floor: list[float],
) -> None:
    agent, ref = sides
    print(f"\n{'measure':58s} {'reference':>12s} {'dms-agent':>12s} {'ratio':>7s}")

    def row(name: str, r: float, a: float, unit: str, digits: int = 2) -> None:
        print(f"{name:58s} {r:9.{digits}f} {unit:2s} {a:9.{digits}f} {unit:2s} {ratio(a, r)}")

    for i, what in enumerate(("first file written", "whole first state applied")):
        row(f"start-up: process start -> {what} (median)",
            statistics.median(t[i] for t in starts[ref.label]) * 1000,
            statistics.median(t[i] for t in starts[agent.label]) * 1000, "ms")  # fmt: skip
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        row(f"ConfigMap updated -> file written, {name} ({len(agent.e2e)} rounds)",
            pct(ref.e2e, q), pct(agent.e2e, q), "ms")  # fmt: skip
    row("CPU time of each process per update (all its threads)",
        ref.rows["cpu"][0], agent.rows["cpu"][0], "ms")  # fmt: skip
    print(f"{'  the floor: an fsync-ed atomic write of the same file alone, p50 / p99':58s} "
          f"{'':12s} {pct(floor, 0.5):9.2f} ms {pct(floor, 0.99):6.2f} ms")  # fmt: skip
    for key, name in (
        ("outage", "recovery: API server down 5 s, update during it (back ->)"),
        ("cut410", "recovery: watch cut, then 410 on the re-watch"),
        ("stall", "recovery: silent stall (stall -> file)"),
    ):
        if key in agent.rows:
            row(name, statistics.median(ref.rows[key]), statistics.median(agent.rows[key]), "s")
    row(f"idle RSS after {idle['seconds']:.0f} s", idle[ref.label][0], idle[agent.label][0], "MB")
    row("idle CPU", idle[ref.label][1], idle[agent.label][1], "%", 4)
    print("goals: e2e p50, p99 <= 2x; stall <= 90 s; start-up, idle CPU <= 1x")


async def measure(target: Target, workdir: Path, args: argparse.Namespace) -> None:
    sides = watchers(target, workdir)
    starts: dict[str, list[tuple[float, float]]] = {s.label: [] for s in sides}
    idle: dict[str, Any] = {"seconds": args.idle}
    floor: list[float] = []
    try:
        for n in range(args.starts):
            for side in sides if n % 2 == 0 else reversed(sides):
                starts[side.label].append(await side.start())
                if n < args.starts - 1:
                    await side.stop()
        await asyncio.sleep(2.0)  # the agent's first Events and ledger compaction
        before = {s.label: proc_stats(s.proc.pid) for s in sides if s.proc}
        await asyncio.sleep(args.idle)
        for s in sides:
            assert s.proc is not None
            rss, cpu = proc_stats(s.proc.pid)
            idle[s.label] = (rss, 100 * (cpu - before[s.label][1]) / args.idle)
        await e2e_rounds(target, sides, args.rounds, floor)
        for _ in range(args.faults if target.api else 0):
            await recovery(target, sides, "outage", fault_outage(target, sides), 60)
            await recovery(target, sides, "cut410", fault_cut_410(target, sides), 60)
        if args.stall and target.api:
            await recovery(target, sides, "stall", fault_stall(target, sides), 200)
    finally:
        for s in sides:
            await s.stop()
    where = "test API server" if target.api else "real kube-apiserver + etcd, PUT as admin"
    print(f"\nwatch path vs reference ({ACCOUNTS}-account ConfigMap; {where}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")  # fmt: skip
    report(sides, starts, idle, floor)


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="watch-bench-"))
    if args.real:
        (workdir / "cluster").mkdir()
        cluster = KubeCluster(workdir / "cluster", binary_dir())
        await asyncio.to_thread(cluster.start)
        try:
            await measure(real_target(cluster, workdir), workdir, args)
        finally:
            cluster.stop()
        return
    target = await test_server_target(workdir)
    try:
        await measure(target, workdir, args)
    finally:
        await target.server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--no-stall", dest="stall", action="store_false")
    # the real kube-apiserver (.ci/build-kube): start-up, e2e and idle rows (no faults on cue)
    parser.add_argument("--real", action="store_true")
    asyncio.run(main(parser.parse_args()))
