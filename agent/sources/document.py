"""What a source hands on: named text documents, and whether a source is present at all.

A document's ``name`` decides how it is read (``*.yaml`` state documents, ``passwords.yaml``,
DMS's native ``postfix-accounts.cf`` …); ``origin`` says where it came from in messages, e.g.
``configmap mail/mail-state[mailserver.yaml]`` or a file path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SourceDocument:
    origin: str
    name: str
    text: str = field(repr=False)  # may hold secrets
    secret: bool = False
    # Why the content could not be read as text (e.g. a binaryData key that is not UTF-8):
    # the merge refuses the whole input with this, located at ``origin``.
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class SourceSnapshot:
    """One source's current content. ``documents is None``: the source is absent (deleted or
    not yet created) — that means "unknown", never "empty state"."""

    source: str
    documents: tuple[SourceDocument, ...] | None


def read_path(path: Path, secret: bool = False) -> tuple[SourceDocument, ...] | None:
    """Read a folder (kubelet mount or plain) or a single file; None when it does not exist.

    In a kubelet mount the visible names are symlinks through ``..data``; reading them (and
    skipping every dot-entry) gives one consistent generation.
    """
    if path.is_file():
        return (SourceDocument(str(path), path.name, path.read_text(encoding="utf-8"), secret),)
    if not path.is_dir():
        return None
    docs = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        text = entry.read_text(encoding="utf-8")
        docs.append(SourceDocument(str(entry), entry.name, text, secret))
    return tuple(docs)
