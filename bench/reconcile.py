"""Reconcile benchmarks against the DMS `setup` double (delay calibrated to DMS v15.1.0's medians,
DMS_DOUBLE_DELAY=1, see bench/dms_double.py).

1. no-op reconcile of 10,000 accounts, from trigger (desired state already parsed) to "nothing to
   do", reading DMS's files: median time (goal <= 100 ms) and commands run (must be 0);
2. one change among 10,000 accounts: commands (must be 1) and median time;
3. first sync of 1,000 accounts: overhead = wall time minus the commands' time as measured in
   the executor, as a ratio of the commands' time (goal <= 5 %).
(Parsing + validating a 10,000-account document: bench/bench_parse.py.)

Run from the repository root:  .venv/bin/python bench/reconcile.py [--first-sync N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.dms import files
from agent.executor import LocalExecutor, Result
from agent.fsio import write_file
from agent.mailstate.load import desired_from_documents
from agent.mailstate.model import Desired
from agent.reconcile.ledger import (
    LEDGER_NAME,
    LedgerData,
    LedgerEntry,
    intent_digests,
)
from agent.reconcile.reconciler import Engine
from agent.settings import Settings
from agent.sources.document import SourceDocument
from tests.dms_double.fixtures import DmsDouble

KEY = b"bench-ledger-key"
FAKE_HASH = "{SHA512-CRYPT}$6$benchsalt$" + "h" * 86


class CountingExecutor:
    """Counts the commands and adds up their executor-measured durations."""

    def __init__(self) -> None:
        self.inner = LocalExecutor()
        self.count = 0
        self.seconds = 0.0

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        res = await self.inner.run(argv, stdin, timeout)
        self.count += 1
        self.seconds += res.duration
        return res


def addr(i: int) -> str:
    return f"user{i}@d{i % 10}.example.com"


def documents(n: int, quota_of: dict[int, str] | None = None) -> list[SourceDocument]:
    quota_of = quota_of or {}
    lines = ["apiVersion: dms-agent/v1", "accounts:"]
    for i in range(n):
        quota = quota_of.get(i, "2G" if i % 3 == 0 else None)
        spec = []
        if quota:
            spec.append(f"quota: {quota}")
        if i % 4 == 0:
            spec.append("restrict: [send]")
        lines.append(f"  {addr(i)}: {{{', '.join(spec)}}}")
    lines.append("aliases:")
    lines += [f"  alias{i}@d{i % 10}.example.com: [{addr(i)}]" for i in range(0, n, 5)]
    passwords = "".join(f'{addr(i)}: {{password: "pw-{i}"}}\n' for i in range(n))
    return [
        SourceDocument("bench/mailserver.yaml", "mailserver.yaml", "\n".join(lines) + "\n"),
        SourceDocument("bench/passwords.yaml", "passwords.yaml", passwords, True),
    ]


def write_dms_files(dms: DmsDouble, desired: Desired, key_file: Path) -> None:
    """DMS's files and a ledger as after a complete sync of ``desired`` (fake hashes)."""
    st = desired.state
    dms.write("postfix-accounts.cf", "".join(f"{a}|{FAKE_HASH}\n" for a in st.accounts))
    quotas = "".join(f"{a}:{acc.quota}\n" for a, acc in st.accounts.items() if acc.quota)
    dms.write("dovecot-quotas.cf", quotas)
    send = "".join(files.access_line(a) for a, acc in st.accounts.items() if "send" in acc.restrict)
    dms.write("postfix-send-access.cf", send)
    dms.write("postfix-virtual.cf", "".join(f"{a} {','.join(r)}\n" for a, r in st.aliases.items()))
    digests = intent_digests(key_file.read_bytes().strip(), st.passwords)
    ledger = LedgerData(
        accounts={a: LedgerEntry(digests.get(a), FAKE_HASH, "created", 0.0) for a in st.accounts},
        aliases={a: frozenset(r) for a, r in st.aliases.items()},
    )
    write_file(dms.config_dir / LEDGER_NAME, json.dumps(ledger.as_json()), mode=0o600)


