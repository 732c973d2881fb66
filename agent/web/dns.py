"""Per domain, every DNS check: verdict, what was found, what was expected, and the fix as a
record a person can copy. Domains come worst first; failing ones open, the rest fold (an
optional record missing everywhere must not bury the one domain that is broken)."""

from __future__ import annotations

from typing import Any

from agent.web.markup import absent, badge, code, esc, headline, row, section, table
from agent.web.timefmt import when

_ORDER = {"fail": 0, "error": 1, "warn": 2, "pass": 3}
PASS_LIMIT = 60  # a passing value is shortened (a DKIM key is ~400 characters); problems never


def _fixes(fixes: list[Any]) -> str:
    return "".join(f'<pre class="fix">{esc(f)}</pre>' for f in fixes)


def _check_row(name: str, c: dict[str, Any]) -> str:
    status = c.get("status", "error")
    found, expected = str(c.get("found", "")), str(c.get("expected", ""))
    if status == "pass":
        shown = code(found, PASS_LIMIT)
        wanted = "" if expected == found else code(expected, PASS_LIMIT)
        return row(esc(name), badge(status), shown, wanted, "")
    verdict = f"{badge(status)} {esc(c.get('message', ''))}"
    return row(esc(name), verdict, code(found), code(expected), _fixes(c.get("fixes") or []))


def _table(report: dict[str, Any]) -> str:
    rows = [_check_row(n, c) for n, c in (report.get("checks") or {}).items()]
    return table(("check", "verdict", "found", "expected", "fix"), rows)


class TableCache:
    """The domains' tables for the ``domains`` mapping last seen, reused while it is the same
    object: the DNS component publishes a new mapping per run (hourly by default), so between
    runs only the relative times are rendered anew. Holding the mapping keeps identity sound."""

    def __init__(self) -> None:
        self._source: object = None
        self._tables: dict[str, str] = {}

    def tables(self, domains: dict[str, Any]) -> dict[str, str]:
        if domains is not self._source:
            self._tables = {name: _table(report) for name, report in domains.items()}
            self._source = domains
        return self._tables


def _domain(name: str, status: str, table_html: str) -> str:
    opened = " open" if status in ("fail", "error") else ""  # a warning alone stays folded
    return (
        f'<details id="dns-{esc(name)}"{opened}><summary><h3>{esc(name)} {badge(status)}</h3>'
        f"</summary>{table_html}</details>"
    )


def render(component: dict[str, Any] | None, now: float, cache: TableCache | None = None) -> str:
    if component is None:
        return absent("dns", "DNS", "DNS checks are not running.")
    d = component.get("details") or {}
    last_run = f" (last run {when(d['lastRun'], now)})" if d.get("lastRun") else ""
    head = headline(component.get("state", "unknown"), component.get("message", ""), last_run)
    domains: dict[str, Any] = d.get("domains") or {}
    tables = (cache or TableCache()).tables(domains)
    order = sorted(domains.items(), key=lambda i: (_ORDER.get(i[1].get("status"), 1), i[0]))
    body = "".join(_domain(n, r.get("status", "error"), tables[n]) for n, r in order)
    return section("dns", "DNS", head + body)
