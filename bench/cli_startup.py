"""How long `dms-agent` takes to answer, as a person or a CI job runs it.

Each row runs the installed console script 20 times in a fresh process and prints the median
wall time, its goal, and its ratio to `python -c pass` run the same way (the interpreter's own
start-up on this machine, so a busy machine shows as a ratio that stays put).
Rows: `--help`, every `SUB --help`, `probe-script`, `validate` of a 10-account state document,
`plan` of a 10-account state against a local DMS config folder (file executor).
The agent's modules are compiled to bytecode first, as an installed copy has them
(bench/bytecode.py).
Run: .venv/bin/python bench/cli_startup.py
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.cli import build_parser  # noqa: E402
from bench.bytecode import compile_agent  # noqa: E402

RUNS = 20
DMS_AGENT = str(Path(sys.executable).parent / "dms-agent")


def median_ms(argv: list[str], expect: int = 0) -> tuple[float, float]:
    """(median wall ms, median CPU ms of the child): on a busy machine the wall time includes
    waiting for a core, the CPU time is what the command costs."""
    wall, cpu = [], []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, check=False, cwd=ROOT)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if proc.returncode != expect:
            raise SystemExit(f"{argv}: exit {proc.returncode}\n{proc.stderr.decode()}")
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def sub_commands() -> list[list[str]]:
    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return found


def ten_accounts(folder: Path) -> tuple[Path, Path]:
    state = folder / "state"
    state.mkdir()
    accounts = "".join(f"  user{i}@example.com: {{quota: 1G}}\n" for i in range(10))
    (state / "mailserver.yaml").write_text(
        f"apiVersion: dms-agent/v1\naccounts:\n{accounts}aliases:\n"
        "  postmaster@example.com: [user0@example.com]\n"
    )
    (state / "passwords.yaml").write_text(
        "".join(f'user{i}@example.com: {{password: "pw {i} correct horse"}}\n' for i in range(10))
    )
    config = folder / "dms-config"
    config.mkdir()
    key = folder / "ledger.key"
    key.write_text("bench-ledger-key-0123456789abcdef\n")
    key.chmod(0o600)  # the agent refuses a digest key others can read
    settings = folder / "settings.yaml"
    settings.write_text(
        f"dms: {{configDir: {config}, executor: {{kind: file}}}}\n"
        f"sources: [{{kind: path, path: {state}}}]\n"
        f"reconcile: {{ledgerKeyFile: {key}}}\n"
    )
    return state, settings


def main() -> None:
    compile_agent()
    baseline, baseline_cpu = median_ms([sys.executable, "-c", "pass"])
    rows = [("--help", median_ms([DMS_AGENT, "--help"]), 150)]
    for words in sub_commands():
        rows.append((f"{' '.join(words)} --help", median_ms([DMS_AGENT, *words, "--help"]), 150))
    rows.append(("probe-script", median_ms([DMS_AGENT, "probe-script"]), 150))
    with tempfile.TemporaryDirectory() as tmp:
        state, settings = ten_accounts(Path(tmp))
        rows.append(("validate (10 accounts)", median_ms([DMS_AGENT, "validate", str(state)]), 300))
        plan = [DMS_AGENT, "plan", "--config", str(settings)]
        rows.append(("plan (10 accounts, local folder)", median_ms(plan), 400))
    print(
        f"median of {RUNS} runs; `python -c pass` takes {baseline:.0f} ms here "
        f"({baseline_cpu:.0f} ms CPU); load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    print(f"  {'command':34s} {'wall':>7s} {'cpu':>7s} {'goal':>7s} {'wall/goal':>9s} "
          f"{'cpu/goal':>8s} {'/python':>7s}")  # fmt: skip
    for name, (ms, cpu), goal in rows:
        print(f"  {name:34s} {ms:4.0f} ms {cpu:4.0f} ms {goal:4.0f} ms {ms / goal:9.2f} "
              f"{cpu / goal:8.2f} {ms / baseline:7.1f}")  # fmt: skip
    worst = max(rows, key=lambda r: r[1][0] / r[2])
    print(f"worst against its goal: {worst[0]} at {worst[1][0] / worst[2]:.2f}x (wall)")


if __name__ == "__main__":
    main()
