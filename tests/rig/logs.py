"""Daemon logs in the report of a failing test: fixtures register their daemons with
``keep_logs(request, daemon)``; a failing test's report then carries each daemon's log."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from tests.rig.proc import Daemon

DAEMONS = pytest.StashKey[list[Daemon]]()
MAX_LOG = 20_000


def keep_logs(request: pytest.FixtureRequest, daemon: Daemon) -> None:
    request.node.stash.setdefault(DAEMONS, []).append(daemon)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for daemon in item.stash.get(DAEMONS, []):
            try:
                text = daemon.logs()
            except (OSError, ValueError):
                continue
            report.sections.append((f"{daemon.name} log", text[-MAX_LOG:]))
