"""Benchmark: one clamd PING check vs one `clamscan` run, with the same tiny database.

Both use the rig's one-signature database, so the figures show process start-up and engine
set-up only, NOT what the real database costs: with the full official signatures clamd holds
about 1.2 GiB resident and a clamscan probe would load all of it again on every run (ClamAV's
own documentation, "Memory (RAM) Requirements": https://docs.clamav.net/manual/Installing/Docker.html).

    .venv/bin/python bench/clamd_ping_vs_clamscan.py [--runs 20]

Printed in absolute numbers:
- PING: wall time of one check attempt (the agent's probe over the unix socket), median of N;
  the memory it needs in the agent is a socket and a few bytes; clamd's own peak RSS is shown
  as what the daemon already holds, paid once, not per probe;
- clamscan: wall time and peak RSS (GNU time's %M) of `clamscan -d DB FILE`, median of N —
  paid on every probe.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.checks.config import ClamdCheck
from agent.checks.probes import ProbeEnv, run_probe
from tests.rig.clamd import Clamd


def clamscan_once(clamscan: str, database: Path, sample: Path) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one clamscan process.

    The peak comes from GNU time (Debian package ``time``): a child forked straight from this
    Python process would report Python's own pre-exec RSS as its ``ru_maxrss``.
    """
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", clamscan, "--no-summary", "-d", str(database), str(sample)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 1:  # 1 = virus found: the tiny database really matched
        raise RuntimeError(f"clamscan exited {done.returncode}: {done.stderr}")
    return elapsed, int(done.stderr.strip().splitlines()[-1])


async def pings(socket_path: Path, runs: int) -> list[float]:
    spec = ClamdCheck(name="clamd", kind="clamd", socket=socket_path)
    env = ProbeEnv()
    times = []
    for _ in range(runs):
        outcome = await run_probe(spec, env)
        if not outcome.ok:
            raise RuntimeError(outcome.message)
        times.append(outcome.duration)
    return times


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    clamscan = shutil.which("clamscan") or "/usr/bin/clamscan"
    work = Path(tempfile.mkdtemp(prefix="bench-clamd-"))
    clamd = Clamd(work / "clamd")
    clamd.start()
    try:
        ping_times = asyncio.run(pings(clamd.socket_path, args.runs))
        assert clamd.daemon is not None
        clamd_rss = peak_rss_kib(clamd.daemon.proc.pid)
        scans = [clamscan_once(clamscan, clamd.database, clamd.sample) for _ in range(args.runs)]
    finally:
        clamd.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    ping_ms = statistics.median(ping_times) * 1000
    scan_ms = statistics.median(s[0] for s in scans) * 1000
    scan_rss = statistics.median(s[1] for s in scans) / 1024
    print(f"tiny database (1 signature), {args.runs} runs each, medians (absolute numbers):")
    print(
        f"  clamd PING check : {ping_ms:8.2f} ms per probe; no new process; clamd's peak RSS "
        f"{clamd_rss / 1024:.1f} MiB (already resident, paid once)"
    )
    print(
        f"  clamscan run     : {scan_ms:8.2f} ms per probe; peak RSS {scan_rss:.1f} MiB "
        "(a new process loading the database every probe)"
    )
    print(f"  ratio time clamscan/PING: {scan_ms / ping_ms:.0f}x")
    print("  NOTE: the tiny database shows start-up cost only. With the real signatures ClamAV")
    print("  needs ~1.2 GiB to load them (docs.clamav.net, Memory (RAM) Requirements): a")
    print("  clamscan probe would pay that, and the load time, on every run.")


if __name__ == "__main__":
    main()
