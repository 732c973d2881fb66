"""A check's recent results as a small inline SVG: one bar per result, newest on the right,
passes short and green, failures tall and red. Two paths in all, so 48 results stay small."""

from __future__ import annotations

from collections.abc import Sequence

from agent.status import HISTORY_LENGTH
from agent.web.markup import NONE, esc

BAR = 4  # px per result (3 drawn, 1 gap)
HEIGHT = 16


def sparkline(history: Sequence[Sequence[object]]) -> str:
    """``history``: ``[unix time, passed]`` pairs, oldest first. Text beside it says the same."""
    recent = list(history)[-HISTORY_LENGTH:]
    if not recent:
        return NONE
    width = HISTORY_LENGTH * BAR
    start = width - len(recent) * BAR
    passes: list[str] = []
    fails: list[str] = []
    for i, (_, ok) in enumerate(recent):
        x = start + i * BAR + 1.5
        (passes if ok else fails).append(f"M{x:g} {'5v11' if ok else '0v16'}")
    failed = len(fails)
    text = f"{len(recent) - failed}/{len(recent)} passed"
    label = f"last {len(recent)} results: {text}, newest on the right"
    paths = "".join(
        f'<path class="{cls}" d="{"".join(d)}"/>' for cls, d in (("p", passes), ("f", fails)) if d
    )
    svg = (
        f'<svg class="h" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" '
        f'role="img" aria-label="{esc(label)}"><title>{esc(label)}</title>{paths}</svg>'
    )
    return f'{svg} <span class="n">{esc(text)}</span>'
