"""``dms-agent apply``: one reconcile, now."""

from __future__ import annotations

import argparse
import asyncio
import sys

from agent.commands.common import EXIT_INVALID_SETTINGS, add_settings_options, settings_from_args
from agent.commands.plan import render_plan
from agent.commands.state import EXIT_ERROR, add_source_option, make_engine, read_desired


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "apply",
        help="run one reconcile: make DMS equal the declared state",
        description=(
            "Observe, plan and apply once, under the apply lock (one agent at a time). "
            "Deletions over maxDeletions are refused unless approved with --allow-deletions."
        ),
    )
    add_settings_options(p)
    add_source_option(p)
    p.add_argument(
        "--allow-deletions",
        type=int,
        default=0,
        metavar="N",
        help="approve up to N deletions beyond maxDeletions, this once",
    )
    p.set_defaults(func=_apply)


def _apply(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings is None:
        return EXIT_INVALID_SETTINGS
    desired = read_desired(settings, args.source)
    if desired is None:
        return EXIT_ERROR
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
    return 0 if report.outcome in ("noop", "applied") else EXIT_ERROR
