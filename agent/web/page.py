"""The whole document from one ``StatusRegistry.snapshot()``: pure, no I/O, fast enough to run
in the event loop (bench/status_page.py)."""

from __future__ import annotations

from typing import Any

from agent.web import components, dkim, dns, health, lb, plan
from agent.web.assets import SCRIPT, STYLE
from agent.web.markup import badge, esc
from agent.web.timefmt import when

_NAV = (
    ("health", "Health"),
    ("dns", "DNS"),
    ("dkim", "DKIM"),
    ("plan", "Plan"),
    ("sources", "Sources"),
    ("lb", "LB"),
    ("components", "Components"),
)


def render_page(
    snapshot: dict[str, Any],
    now: float,
    refresh: int = 30,
    dns_tables: dns.TableCache | None = None,
) -> str:
    """``refresh``: seconds between the script's reloads of the page's content; ``dns_tables``
    keeps the DNS tables between renders (the handler holds one)."""
    verdict = snapshot.get("health", {}).get("verdict", "unknown")
    comps: dict[str, Any] = snapshot.get("components") or {}
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in _NAV)
    main = "".join(
        (
            health.render(snapshot.get("health") or {}, now),
            dns.render(comps.get("dns"), now, dns_tables),
            dkim.render(comps.get("dkim"), now),
            plan.render(comps.get("reconcile"), now),
            components.render_sources(comps, now),
            lb.render(comps.get("lb"), now),
            components.render_all(comps, now),
        )
    )
    settings = "" if snapshot.get("settingsLoaded") else " Settings are not loaded yet."
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{esc(verdict)} · dms-agent</title><link rel="icon" href="data:,">'
        f"<style>{STYLE}</style></head>"
        f'<body data-refresh="{int(refresh)}"><header><h1>dms-agent: mailserver {badge(verdict)}'
        f"</h1><p>As of {when(now, now)}; agent started {when(snapshot.get('startedAt'), now)}."
        f'{settings}</p><nav aria-label="sections">{nav}</nav>'
        '<p id="stale" class="bad" role="status"></p></header>'
        f"<main>{main}</main><script>{SCRIPT}</script></body></html>"
    )
