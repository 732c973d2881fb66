"""Small HTML builders shared by the page's sections. Every value goes through ``esc``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from html import escape

# a word from any component (state, verdict, DNS status, LB result) -> its colour class
_TONES = {
    "ok": "ok",
    "healthy": "ok",
    "pass": "ok",
    "passing": "ok",
    "applied": "ok",
    "noop": "ok",
    "stable": "ok",
    "degraded": "warn",
    "warn": "warn",
    "remediating": "warn",
    "partial": "warn",
    "waiting": "warn",
    "grace": "warn",
    "generating": "warn",
    "failed": "bad",
    "failing": "bad",
    "unhealthy": "bad",
    "fail": "bad",
    "error": "bad",
    "mismatch": "bad",
}


NONE = "&ndash;"  # an empty cell, as HTML


_SPECIAL = re.compile(r"[&<>\"']")


def esc(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    # most values (names, states, records) need no escaping: one C-level scan says so
    return escape(text, quote=True) if _SPECIAL.search(text) else text


def tone(word: object) -> str:
    return _TONES.get(str(word), "off")


def badge(word: object) -> str:
    """A coloured word; the word itself carries the meaning (colour is only a hint)."""
    return _badge(str(word))


@lru_cache(maxsize=256)  # a small set of words in practice (states, verdicts, results)
def _badge(word: str) -> str:
    return f'<b class="t {tone(word)}">{esc(word)}</b>'


def code(value: object, limit: int | None = None) -> str:
    text = str(value)
    if not text:
        return ""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"<code>{esc(text)}</code>"


def table(head: Iterable[str], rows: list[str], empty: str = "none") -> str:
    """``rows`` are ready ``<tr>`` strings; an empty table is a sentence instead."""
    if not rows:
        return f'<p class="none">{esc(empty)}</p>'
    ths = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    body = "".join(rows)
    inner = f"<thead><tr>{ths}</tr></thead><tbody>{body}</tbody>"
    return f'<div class="scroll"><table>{inner}</table></div>'


def row(*cells: str) -> str:
    """Cells are HTML already (escape values with ``esc``); the first is the row's header."""
    first, *rest = cells
    return f'<tr><th scope="row">{first}</th>{"".join(f"<td>{c}</td>" for c in rest)}</tr>'


def bullet_list(items: Iterable[str]) -> str:
    """``items`` are HTML already."""
    lis = "".join(f"<li>{i}</li>" for i in items)
    return f"<ul>{lis}</ul>" if lis else ""


def section(anchor: str, title: str, body: str, summary: str = "") -> str:
    lead = f" {summary}" if summary else ""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}{lead}</h2>{body}</section>'


def absent(anchor: str, title: str, why: str) -> str:
    """The section of a component that is not running."""
    return section(anchor, title, f'<p class="none">{esc(why)}</p>')


def headline(word: object, message: object, after: str = "") -> str:
    """A component's state word and message; ``after`` is HTML already."""
    return f"<p>{badge(word)} {esc(message)}{after}</p>"
