"""``dms-agent import``: write state and passwords documents from an existing DMS."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from agent.commands.common import EXIT_INVALID_SETTINGS, settings_from_args
from agent.commands.state import EXIT_ERROR, config_dir_missing, make_engine
from agent.dms.takeover import passwords_document, state_document
from agent.fsio import write_file
from agent.reconcile.reconciler import ReconcileError


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings is None:
        return EXIT_INVALID_SETTINGS
    if config_dir_missing(settings):
        return EXIT_ERROR
    out: Path = args.output_dir
    targets = (out / "mailserver.yaml", out / "passwords.yaml")
    if not args.force and any(t.exists() for t in targets):
        print(f"error: {out} already holds documents (use --force)", file=sys.stderr)
        return EXIT_ERROR
    try:
        actual = asyncio.run(make_engine(settings).observe())
    except ReconcileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if actual.hashes is None:
        print("warning: no config folder: the passwords document has no hashes", file=sys.stderr)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_file(targets[0], state_document(actual), mode=0o644)
        write_file(targets[1], passwords_document(actual), mode=0o600)
    except OSError as exc:
        print(f"error: {exc.filename or out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    n = len(actual.state.accounts)
    print(f"imported {n} accounts, {len(actual.state.aliases)} aliases into {out}")
    return 0
