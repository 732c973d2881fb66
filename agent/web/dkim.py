"""DKIM per domain: which selector signs, the rotation's state, and the TXT records still to
publish (copy-ready), with the rotations that wait for DNS called out first."""

from __future__ import annotations

from typing import Any

from agent.web.markup import NONE, absent, badge, bullet_list, esc, headline, row, section, table
from agent.web.timefmt import when


def _published(value: object) -> str:
    if value is True:
        return "published"
    return "not published" if value is False else "unknown"


def _records(records: list[dict[str, Any]]) -> str:
    parts = []
    for r in records:
        published = r.get("published")
        line = f"{esc(r.get('selector', '?'))}: {esc(_published(published))}"
        if published is not True:  # what to publish; a published one is in the DNS table
            line += f'<pre class="fix">{esc(r.get("zoneLine", ""))}</pre>'
        parts.append(line)
    return "<br>".join(parts)


def _domain_row(name: str, d: dict[str, Any], now: float) -> str:
    rotation = badge(d.get("rotation", "unknown"))
    if d.get("step"):
        rotation += f" {esc(d['step'])}"
    if d.get("retiring"):
        rotation += f"; retiring {esc(d['retiring'])} {when(d.get('retireAfter'), now)}"
    signing = esc(d["signing"]) if d.get("signing") else NONE
    return row(esc(name), signing, rotation, _records(d.get("records") or []))


def render(component: dict[str, Any] | None, now: float) -> str:
    if component is None:
        return absent("dkim", "DKIM", "DKIM is not managed.")
    d = component.get("details") or {}
    domains: dict[str, Any] = d.get("domains") or {}
    backend = f" ({esc(d['backend'])})" if d.get("backend") else ""
    head = headline(component.get("state", "unknown"), component.get("message", ""), backend)
    waiting = [n for n, v in sorted(domains.items()) if v.get("rotation") == "waiting"]
    if waiting:
        head += "<h3>Rotations waiting for DNS</h3>" + bullet_list(esc(n) for n in waiting)
    rows = [_domain_row(n, v, now) for n, v in sorted(domains.items())]
    body = table(("domain", "signing", "rotation", "records"), rows, "No DKIM domains.")
    return section("dkim", "DKIM", head + body)
