"""Shared, observable values that connect components without coupling them.

A producer ``set()``s a value; consumers ``await wait_newer(version)``. This is the in-process
equivalent of kopf's per-object queues, reduced to what a single-pod agent needs: the latest
value wins (coalescing is built in), and nobody polls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Observable(Generic[T]):
    def __init__(self, initial: T) -> None:
        self._value = initial
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def value(self) -> T:
        return self._value

    @property
    def version(self) -> int:
        return self._version

    def set(self, value: T) -> None:
        self._value = value
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_newer(self, version: int) -> tuple[int, T]:
        """Return (version, value) as soon as the version is above ``version``."""
        while self._version <= version:
            await self._changed.wait()
        return self._version, self._value


@dataclass(slots=True)
class Hub:
    """The values components share. Types are filled in by the capabilities that own them.

    - ``documents``: the latest raw documents of every source (sources -> merge)
    - ``desired``: the latest valid desired mail state (merge -> reconcile, dns, dkim)
    - ``check_results``: liveness check results by name (checks -> lb, status)
    - ``dns_results``: DNS check results by domain (dns -> dkim)
    - ``resync``: bumped to ask the reconciler for an immediate pass
    - ``shutting_down``: set True when the agent stops for good (SIGTERM), before components
      are cancelled — so a component can tell shutdown from a settings reload
    """

    documents: Observable[Any] = field(default_factory=lambda: Observable(None))
    desired: Observable[Any] = field(default_factory=lambda: Observable(None))
    check_results: Observable[dict[str, Any]] = field(default_factory=lambda: Observable({}))
    dns_results: Observable[dict[str, Any]] = field(default_factory=lambda: Observable({}))
    resync: Observable[int] = field(default_factory=lambda: Observable(0))
    shutting_down: Observable[bool] = field(default_factory=lambda: Observable(False))
