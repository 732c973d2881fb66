"""Parse + validate a 10,000-account state document and a 10,000-entry passwords document.

Prints, per stage, the median wall time and the median CPU time of the process over several
runs (on a shared machine the wall time includes waiting for a core; CPU time is what the code
costs). Goals: both documents (state + passwords, parsed, validated and merged) <= 400 ms;
the state document alone <= 300 ms.
Run: .venv/bin/python bench/bench_parse.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.mailstate.load import _CACHE, desired_from_documents
from agent.mailstate.parse import parse_passwords, parse_state
from agent.mailstate.shape import well_formed_state
from agent.mailstate.structure import structure_errors
from agent.sources.document import SourceDocument
from agent.yamlloc import load_yaml

N = 10_000
RUNS = 7
HASH = "{SHA512-CRYPT}$6$0123456789abcdef$" + "x" * 86


def state_text(n: int) -> str:
    lines = ["apiVersion: dms-agent/v1", "domains:"]
    lines += [f"  d{d}.example.com: {{dkim: {{selector: mail, keySize: 2048}}}}" for d in range(10)]
    lines.append("accounts:")
    for i in range(n):
        spec = "{quota: 2G, restrict: [send]}" if i % 3 == 0 else "{}"
        lines.append(f"  user{i}@d{i % 10}.example.com: {spec}")
    lines.append("aliases:")
    for i in range(0, n, 5):
        lines.append(f"  alias{i}@d{i % 10}.example.com: [user{i}@d{i % 10}.example.com]")
    return "\n".join(lines) + "\n"


def passwords_text(n: int) -> str:
    return "".join(
        f'user{i}@d{i % 10}.example.com: {{password: "pw-{i}-correct horse"}}\n'
        if i % 2
        else f"user{i}@d{i % 10}.example.com: {{hash: '{HASH}'}}\n"
        for i in range(n)
    )


def clear() -> None:
    _CACHE.clear()


def median_ms(fn: Callable[[], Any]) -> tuple[float, float]:
    """(median wall ms, median CPU ms)."""
    wall, cpu = [], []
    for _ in range(RUNS):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def main() -> None:
    state, passwords = state_text(N), passwords_text(N)
    state_doc = load_yaml(state, "s.yaml")
    docs = [
        SourceDocument("bench/mailserver.yaml", "mailserver.yaml", state),
        SourceDocument("bench/passwords.yaml", "passwords.yaml", passwords, secret=True),
    ]
    rows = {
        "state: YAML with lines": median_ms(lambda: load_yaml(state, "s.yaml")),
        "state: shape check (plain)": median_ms(lambda: well_formed_state(state_doc.value)),
        "state: pydantic (malformed only)": median_ms(
            lambda: structure_errors("state", state_doc.value)
        ),
        "state: structure + rules": median_ms(lambda: parse_state(state_doc)),
        "state: YAML + validation": median_ms(lambda: parse_state(load_yaml(state, "s.yaml"))),
        "passwords: YAML + validation": median_ms(
            lambda: parse_passwords(load_yaml(passwords, "passwords.yaml"))
        ),
        "both: desired_from_documents": median_ms(lambda: (clear(), desired_from_documents(docs))),
        "both: again, unchanged (cache)": median_ms(lambda: desired_from_documents(docs)),
    }
    print(f"{N} accounts, {N // 5} aliases, {N} passwords; median of {RUNS} runs")
    print(f"  {'stage':32s} {'wall':>8s}    {'cpu':>8s}")
    for name, (wall, cpu) in rows.items():
        print(f"  {name:32s} {wall:8.1f} ms {cpu:8.1f} ms")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for row, goal in (("both: desired_from_documents", 400), ("state: YAML + validation", 300)):
        wall, cpu = rows[row]
        print(f"{row} vs {goal} ms goal: wall {wall / goal:.2f}x, cpu {cpu / goal:.2f}x")


if __name__ == "__main__":
    main()
