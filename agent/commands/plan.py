"""``dms-agent plan``: what a reconcile would do, without doing it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from agent.commands.state import (
    EXIT_ERROR,
    make_engine,
    settings_and_desired,
)
from agent.reconcile.dkimwork import DONE_BY
from agent.reconcile.plan import Plan

KEPT_SHOWN = 20

EXIT_CHANGES = 2
EXIT_HELD = 3  # refused deletions, blocked ops, held DKIM steps: work a person must look at


def exit_code(p: Plan, detailed: bool) -> int:
    """The README's "Exit codes" table for `plan` (``detailed``) and `apply`: held-back work
    outranks changes, an error outranks both."""
    if p.fatal:
        return EXIT_ERROR
    if p.held:
        return EXIT_HELD
    if detailed and (p.changes or p.dkim_changes):
        return EXIT_CHANGES
    return 0


def run(args: argparse.Namespace) -> int:
    loaded = settings_and_desired(args)
    if isinstance(loaded, int):  # with --detailed-exitcode, 2 means changes: errors are 1
        return EXIT_ERROR if args.detailed_exitcode else loaded
    settings, desired = loaded
    report = asyncio.run(make_engine(settings).plan_only(desired))
    if report.error is not None or report.plan is None:
        print(f"error: {report.error}", file=sys.stderr)
        return EXIT_ERROR
    if args.output == "json":
        print(json.dumps(report.plan.describe(), indent=2))
    else:
        print(render_plan(report.plan))
    return exit_code(report.plan, args.detailed_exitcode)


def _note(op: dict[str, Any]) -> str:
    parts = [op.get("reason", "")]
    if "password" in op:
        parts.append(f"password: {op['password']}")
    if op.get("deleteMailData"):
        parts.append("deletes mail")
    if op.get("via") == "files":
        parts.append("written to DMS's file by the agent")
    return ", ".join(p for p in parts if p)


def render_plan(p: Plan) -> str:
    """A readable table of the ops, then what waits and why."""
    d = p.describe()
    rows = [("OP", "TARGET", "VALUE", "NOTE")]
    rows += [(o["kind"], o["target"], o.get("value", ""), _note(o)) for o in d["ops"]]
    rows += [(o["kind"], o["target"], o.get("value", ""), "REFUSED") for o in d["refused"]]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()
        for r in rows
    ]
    if len(rows) == 1:
        settled = not (p.held or p.dkim or p.pending or p.deferred)
        lines = ["No changes: DMS matches the declared state." if settled else "No ops to run."]
    if p.fatal:
        lines.append(f"REFUSED: {p.fatal}")
    if p.refused:
        lines.append(f"Refused: {p.refused_reason}")
    lines += [f"Blocked: {k}: {why}" for k, why in sorted(p.blocked.items())]
    lines += [f"Pending: {a}: {why}" for a, why in sorted(p.pending.items())]
    lines += [f"Drift: {a}: password changed outside dms-agent" for a in p.drift]
    lines += [f"Waiting for retry: {op.key}" for op in p.deferred]
    lines += [f"Warning: {w}" for w in p.warnings]
    lines += [f"DKIM: {w.domain}: {w.step} {w.selector!r}: {w.reason} ({DONE_BY})" for w in p.dkim]
    if p.adopt:
        lines.append(f"Adopt: {len(p.adopt)} existing accounts (passwords untouched)")
    if p.kept:
        shown = ", ".join(p.kept[:KEPT_SHOWN]) + (" …" if len(p.kept) > KEPT_SHOWN else "")
        lines.append(f"Kept, undeclared: {len(p.kept)} accounts DMS holds ({shown})")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(p.summary().items())) or "no ops"
    lines.append(
        f"Plan: {summary}; {len(p.refused)} refused, {len(p.blocked)} blocked, "
        f"{len(p.pending)} pending, {len(p.dkim)} DKIM steps, {len(p.kept)} kept undeclared."
    )
    return "\n".join(lines)
