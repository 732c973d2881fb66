"""Every place in agent/dns/checks.py that gives advice, and which of them a run reached.

A *site* is one ``Finding(...)`` call whose status is not ``P`` (a pass needs no advice),
named ``function#n`` (its n-th ``Finding`` call, in source order). ``tracing()`` records, for
each finding a run creates, the site that created it, so a test can tell which advice it has
applied — and fail when a site has no applied-fix test.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.dns import checks
from agent.dns.model import Finding

SOURCE = Path(checks.__file__)


@functools.cache
def sites() -> dict[str, tuple[str, int, int]]:
    """Every advising site: name -> (function, first line, last line)."""
    tree = ast.parse(SOURCE.read_text())
    out: dict[str, tuple[str, int, int]] = {}
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        calls = [
            node
            for node in ast.walk(func)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Finding"
        ]
        for n, call in enumerate(sorted(calls, key=lambda c: (c.lineno, c.col_offset)), 1):
            status = call.args[0] if call.args else None
            if isinstance(status, ast.Name) and status.id == "P":
                continue
            end = call.end_lineno or call.lineno
            out[f"{func.name}#{n}"] = (func.name, call.lineno, end)
    return out


def site_of(function: str, line: int) -> str | None:
    for name, (func, first, last) in sites().items():
        if func == function and first <= line <= last:
            return name
    return None


class Created:
    """Where each traced finding was made: ``created[id(finding)] = site``."""

    def __init__(self) -> None:
        self.created: dict[int, tuple[Finding, str | None]] = {}

    def site(self, finding: Finding) -> str | None:
        entry = self.created.get(id(finding))
        return entry[1] if entry and entry[0] is finding else None


@contextlib.contextmanager
def tracing() -> Iterator[Created]:
    """Findings made by ``agent.dns.checks`` while this is active remember their site."""
    record = Created()

    class Traced(Finding):
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            frame = sys._getframe(1)
            site = site_of(frame.f_code.co_name, frame.f_lineno)
            record.created[id(self)] = (self, site)

    original = checks.Finding
    checks.Finding = Traced  # type: ignore[misc]
    try:
        yield record
    finally:
        checks.Finding = original  # type: ignore[misc]