def settings_for(dms: DmsDouble, key_file: Path) -> Settings:
    env = {k: v for k, v in dms.env.items() if not k.startswith("DMS_DOUBLE")}
    return Settings.model_validate(
        {
            "dms": {
                "configDir": str(dms.config_dir),
                "mailDir": str(dms.mail_dir),
                "setupCommand": dms.setup_argv,
                "readyCommand": [],
                "executor": {"kind": "local"},
                "environment": env,
            },
            "reconcile": {"ledgerKeyFile": str(key_file), "progressInterval": 15},
        }
    )


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


async def bench_10k(root: Path, n: int, runs: int) -> None:
    key_file = root / "keys" / "ledger.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("bench-ledger-key\n")
    key_file.chmod(0o600)
    dms = DmsDouble(root / "dms10k", delay=1)
    desired = desired_from_documents(documents(n))
    write_dms_files(dms, desired, key_file)
    ex = CountingExecutor()
    engine = Engine(settings_for(dms, key_file), ex)

    t0 = time.perf_counter()
    report = await engine.run_pass(desired)
    cold = time.perf_counter() - t0
    assert report.outcome == "noop", report.describe()
    print(f"no-op reconcile, {n} accounts (goal: <= 100 ms, 0 commands):")
    print(f"  first pass (ledger load + digests + parse of DMS's files): {ms(cold)}")
    modes = (("files unchanged since the last pass", False), ("files re-parsed", True))
    for label, reparse in modes:
        times = []
        for _ in range(runs):
            if reparse:
                engine.reader.forget()  # as if every DMS file had changed
            t0 = time.perf_counter()
            report = await engine.run_pass(desired)
            times.append(time.perf_counter() - t0)
            assert report.outcome == "noop", report.describe()
        med, lo, hi = ms(statistics.median(times)), ms(min(times)), ms(max(times))
        print(f"  {label}: median {med} over {runs} runs (min {lo}, max {hi})")
    print(f"  commands run: {ex.count}")

    change_times, counts = [], []
    for k in range(runs):
        changed = desired_from_documents(documents(n, {7: f"{100 + k}M"}))
        before = ex.count
        t0 = time.perf_counter()
        report = await engine.run_pass(changed)
        change_times.append(time.perf_counter() - t0)
        counts.append(ex.count - before)
        assert report.outcome == "applied", report.describe()
    print(f"one change among {n} accounts (quota set, padded double):")
    med = ms(statistics.median(change_times))
    print(f"  commands per pass: {sorted(set(counts))}; median {med}")
    print(f"  of which the command itself: {ms(report.commands_time)} (last run)")


async def bench_first_sync(root: Path, n: int) -> None:
    key_file = root / "keys2" / "ledger.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("bench-ledger-key\n")
    key_file.chmod(0o600)
    dms = DmsDouble(root / "dms-first", delay=1)
    desired = desired_from_documents(documents(n))
    ex = CountingExecutor()
    engine = Engine(settings_for(dms, key_file), ex)
    t0 = time.perf_counter()
    report = await engine.run_pass(desired)
    wall = time.perf_counter() - t0
    assert report.outcome == "applied", report.describe()
    overhead = wall - report.commands_time
    print(f"first sync of {n} accounts ({len(report.results)} ops, padded double):")
    print(f"  wall {wall:.2f} s, commands {report.commands_time:.2f} s (executor-measured)")
    ratio = overhead / report.commands_time * 100
    print(f"  overhead {overhead:.3f} s = {ratio:.2f} % (goal <= 5 %)")
    print(f"  commands run: {ex.count}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--first-sync", type=int, default=1_000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_10k(Path(tmp), args.accounts, args.runs))
        if args.first_sync:
            asyncio.run(bench_first_sync(Path(tmp), args.first_sync))


if __name__ == "__main__":
    main()
