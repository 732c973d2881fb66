"""Merge: the latest snapshot of every source -> one validated desired state on ``hub.desired``.

- Every configured source must be present: an absent one (deleted object, missing folder,
  selector matching nothing) means "unknown", so nothing is published until it is back — a
  missing Secret must never read as "no passwords" or a missing ConfigMap as "no accounts".
- The state loader validates all documents together (a duplicate across two objects is its
  error, naming both origins). Invalid input: the last good state stays in force, the errors go
  to the log, /status and an Event (without the text of secret documents).
- A digest of the merged input makes every published state a distinct generation: re-reads,
  re-lists and flip-flops back to the state in force publish nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from agent.errors import InvalidDocument, LocatedError
from agent.events import EventSink
from agent.hub import Hub
from agent.mailstate.model import Desired
from agent.sources.base import digest
from agent.sources.document import SourceDocument, SourceSnapshot
from agent.sources.metrics import GENERATION, MERGES, PUBLISHED_AT
from agent.status import State, StatusRegistry

log = logging.getLogger("dms_agent.sources.merge")

Loader = Callable[[Sequence[SourceDocument]], Desired]


def state_loader() -> Loader:
    """The mail state loader, imported when first needed (it is the heavier part)."""
    from agent.mailstate.load import desired_from_documents

    return desired_from_documents


class Merge:
    name = "sources merge"

    def __init__(
        self,
        expected: Sequence[str],
        hub: Hub,
        status: StatusRegistry,
        events: EventSink,
        loader: Loader | None = None,
    ) -> None:
        self.expected = list(expected)
        self.hub = hub
        self.events = events
        self.entry = status.component(self.name)
        self._loader = loader
        self.last_input: str | None = None  # the last input considered (valid or not)
        self.in_force: str | None = None  # the input of the published state
        self.generation = 0
        self.rejected = False  # the last input considered was rejected: say when one is accepted

    @property
    def loader(self) -> Loader:
        if self._loader is None:
            self._loader = state_loader()
        return self._loader

    async def run(self) -> None:
        version = 0
        self.entry.set(State.STARTING, "waiting for sources", expected=self.expected)
        while True:
            version, board = await self.hub.documents.wait_newer(version)
            await self.consider(board if isinstance(board, dict) else {})

    async def consider(self, board: Mapping[str, SourceSnapshot]) -> bool:
        """Validate and publish the merged input if it is complete and new; True if published."""
        absent = [k for k in self.expected if k not in board or board[k].documents is None]
        if absent:
            MERGES.labels("waiting").inc()
            self.entry.set(
                State.DEGRADED,
                "source absent, state unknown: nothing published ("
                + ", ".join(absent)
                + "); the last good state stays in force",
                absent=absent,
            )
            return False
        docs = tuple(d for k in self.expected for d in board[k].documents or ())
        key = digest(docs)
        if key in (self.last_input, self.in_force):
            self.last_input = key
            MERGES.labels("unchanged").inc()
            if key == self.in_force and self.rejected:  # the bad edit was undone
                self._accepted(len(docs), "the state in force again")
            if key == self.in_force:
                self.entry.set(State.OK, "published", generation=self.generation, absent=[])
            return False
        self.last_input = key
        unreadable = [
            LocatedError(d.origin, d.problem_line, "", d.problem) for d in docs if d.problem
        ]
        if unreadable:
            self._rejected(unreadable, docs)
            return False
        try:
            desired = await asyncio.to_thread(self.loader, docs)
        except InvalidDocument as exc:
            self._rejected(exc.errors, docs)
            return False
        except Exception as exc:  # a loader bug must not drop the last good state either
            log.exception("state loader failed; the last good state stays in force")
            self._rejected([LocatedError("(state loader)", None, "", repr(exc))], docs)
            return False
        if not desired.generation:
            desired.generation = key[:16]
        current = self.hub.desired.value
        if current is not None and getattr(current, "generation", None) == desired.generation:
            self.in_force = key  # e.g. this component restarted: the same state is in force
            self.entry.set(State.OK, "published", generation=self.generation, absent=[])
            return False
        self.in_force = key
        self.generation += 1
        GENERATION.set(self.generation)
        PUBLISHED_AT.set(time.time())
        self.hub.desired.set(desired)
        self._accepted(len(docs), f"generation {self.generation}")
        self.entry.set(
            State.OK,
            "published",
            generation=self.generation,
            digest=desired.generation,
            documents=len(docs),
            absent=[],
            errors=[],
        )
        return True

    def _accepted(self, documents: int, what: str) -> None:
        if self.rejected:
            log.info("desired state accepted after the rejected version: %d document(s), %s",
                     documents, what)  # fmt: skip
        else:
            log.info("desired state accepted: %d document(s), %s", documents, what)
        self.rejected = False

    def _rejected(self, errors: list[LocatedError], docs: Sequence[SourceDocument]) -> None:
        self.rejected = True
        MERGES.labels("invalid").inc()
        secret_origins = {d.origin for d in docs if d.secret}
        shown = [_safe(e, secret_origins) for e in errors]
        for line in shown:
            log.error("desired state rejected, the last good one stays in force: %s", line)
        self.entry.set(
            State.DEGRADED,
            f"input rejected ({len(errors)} errors); the last good state stays in force",
            errors=shown[:20],
        )
        first = shown[0] if shown else "no detail"
        self.events.emit("Invalid", f"{len(errors)} error(s), first: {first}", "Warning")


def _safe(error: LocatedError, secret_origins: set[str]) -> str:
    """A secret document's error keeps its location, not its message (it may quote a value)."""
    if error.file in secret_origins:
        where = f"{error.file}:{error.line}" if error.line is not None else error.file
        return f"{where}: {error.field or '(document)'}: invalid (details withheld: secret)"
    return str(error)
