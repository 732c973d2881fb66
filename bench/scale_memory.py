"""Peak memory of a whole apply pass at scale: 10,000 and 100,000 accounts with hashes.

Each size runs in a child process (a clean heap, as the agent in its pod): a state document
and a passwords document giving every account a ``{SHA512-CRYPT}`` hash, read from a folder
source, parsed and merged; then one apply pass with the ``file`` executor against a DMS config
folder that already holds all but 10 of the accounts (as after ``dms-agent import``): the
plan adopts the rest into the ledger, the 10 new accounts are written into DMS's files, and
the ledger is compacted. Printed per size: peak RSS (VmHWM) after parsing and at the end of
the pass (read inside the event loop, as the agent's loop outlives every pass), against the
goal of 200 MB (the manifests give the agent 256 Mi); and the peak once this one-shot script's
``asyncio.run`` has closed its loop (on this machine that teardown has shown a transient
~60 MB above the pass, which a running agent never goes through). Run:
.venv/bin/python bench/scale_memory.py [SIZES...]
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_MB = 200.0
NEW = 10  # accounts not yet in DMS: written by the file applier (each op rewrites its file)
HASH = "{SHA512-CRYPT}$6$" + "s" * 16 + "$" + "h" * 86


def addr(i: int) -> str:
    return f"user{i}@d{i % 10}.example.com"


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def write_inputs(root: Path, n: int) -> tuple[Path, Path, Path]:
    source, config, keys = root / "state", root / "dms-config", root / "keys"
    for folder in (source, config, keys):
        folder.mkdir()
    with (source / "mailserver.yaml").open("w") as f:
        f.write("apiVersion: dms-agent/v1\naccounts:\n")
        for i in range(n):
            f.write(f"  {addr(i)}: {{quota: 2G}}\n" if i % 3 == 0 else f"  {addr(i)}: {{}}\n")
    with (source / "passwords.yaml").open("w") as f:
        for i in range(n):
            f.write(f'{addr(i)}: {{hash: "{HASH}{i}"}}\n')
    with (config / "postfix-accounts.cf").open("w") as f:
        for i in range(NEW, n):
            f.write(f"{addr(i)}|{HASH}{i}\n")
    with (config / "dovecot-quotas.cf").open("w") as f:
        for i in range(NEW, n):
            if i % 3 == 0:
                f.write(f"{addr(i)}:2G\n")
    (keys / "ledger.key").write_text("bench-ledger-key\n")
    (keys / "ledger.key").chmod(0o600)
    return source, config, keys / "ledger.key"


def child(n: int) -> None:
    from agent.mailstate.load import desired_from_documents
    from agent.reconcile.reconciler import Engine, PassReport
    from agent.settings import Settings
    from agent.sources.document import read_path

    with tempfile.TemporaryDirectory() as tmp:
        source, config, key = write_inputs(Path(tmp), n)
        base = peak_mb()
        t0 = time.perf_counter()
        docs = read_path(source)
        assert docs is not None
        desired = desired_from_documents(docs)
        del docs
        parsed, t_parse = peak_mb(), time.perf_counter() - t0
        settings = Settings.model_validate(
            {
                "dms": {"configDir": str(config), "executor": {"kind": "file"}},
                "reconcile": {"ledgerKeyFile": str(key), "progressInterval": 3600},
            }
        )
        engine = Engine(settings, None)

        async def one_pass() -> tuple[PassReport, float]:
            # read inside the loop: the agent's loop outlives every pass
            return await engine.run_pass(desired), peak_mb()

        t0 = time.perf_counter()
        report, in_loop = asyncio.run(one_pass())
        t_pass = time.perf_counter() - t0
        done = sum(1 for r in report.results if r.status == "ok")
        assert report.outcome == "applied" and done == len(report.results), report.error
        assert report.plan is not None and len(report.plan.adopt) == n - NEW
        print(
            f"{n:7d} accounts: peak RSS {in_loop:6.1f} MB "
            f"(goal {GOAL_MB:.0f} MB: {in_loop / GOAL_MB:.2f}x; "
            f"after imports {base:.1f} MB, after parsing {parsed:.1f} MB; "
            f"{peak_mb():.1f} MB once asyncio.run has torn its loop down); "
            f"parse {t_parse:.1f} s, pass {t_pass:.1f} s ({done} ops written, {n - NEW} adopted)"
        )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    for n in sizes:
        subprocess.run([sys.executable, __file__, "--child", str(n)], check=True)


if __name__ == "__main__":
    main()
