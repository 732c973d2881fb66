"""``dms-agent validate FILE...``: check state, passwords and DMS files as the agent would."""

from __future__ import annotations

import argparse

from agent.errors import InvalidDocument
from agent.mailstate.load import desired_from_documents
from agent.sources.document import SourceDocument, read_path

EXIT_VALID = 0
EXIT_INVALID = 1


def run(args: argparse.Namespace) -> int:
    docs: list[SourceDocument] = []
    unreadable = False
    for path in args.files:
        try:
            found = read_path(path)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}")
            unreadable = True
            continue
        if found is None:
            print(f"{path}: cannot read: no such file or folder")
            unreadable = True
            continue
        docs.extend(found)
    try:
        desired = desired_from_documents(docs)
    except InvalidDocument as exc:
        for err in exc.errors:
            print(err)
        return EXIT_INVALID
    for warning in desired.warnings:
        print(f"warning: {warning}")
    for address, why in sorted(desired.pending.items()):
        print(f"pending: {address}: {why}")
    if unreadable:
        return EXIT_INVALID
    state = desired.state
    print(
        f"valid: {len(docs)} document(s), {len(state.domains)} domain(s), "
        f"{len(state.accounts)} account(s), {len(state.aliases)} alias(es), "
        f"{len(state.passwords)} password(s), {len(desired.pending)} pending"
    )
    return EXIT_VALID
