"""``dms-agent import``: write state and passwords documents from an existing DMS."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from agent.commands.common import EXIT_INVALID_SETTINGS, add_settings_options, settings_from_args
from agent.commands.state import EXIT_ERROR, make_engine
from agent.dms.takeover import passwords_document, state_document
from agent.reconcile.ledger import atomic_write
from agent.reconcile.reconciler import ReconcileError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        help="write a state document and a passwords document (existing hashes) from DMS",
        description=(
            "Take over a DMS with hand-made accounts: the documents describe what DMS has now, "
            "so applying them changes nothing (accounts are adopted, passwords untouched)."
        ),
    )
    add_settings_options(p)
    p.add_argument("--output-dir", "-o", type=Path, required=True, metavar="DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing documents")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings is None:
        return EXIT_INVALID_SETTINGS
    out: Path = args.output_dir
    targets = (out / "mailserver.yaml", out / "passwords.yaml")
    if not args.force and any(t.exists() for t in targets):
        print(f"error: {out} already holds documents (use --force)", file=sys.stderr)
        return EXIT_ERROR
    folder = settings.dms.config_dir
    if folder is not None and not folder.is_dir():
        # never "imported 0 accounts" from a mistyped path
        print(f"error: DMS's config folder {folder} does not exist", file=sys.stderr)
        return EXIT_ERROR
    try:
        actual = asyncio.run(make_engine(settings).observe())
    except ReconcileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if actual.hashes is None:
        print("warning: no config folder: the passwords document has no hashes", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(targets[0], state_document(actual), mode=0o644)
    atomic_write(targets[1], passwords_document(actual), mode=0o600)
    n = len(actual.state.accounts)
    print(f"imported {n} accounts, {len(actual.state.aliases)} aliases into {out}")
    return 0
