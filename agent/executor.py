"""How `setup` and other commands reach the mailserver: one interface, several transports.

``run`` never raises for a command's failure: it returns a Result. ``exit_code is None`` means
the outcome is unknown (stream lost, no status): the caller must observe again, never retry
blindly (design: Commands).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Result:
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float  # seconds, measured inside the executor
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def unknown(self) -> bool:
        return self.exit_code is None


class Executor(Protocol):
    """Runs one command at a time in the mailserver's environment."""

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result: ...
