"""The mailserver verdict and each liveness check: last result, when, and recent history."""

from __future__ import annotations

from typing import Any

from agent.web.markup import badge, bullet_list, esc, row, section, table
from agent.web.spark import sparkline
from agent.web.timefmt import when


def _last_result(check: dict[str, Any]) -> str:
    last = check.get("lastOk")
    if last is None:
        return badge("unknown")
    word = "pass" if last else "fail"
    detail = " ".join(str(v) for v in (check.get("reason"), check.get("message")) if v)
    return badge(word) + (f" {esc(detail)}" if detail and not last else "")


def _notes(check: dict[str, Any]) -> str:
    notes = [esc(w) for w in check.get("warnings") or []]
    if check.get("certificateNotAfter"):
        notes.append("certificate " + esc(check["certificateNotAfter"]))
    if not check.get("affectsVerdict", True):
        notes.append("does not affect the verdict")
    failures = check.get("consecutiveFailures") or 0
    if failures:
        notes.append(f"{esc(failures)} consecutive failures")
    return "; ".join(notes)


def render(health: dict[str, Any], now: float) -> str:
    checks: dict[str, Any] = health.get("checks") or {}
    history: dict[str, Any] = health.get("history") or {}
    rows = [
        row(
            esc(name),
            badge(c.get("phase", "unknown")),
            _last_result(c),
            when(c.get("lastChecked"), now),
            sparkline(history.get(name, ())),
            _notes(c),
        )
        for name, c in sorted(checks.items())
    ]
    reasons = bullet_list(esc(r) for r in health.get("reasons") or [])
    body = (
        f"<p>Verdict {badge(health.get('verdict', 'unknown'))}, decided "
        f"{when(health.get('updatedAt'), now)}.</p>{reasons}"
        + table(
            ("check", "state", "last result", "checked", "history", "notes"),
            rows,
            "No checks configured or none has run yet.",
        )
    )
    return section("health", "Health", body)
