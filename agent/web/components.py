"""Components by state: the sources (what the desired state is read from) and every other
component the agent runs."""

from __future__ import annotations

from typing import Any

from agent.web.markup import badge, esc, row, section, table
from agent.web.timefmt import when


def is_source(name: str) -> bool:
    return name.startswith("source ") or name == "sources merge"


def _row(name: str, c: dict[str, Any], now: float) -> str:
    crash = c.get("lastCrash")
    restarts = c.get("restarts") or 0
    note = f"; {esc(restarts)} restarts, last: {esc(crash)}" if restarts and crash else ""
    return row(
        esc(name),
        badge(c.get("state", "unknown")),
        esc(c.get("message", "")) + note,
        when(c.get("updatedAt"), now),
    )


def _table(items: list[tuple[str, dict[str, Any]]], now: float, empty: str) -> str:
    rows = [_row(n, c, now) for n, c in items]
    return table(("name", "state", "message", "updated"), rows, empty)


def render_sources(components: dict[str, Any], now: float) -> str:
    items = [(n, c) for n, c in sorted(components.items()) if is_source(n)]
    return section("sources", "Sources", _table(items, now, "No sources configured."))


def render_all(components: dict[str, Any], now: float) -> str:
    items = [(n, c) for n, c in sorted(components.items()) if not is_source(n)]
    return section("components", "Components", _table(items, now, "No components yet."))
