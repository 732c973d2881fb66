"""The poor man's LB: the address sent, the ports, and each target's last delivery."""

from __future__ import annotations

from typing import Any

from agent.web.markup import NONE, absent, badge, code, esc, headline, row, section, table
from agent.web.timefmt import when


def _port(p: dict[str, Any]) -> str:
    back = p.get("backend") or p.get("frontend")
    proxy = " (PROXY protocol)" if p.get("proxyProtocol") else ""
    return f"{esc(p.get('name', '?'))} {esc(p.get('frontend'))}→{esc(back)}{proxy}"


def _target_row(label: str, t: dict[str, Any], now: float) -> str:
    result = t.get("lastResult")
    detail = f" {esc(t['lastDetail'])}" if t.get("lastDetail") else ""
    failures = t.get("consecutiveFailures") or 0
    return row(
        esc(label),
        code(t.get("endpoint", "")),
        (badge(result) if result else NONE) + detail,
        esc(t["lastAction"]) if t.get("lastAction") else NONE,
        when(t.get("lastSuccessAt"), now),
        esc(failures),
    )


def render(component: dict[str, Any] | None, now: float) -> str:
    if component is None:
        return absent("lb", "Load balancer", "The LB client is not enabled.")
    d = component.get("details") or {}
    ports = ", ".join(_port(p) for p in d.get("ports") or [])
    head = (
        headline(component.get("state", "unknown"), component.get("message", ""))
        + f"<p>Address {code(d.get('address') or '?')} ({esc(d.get('addressSource', '?'))}), "
        f"node {esc(d.get('node') or '?')}, pod {esc(d.get('pod') or '?')}; ports: "
        f"{ports or NONE}</p>"
    )
    targets: dict[str, Any] = d.get("targets") or {}
    rows = [_target_row(n, t, now) for n, t in sorted(targets.items())]
    heads = ("target", "endpoint", "last result", "last action", "last delivery", "failures")
    return section("lb", "Load balancer", head + table(heads, rows, "No targets."))
