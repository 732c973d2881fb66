"""Benchmark: the mail-flow follower under a busy log, and reading a big queue.

1. Follower: a separate process appends realistic Postfix lines to a log at --lines-per-s
   (default 2,000) while the agent's server answers 200 req/s of /metrics and /healthz (the
   load client of bench/checks_load.py, also a separate process). Printed: the agent process's
   CPU (share of one core) and the p99 of both paths, each beside a baseline run without the
   log writer, and the difference. Goals (issue #19): follower <= 5 % of one core, <= 1 ms
   added to the p99 of /metrics and /healthz.
2. Queue: a real Postfix holds --queue messages (default 10,000, all deferred by
   defer_transports); `postqueue -j` through the agent's LocalExecutor and the parse are timed,
   median of 5. Goal: <= 200 ms.

    .venv/bin/python bench/mailflow.py [--seconds 10] [--lines-per-s 2000] [--queue 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from checks_load import LOAD_CLIENT, pct  # noqa: E402

from agent.app import AgentContext  # noqa: E402
from agent.executor import LocalExecutor  # noqa: E402
from agent.mailflow.component import MailflowComponent  # noqa: E402
from agent.mailflow.queue import snapshot  # noqa: E402
from agent.settings import ServerSettings, Settings  # noqa: E402
from agent.status import StatusRegistry  # noqa: E402
from tests.rig.ca import TestCA  # noqa: E402
from tests.rig.postfix import start_postfix  # noqa: E402
from tests.rig.proc import free_port  # noqa: E402

WRITER = r"""
import sys, time
path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
P = "Dec  3 12:00:00 mail "
lines = [
  P + "postfix/smtpd[101]: connect from unknown[192.0.2.{i}]\n",
  P + "postfix/smtpd[101]: A{i:05X}: client=unknown[192.0.2.{i}]\n",
  P + "postfix/cleanup[102]: A{i:05X}: message-id=<{i}@example.org>\n",
  P + "postfix/qmgr[103]: A{i:05X}: from=<a{i}@example.org>, size=2048, nrcpt=1"
      " (queue active)\n",
  P + "postfix/smtp[104]: A{i:05X}: to=<b{i}@example.net>, relay=mx.example.net"
      "[198.51.100.7]:25, delay=1.2, delays=0.1/0.01/0.5/0.6, dsn=2.0.0, status=sent (250 ok)\n",
  P + "postfix/qmgr[103]: A{i:05X}: removed\n",
  P + "postfix/smtpd[101]: NOQUEUE: reject: RCPT from unknown[192.0.2.{i}]: 554 5.7.1"
      " <c{i}@example.com>: Relay access denied; from=<x@y> to=<c@example.com> proto=ESMTP\n",
  P + "dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs):"
      " user=<u{i}@example.org>, method=PLAIN, rip=192.0.2.{i}\n",
  P + "postfix/smtpd[101]: disconnect from unknown[192.0.2.{i}] ehlo=1 mail=1 quit=1\n",
]
start, n = time.perf_counter(), 0
with open(path, "a", buffering=1) as fh:
    while time.perf_counter() - start < seconds:
        due = int((time.perf_counter() - start) * rate)
        while n < due:
            fh.write(lines[n % len(lines)].format(i=n % 250))
            n += 1
        time.sleep(0.01)
