"""``dms-agent apply``: one reconcile, now."""

from __future__ import annotations

import argparse
import asyncio
import sys

from agent.commands.plan import exit_code, render_plan
from agent.commands.state import (
    EXIT_ERROR,
    make_engine,
    settings_and_desired,
)


def run(args: argparse.Namespace) -> int:
    loaded = settings_and_desired(args)
    if isinstance(loaded, int):
        return loaded
    settings, desired = loaded
    engine = make_engine(settings)
    report = asyncio.run(engine.run_pass(desired, allow_deletions=max(0, args.allow_deletions)))
    if report.plan is not None:
        print(render_plan(report.plan))
    for r in report.results:
        mark = "ok" if r.status == "ok" else r.status.upper()
        msg = f": {r.message}" if r.message else ""
        print(f"{mark:<8} {r.op.kind} {r.op.target} {r.op.value}".rstrip() + msg)
    if report.error is not None:
        print(f"error: {report.error}", file=sys.stderr)
    print(f"Apply: {report.outcome} in {report.duration:.2f}s")
    if report.outcome not in ("noop", "applied") or report.plan is None:
        return EXIT_ERROR
    return exit_code(report.plan, detailed=False)
