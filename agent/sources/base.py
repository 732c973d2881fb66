"""What every source shares: hand a snapshot to the merge, only when its content changed.

Sources publish into ``hub.documents``, whose value is a mapping source-key -> SourceSnapshot
(the merge component reads it). The content digest covers origins, names and texts, so a
re-read or a re-list that finds the same content hands nothing on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

from agent.hub import Hub
from agent.sources.document import SourceDocument, SourceSnapshot
from agent.sources.metrics import LAST_EVENT, PRESENT, SNAPSHOTS


def digest(documents: tuple[SourceDocument, ...] | None) -> str:
    """A digest of a snapshot's content; absent and empty differ."""
    if documents is None:
        return "absent"
    h = hashlib.sha256()
    for doc in documents:
        for part in (doc.origin, doc.name, doc.text, "1" if doc.secret else "0", doc.problem or ""):
            h.update(part.encode("utf-8", "surrogateescape"))
            h.update(b"\0")
    return h.hexdigest()


def snapshots(hub: Hub) -> Mapping[str, SourceSnapshot]:
    value = hub.documents.value
    return value if isinstance(value, dict) else {}


class Publisher:
    """Publishes one source's snapshots into the hub, skipping unchanged ones."""

    def __init__(self, key: str, hub: Hub) -> None:
        self.key = key
        self.hub = hub
        self.last_digest: str | None = None

    def mark_event(self) -> None:
        LAST_EVENT.labels(self.key).set(time.time())

    def publish(self, documents: tuple[SourceDocument, ...] | None) -> bool:
        """Hand ``documents`` on if they differ from the last ones; True when handed on."""
        d = digest(documents)
        if d == self.last_digest:
            SNAPSHOTS.labels(self.key, "unchanged").inc()
            return False
        self.last_digest = d
        SNAPSHOTS.labels(self.key, "changed").inc()
        PRESENT.labels(self.key).set(0 if documents is None else 1)
        board = dict(snapshots(self.hub))
        board[self.key] = SourceSnapshot(self.key, documents)
        self.hub.documents.set(board)
        return True
