"""``dms-agent validate FILE...``: check state, passwords and DMS files as the agent would."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.errors import InvalidDocument
from agent.mailstate.load import desired_from_documents
from agent.sources.document import SourceDocument, read_path

EXIT_VALID = 0
EXIT_INVALID = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="check state/passwords documents and DMS files; exit 0 valid, 1 invalid",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Check documents exactly as the agent reads a source: each file on its own, then\n"
            "all of them merged (an account, alias or password declared twice is an error\n"
            "naming both places).\n\n"
            "How a file is read depends on its name:\n"
            "  *.yaml|*.yml naming 'password'   passwords: address: {password: ...} | {hash: ...}\n"
            "  other *.yaml|*.yml               state document (apiVersion: dms-agent/v1)\n"
            "  postfix-accounts.cf, postfix-virtual.cf, dovecot-quotas.cf,\n"
            "  postfix-send-access.cf, postfix-receive-access.cf   DMS's own formats\n"
            "A folder stands for the files in it (as a mounted ConfigMap would).\n\n"
            "Output: one 'FILE:LINE: field: message' line per error; warnings start with\n"
            "'warning:', accounts without a password with 'pending:'. No password is printed.\n"
            "Exit: 0 valid (warnings allowed), 1 invalid or unreadable, 2 bad usage."
        ),
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="file or folder")
    p.set_defaults(func=run)


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
