"""What `plan`, `apply` and `import` share: the desired state from path sources, the engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.commands.common import EXIT_INVALID_SETTINGS, settings_from_args
from agent.errors import InvalidDocument
from agent.mailstate.load import desired_from_documents
from agent.mailstate.model import Desired
from agent.reconcile.reconciler import Engine
from agent.settings import Settings
from agent.sources.document import SourceDocument, read_path

EXIT_ERROR = 1


def read_desired(settings: Settings, override: list[Path] | None) -> Desired | None:
    """Load and validate the documents; print located errors and return None if invalid."""
    docs: list[SourceDocument] = []
    if override:
        specs = [(p, False) for p in override]
    else:
        specs = []
        for src in settings.sources:
            if src.kind != "path":
                print(
                    f"error: source kind {src.kind} is read by `dms-agent run`; "
                    "give the documents with --source PATH",
                    file=sys.stderr,
                )
                return None
            assert src.path is not None
            specs.append((src.path, src.secret))
    if not specs:
        print("error: no sources: set `sources:` in the settings or use --source", file=sys.stderr)
        return None
    for path, secret in specs:
        found = read_path(path, secret)
        if found is None:
            # an absent source means "unknown", never "empty": refuse to plan deletions from it
            print(f"error: {path}: no such file or folder", file=sys.stderr)
            return None
        docs.extend(found)
    try:
        return desired_from_documents(docs)
    except InvalidDocument as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return None


def make_engine(settings: Settings) -> Engine:
    if settings.dms.executor.kind == "file":  # no DMS: the agent's wiring is not needed
        return Engine(settings, None)
    from agent.app import build_executor

    return Engine(settings, build_executor(settings))


def config_dir_missing(settings: Settings) -> bool:
    """True (after saying so) when ``dms.configDir`` is set but is no folder: a one-shot
    command never creates it, so a mistyped path is an error, not a new empty DMS."""
    folder = settings.dms.config_dir
    if folder is None or folder.is_dir():
        return False
    print(
        f"error: dms.configDir {folder}: no such folder (check the path; "
        "plan, apply and import never create it)",
        file=sys.stderr,
    )
    return True


def settings_and_desired(args: argparse.Namespace) -> tuple[Settings, Desired] | int:
    """The settings and the declared state a one-shot command works on, or its exit code."""
    settings = settings_from_args(args)
    if settings is None:
        return EXIT_INVALID_SETTINGS
    if config_dir_missing(settings):
        return EXIT_ERROR
    desired = read_desired(settings, args.source)
    if desired is None:
        return EXIT_ERROR
    return settings, desired
