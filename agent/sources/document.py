"""What a source hands on: named text documents, and whether a source is present at all.

A document's ``name`` decides how it is read (``*.yaml`` state documents, ``passwords.yaml``,
DMS's native ``postfix-accounts.cf`` …); ``origin`` says where it came from in messages, e.g.
``configmap mail/mail-state[mailserver.yaml]`` or a file path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # the default cap (sources[].maxDocumentBytes)


@dataclass(frozen=True, slots=True)
class SourceDocument:
    origin: str
    name: str
    text: str = field(repr=False)  # may hold secrets
    secret: bool = False
    # Why the document could not be read (not UTF-8, over the size cap, unreadable): it is then
    # a located error of its own; the source stays up and the set is not applied.
    problem: str | None = None
    problem_line: int | None = None


@dataclass(frozen=True, slots=True)
class SourceSnapshot:
    """One source's current content. ``documents is None``: the source is absent (deleted or
    not yet created) — that means "unknown", never "empty state"."""

    source: str
    documents: tuple[SourceDocument, ...] | None


def decode_document(
    origin: str, name: str, data: bytes, secret: bool, limit: int = MAX_DOCUMENT_BYTES
) -> SourceDocument:
    """A document from raw bytes; a problem (never a quote of the content) when unusable."""
    if len(data) > limit:
        problem = f"larger than the {limit}-byte document size cap (maxDocumentBytes)"
        return SourceDocument(origin, name, "", secret, problem)
    try:
        return SourceDocument(origin, name, data.decode("utf-8"), secret)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        problem = f"not UTF-8 text (the first invalid byte is in column {column})"
        return SourceDocument(origin, name, "", secret, problem, line)


def read_document(
    path: Path, name: str, origin: str, secret: bool, limit: int = MAX_DOCUMENT_BYTES
) -> SourceDocument:
    """Read one file, never more than ``limit`` + 1 bytes; an unreadable file is a problem."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise  # gone between listing and reading: the caller decides (re-read or skip)
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror or exc}"
        return SourceDocument(origin, name, "", secret, problem)
    return decode_document(origin, name, data, secret, limit)


def read_path(
    path: Path, secret: bool = False, limit: int = MAX_DOCUMENT_BYTES
) -> tuple[SourceDocument, ...] | None:
    """Read a folder (kubelet mount or plain) or a single file; None when it does not exist.

    In a kubelet mount the visible names are symlinks through ``..data``; reading them (and
    skipping every dot-entry) gives one consistent generation.
    """
    if path.is_file():
        return (read_document(path, path.name, str(path), secret, limit),)
    if not path.is_dir():
        return None
    docs = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            docs.append(read_document(entry, entry.name, str(entry), secret, limit))
        except FileNotFoundError:
            continue  # removed while listing: the watch reports the removal next
    return tuple(docs)
