"""Merge: the latest snapshot of every source -> one validated desired state on ``hub.desired``.

- Every configured source must be present: an absent one (deleted object, missing folder,
  selector matching nothing) means "unknown", so nothing is published until it is back — a
  missing Secret must never read as "no passwords" or a missing ConfigMap as "no accounts".
- The state loader validates all documents together (a duplicate across two objects is its
  error, naming both origins). A file with errors is rejected alone: its last good version
  (none, if it is new) stands in for it, the other files apply, and deletions wait until it is
  fixed. Errors no file can be blamed for keep the whole last good state in force. Either way
  the errors go to the log, /status and an Event (without the text of secret documents).
- A digest of the merged input makes every published state a distinct generation: re-reads,
  re-lists and flip-flops back to the state in force publish nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

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
# Documents up to this size (~150 accounts with their passwords) are loaded on the loop: ~2 ms
# at most, less than a worker thread's hand-offs cost on an update's path; bigger ones in a thread.
INLINE_CHARS = 24 * 1024


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
        self.partial = False  # the state in force holds last good versions of broken files
        self.good: dict[str, SourceDocument] = {}  # each document of the state in force

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
        # A partial state in force is not "the same" as its input made whole again: the
        # deletions it withheld must come back, so that input is loaded afresh.
        if key == self.last_input or (key == self.in_force and not self.partial):
            self.last_input = key
            MERGES.labels("unchanged").inc()
            if key == self.in_force and self.rejected:  # the bad edit was undone
                self._accepted(len(docs), "the state in force again")
            if key == self.in_force:
                self.entry.set(State.OK, "published", generation=self.generation, absent=[])
            return False
        self.last_input = key
        try:
            desired = await self._load(docs)
        except _Rejected as whole:
            return await self._consider_partial(docs, whole.errors)
        self.partial = False
        published = self._publish(desired, docs, key)  # key: digest(docs), made once
        if published or self.rejected:
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
        return published

    async def _load(self, docs: Sequence[SourceDocument]) -> Desired:
        """The loader's verdict on ``docs``; every error (a located one) raised as _Rejected."""
        unreadable = [
            LocatedError(d.origin, d.problem_line, "", d.problem) for d in docs if d.problem
        ]
        if unreadable:
            raise _Rejected(unreadable)
        try:
            if sum(len(d.text) for d in docs) <= INLINE_CHARS:
                return self.loader(docs)
            return await asyncio.to_thread(self.loader, docs)
        except InvalidDocument as exc:
            raise _Rejected(exc.errors) from None
        except Exception as exc:  # a loader bug must not drop the last good state either
            log.exception("state loader failed; the last good state stays in force")
            raise _Rejected([LocatedError("(state loader)", None, "", repr(exc))]) from None

    async def _consider_partial(
        self, docs: tuple[SourceDocument, ...], errors: list[LocatedError]
    ) -> bool:
        """Apply the files that are fine, each broken one at its last good version.

        Only when every error is located in a document. Deletions are withheld meanwhile: an
        account moved into a file that is now broken would otherwise read as removed.
        """
        partial = await self._without_broken(docs, errors)
        if partial is None:
            self._rejected(errors, docs)
            return False
        desired, used, broken = partial
        self._report_broken(errors, docs, broken)
        used_key = digest(used)
        if used_key == self.in_force:  # the broken files were new or their edits all failed
            MERGES.labels("invalid").inc()
            return False
        desired.state.policy = replace(desired.state.policy, prune=False)
        desired.generation = f"{desired.generation or used_key[:16]}-partial"  # not the whole one
        desired.warnings.append(
            f"{len(broken)} file(s) rejected, their last good version in force: "
            "deletions wait until they are fixed"
        )
        self.partial = True
        MERGES.labels("partial").inc()
        return self._publish(desired, used, used_key)

    async def _without_broken(
        self, docs: tuple[SourceDocument, ...], errors: list[LocatedError]
    ) -> tuple[Desired, tuple[SourceDocument, ...], set[str]] | None:
        origins = {d.origin for d in docs}
        broken: set[str] = set()
        while True:
            located = {e.file for e in errors}
            if not located <= origins or located <= broken:
                return None  # an error outside any file, or no progress: the whole set waits
            broken |= located
            if broken == origins:
                return None  # nothing intact to apply
            used = tuple(
                self.good[d.origin] if d.origin in broken else d
                for d in docs
                if d.origin not in broken or d.origin in self.good
            )
            try:
                return await self._load(used), used, broken
            except _Rejected as again:  # e.g. a good file names an account of a broken one
                errors = again.errors

    def _publish(
        self, desired: Desired, used: tuple[SourceDocument, ...], key: str | None = None
    ) -> bool:
        key = key or digest(used)
        if not desired.generation:
            desired.generation = key[:16]
        self.good = {d.origin: d for d in used}
        current = self.hub.desired.value
        self.in_force = key
        if current is not None and getattr(current, "generation", None) == desired.generation:
            return False  # e.g. this component restarted: the same state is in force
        self.generation += 1
        GENERATION.set(self.generation)
        PUBLISHED_AT.set(time.time())
        MERGES.labels("published").inc()
        self.hub.desired.set(desired)
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
        shown = self._shown(errors, docs)
        for line in shown:
            log.error("desired state rejected, the last good one stays in force: %s", line)
        self.entry.set(
            State.DEGRADED,
            f"input rejected ({len(errors)} errors); the last good state stays in force",
            errors=shown[:20],
        )
        first = shown[0] if shown else "no detail"
        self.events.emit("Invalid", f"{len(errors)} error(s), first: {first}", "Warning")

    def _report_broken(
        self, errors: list[LocatedError], docs: Sequence[SourceDocument], broken: set[str]
    ) -> None:
        self.rejected = True
        shown = self._shown(errors, docs)
        for line in shown:
            log.error("file rejected, its last good version stays in force: %s", line)
        self.entry.set(
            State.DEGRADED,
            f"{len(broken)} file(s) rejected ({len(errors)} errors), their last good version "
            "stays in force; the other files applied, deletions wait until they are fixed",
            errors=shown[:20],
            rejected_files=sorted(broken),
            generation=self.generation,
        )
        first = shown[0] if shown else "no detail"
        self.events.emit(
            "Invalid", f"{len(broken)} file(s) rejected, {len(errors)} error(s), first: {first}",
            "Warning",
        )  # fmt: skip

    @staticmethod
    def _shown(errors: list[LocatedError], docs: Sequence[SourceDocument]) -> list[str]:
        secret_origins = {d.origin for d in docs if d.secret}
        return [_safe(e, secret_origins) for e in errors]


class _Rejected(Exception):
    def __init__(self, errors: list[LocatedError]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


def _safe(error: LocatedError, secret_origins: set[str]) -> str:
    """A secret document's error keeps its location, not its message (it may quote a value)."""
    if error.file in secret_origins:
        where = f"{error.file}:{error.line}" if error.line is not None else error.file
        return f"{where}: {error.field or '(document)'}: invalid (details withheld: secret)"
    return str(error)
