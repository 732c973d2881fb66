"""Planning restrictions through DMS's matching quirks (docs/dms-compat.md): the plan simulates
`restrict add`'s substring match and `restrict del`'s prefix match for every op. Prints the
median time of plan() for 10,000 restriction ops: adds into an empty access file (a first sync)
and removals from a full one. Goal: well under a second (plan() runs on the event loop).

Run from the repository root:  .venv/bin/python bench/restrict_plan.py [--accounts N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from agent.dms.actual import Actual
from agent.dms.files import access_line
from agent.mailstate.model import Account, Desired, MailState, Restriction
from agent.reconcile.ledger import LedgerData
from agent.reconcile.plan import PlanPolicy, plan

SEND: frozenset[Restriction] = frozenset({"send"})


def addresses(n: int) -> list[str]:
    return [f"user{i}@d{i % 10}.example.com" for i in range(n)]


def timed(desired: Desired, actual: Actual, runs: int) -> tuple[float, int]:
    times, ops = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        ops = len(plan(desired, actual, LedgerData(), PlanPolicy(), {}).ops)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), ops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    names = addresses(args.accounts)
    hashes = {a: "{X}h" for a in names}
    plain = {a: Account(a) for a in names}
    restricted = {a: Account(a, None, SEND) for a in names}
    lines = tuple(access_line(a).rstrip("\n") for a in names)
    cases = (
        ("adds into an empty access file", restricted, plain, ()),
        ("removals from a full access file", plain, restricted, lines),
    )
    print(f"plan() with {args.accounts} restriction ops (median of {args.runs}):")
    for label, want, have, current in cases:
        actual = Actual(MailState(accounts=have), hashes, access_lines={"send": current})
        median, ops = timed(Desired(MailState(accounts=want)), actual, args.runs)
        print(f"  {label}: {median * 1000:.0f} ms for {ops} ops")


if __name__ == "__main__":
    main()
