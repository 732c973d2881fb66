"""Times for people: "3 min ago", with the absolute UTC time on hover (computed here, so it
works without script and in a text browser)."""

from __future__ import annotations

import time

from agent.web.markup import NONE, esc

_UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def relative(t: float, now: float) -> str:
    delta = now - t
    span = abs(delta)
    if span < 5:
        return "just now"
    for size, unit in _UNITS:
        if span >= size:
            amount = f"{int(span // size)} {unit}"
            return f"{amount} ago" if delta > 0 else f"in {amount}"
    return "just now"  # unreachable: the last unit is one second


def absolute(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def when(t: object, now: float) -> str:
    """A ``<time>`` element, or a dash when ``t`` is not a time."""
    if not isinstance(t, int | float) or isinstance(t, bool):
        return NONE
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return f'<time datetime="{stamp}" title="{absolute(t)}">{esc(relative(t, now))}</time>'