print(n)
"""


async def follow_under_load(
    work: Path, rate: float, lines_per_s: float, seconds: float
) -> tuple[float, dict[str, float], int]:
    """(agent CPU share of one core, p99 ms per path, lines read) for one run."""
    from agent.server import serve

    log = work / "mail.log"
    log.write_text("")
    settings = Settings.model_validate(
        {
            "dms": {"configDir": None},
            "mailflow": {"enabled": True, "logFiles": [str(log)], "queueInterval": 0},
        }
    )
    ctx = AgentContext(settings=settings, status=StatusRegistry())
    component = MailflowComponent(ctx)
    port = free_port()
    runner = await serve(ctx.status, ServerSettings(host="127.0.0.1", port=port))
    task = asyncio.create_task(component.run())
    try:
        await asyncio.sleep(0.5)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, LOAD_CLIENT, f"http://127.0.0.1:{port}",
                json.dumps({"/metrics": rate / 2, "/healthz": rate / 2}), str(seconds),
                stdout=asyncio.subprocess.PIPE,
            )
        ]  # fmt: skip
        if lines_per_s > 0:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    WRITER,
                    str(log),
                    str(lines_per_s),
                    str(seconds),
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        outs = [(await p.communicate())[0] for p in procs]
        await asyncio.sleep(1.5)  # the follower catches up with the last lines
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
    lat = json.loads(outs[0])["latencies"]
    p99 = {path: pct([v * 1000 for v in values], 0.99) for path, values in lat.items()}
    read = sum(s.lines for s in component.metrics.files.values())
    return cpu, p99, read


def fill_queue(work: Path, count: int) -> tuple[object, Path]:
    ca = TestCA(work / "ca")
    extra = "relayhost = [127.0.0.1]:9\ndefer_transports = smtp\n"
    postfix, pdir = start_postfix(ca, extra_main_cf=extra)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", "b@example.net", "bench"
    msg.set_content("x" * 1000)
    with smtplib.SMTP(postfix.host, postfix.submission, timeout=30) as smtp:
        for _ in range(count):
            smtp.send_message(msg)
    return postfix, pdir


async def time_queue(config_dir: Path, expected: int) -> list[float]:
    executor, times = LocalExecutor(), []
    argv = ["postqueue", "-c", str(config_dir), "-j"]
    deadline = time.monotonic() + 120
    while True:  # qmgr moves the last messages in from incoming: wait until all are counted
        res = await executor.run(argv, timeout=30)
        snap, _ = snapshot(res.stdout)
        if sum(snap.messages.values()) >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    parse: list[float] = []
    for _ in range(5):
        t = time.perf_counter()
        res = await executor.run(argv, timeout=30)
        p = time.perf_counter()
        snap, _ = snapshot(res.stdout)
        now = time.perf_counter()
        times.append((now - t) * 1000)
        parse.append((now - p) * 1000)
    print(f"  queue: {sum(snap.messages.values())} messages ({_fmt(snap.messages)})")
    print(f"  of which the agent's parse (off the event loop): median "
          f"{statistics.median(parse):.0f} ms; the rest is postqueue/showq itself")  # fmt: skip
    return times


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{q} {n}" for q, n in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--lines-per-s", type=float, default=2000.0)
    parser.add_argument("--queue", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mailflow-"))
    try:
        base_cpu, base_p99, _ = asyncio.run(follow_under_load(work, args.rate, 0, args.seconds))
        cpu, p99, read = asyncio.run(
            follow_under_load(work, args.rate, args.lines_per_s, args.seconds)
        )
        print(f"follower: {args.lines_per_s:g} lines/s for {args.seconds:g} s ({read} read), "
              f"HTTP load {args.rate:g} req/s")  # fmt: skip
        extra = (cpu - base_cpu) * 100
        print(f"  agent CPU: {cpu * 100:.1f} % of a core (baseline {base_cpu * 100:.1f} %); "
              f"follower {extra:.1f} %   goal <= 5 %  ratio {extra / 5:.2f}")  # fmt: skip
        for path in sorted(p99):
            added = p99[path] - base_p99.get(path, 0.0)
            print(f"  {path:9} p99 {p99[path]:.2f} ms (baseline {base_p99.get(path, 0):.2f} ms): "
                  f"{added:+.2f} ms   goal <= +1 ms")  # fmt: skip
        if args.queue > 0:
            postfix, pdir = fill_queue(work, args.queue)
            try:
                times = asyncio.run(time_queue(postfix.config_dir, args.queue))  # type: ignore[attr-defined]
            finally:
                postfix.stop()  # type: ignore[attr-defined]
                shutil.rmtree(pdir, ignore_errors=True)
            med = statistics.median(times)
            print(f"  postqueue -j + parse: median {med:.0f} ms of 5   goal <= 200 ms  "
                  f"ratio {med / 200:.2f}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
