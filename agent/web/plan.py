"""The reconciler's last pass: its plan (ops, refused deletions, blocked and pending work,
accounts kept though undeclared) and how the ops went. Passwords appear only as their kind."""

from __future__ import annotations

from typing import Any

from agent.web.markup import absent, badge, bullet_list, code, esc, headline, row, section, table
from agent.web.timefmt import when

OPS_SHOWN = 50  # /status carries at most its own cap; the counts stay whole
HEAD = ("op", "target", "value", "reason")
KEPT_NOTE = (
    "Accounts that exist but are not declared, left alone: pruning is off or the agent does "
    "not manage them."
)


def _op_row(op: dict[str, Any], status: str = "") -> str:
    what = esc(op.get("value", ""))
    if op.get("password"):
        what = f"password ({esc(op['password'])})"  # the kind, plain or hash, never a value
    if op.get("deleteMailData"):
        what += " and its mail data"
    cells = [code(op.get("kind", "?")), esc(op.get("target", "")), what, esc(op.get("reason", ""))]
    if status:
        cells.append(badge(status) + (f" {esc(op['message'])}" if op.get("message") else ""))
    return row(*cells)


def _keyed(title: str, items: dict[str, Any]) -> str:
    if not items:
        return ""
    lis = bullet_list(f"{code(k)}: {esc(v)}" for k, v in items.items())
    return f"<h3>{esc(title)} ({len(items)})</h3>{lis}"


def _listed(title: str, items: list[Any], note: str = "") -> str:
    if not items:
        return ""
    lead = f"<p>{esc(note)}</p>" if note else ""
    return f"<h3>{esc(title)} ({len(items)})</h3>{lead}" + bullet_list(esc(i) for i in items)


def _plan(plan: dict[str, Any]) -> str:
    counts = plan.get("counts") or {}
    ops = plan.get("ops") or []
    more = counts.get("ops", len(ops)) - len(ops[:OPS_SHOWN])
    parts = [
        f"<h3>Ops ({esc(counts.get('ops', len(ops)))})</h3>",
        table(HEAD, [_op_row(o) for o in ops[:OPS_SHOWN]], "Nothing to change."),
        f"<p>… and {more} more: see <code>dms-agent plan</code>.</p>" if more > 0 else "",
    ]
    refused = plan.get("refused") or []
    if refused:
        parts.append(f"<h3>Refused deletions ({len(refused)})</h3>")
        if plan.get("refusedReason"):
            parts.append(f"<p>{esc(plan['refusedReason'])}</p>")
        parts.append(table(HEAD, [_op_row(o) for o in refused]))
    parts += [
        _keyed("Blocked", plan.get("blocked") or {}),
        _keyed("Pending", plan.get("pending") or {}),
        _listed("Waiting for a retry", plan.get("deferred") or []),
        _listed("Password changed outside (drift)", plan.get("drift") or []),
        _listed("Kept, undeclared", plan.get("kept") or [], KEPT_NOTE),
        _listed("Warnings", plan.get("warnings") or []),
    ]
    return "".join(parts)


def render(component: dict[str, Any] | None, now: float) -> str:
    if component is None:
        return absent("plan", "Plan", "The reconciler is not running.")
    d = component.get("details") or {}
    word = d.get("outcome") or component.get("state", "unknown")
    after = f" ({esc(d.get('mode', '?'))} mode, {when(component.get('updatedAt'), now)})"
    head = headline(word, component.get("message", ""), after)
    plan = d.get("plan") or {}
    if plan.get("fatal"):
        head += f"<p><strong>Refusing to manage:</strong> {esc(plan['fatal'])}</p>"
    results = [r for r in d.get("results") or [] if r.get("status") != "ok"]
    failed = ""
    if results:
        rows = [_op_row(r, r.get("status", "")) for r in results]
        failed = "<h3>Failed ops</h3>" + table(("op", "target", "value", "reason", "result"), rows)
    return section("plan", "Plan", head + (_plan(plan) if plan else "") + failed)
