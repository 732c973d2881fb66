"""Medians of the DMS `setup` double's commands, bare and padded (DMS_DOUBLE_DELAY=1), next to
the medians measured on real DMS v15.1.0 (dms-facts, 20 accounts).

    .venv/bin/python -m bench.dms_double [--runs 5]     (from the repository root)

Prints one row per command: real DMS median, the double's bare median, the padded median and
padded/real. The padded column should sit at ~1.0 wherever the bare double is faster than DMS.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.dms_double.fixtures import DmsDouble

REAL_MS = {
    "email add": 44,
    "email update": 54,
    "email del": 88,
    "alias add": 28,
    "alias del": 39,
    "quota set": 30,
    "quota del": 38,
    "email list": 206,
    "config dkim": 209,
}


def timed(dms: DmsDouble, argv: list[str], stdin: str = "") -> float:
    start = time.perf_counter()
    done = subprocess.run([*dms.setup_argv, *argv], input=stdin, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv}: exit {done.returncode}: {done.stderr}")
    return elapsed * 1000


def one_round(dms: DmsDouble, n: int) -> dict[str, float]:
    """Each command once, on an instance holding 20 accounts."""
    user = f"bench{n}@example.com"
    maildir = dms.maildir(user)
    results = {
        "email add": timed(dms, ["email", "add", user], "pw\npw\n"),
        "email update": timed(dms, ["email", "update", user], "pw2\npw2\n"),
        "alias add": timed(dms, ["alias", "add", f"team{n}@example.com", user]),
        "alias del": timed(dms, ["alias", "del", f"team{n}@example.com", user]),
        "quota set": timed(dms, ["quota", "set", user, "1G"]),
        "quota del": timed(dms, ["quota", "del", user]),
        "email list": timed(dms, ["email", "list"]),
        "config dkim": timed(dms, ["config", "dkim", "domain", f"d{n}.example.com"]),
    }
    dms.create_maildir(user)
    results["email del"] = timed(dms, ["email", "del", "-y", user])
    assert not maildir.exists()
    return results


def medians(delay: float, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        dms = DmsDouble(Path(tmp), delay=delay)
        dms.seed(*(f"user{i}@example.com" for i in range(19)))
        rounds = [one_round(dms, n) for n in range(runs)]
    return {name: statistics.median(r[name] for r in rounds) for name in REAL_MS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bare = medians(0, args.runs)
    padded = medians(1, args.runs)
    print(f"{'command':<14}{'DMS ms':>8}{'double ms':>11}{'padded ms':>11}{'padded/DMS':>12}")
    for name, real in REAL_MS.items():
        ratio = padded[name] / real
        print(f"{name:<14}{real:>8}{bare[name]:>11.1f}{padded[name]:>11.1f}{ratio:>12.2f}")


if __name__ == "__main__":
    main()
