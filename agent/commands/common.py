"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.errors import InvalidDocument
from agent.logs import setup_logging
from agent.settings import Settings, load_settings

EXIT_INVALID_SETTINGS = 2


def add_settings_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        help="the agent's settings file (YAML); DMS_AGENT_* variables override it",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"], help="text (default) or json lines")


def settings_from_args(args: argparse.Namespace) -> Settings | None:
    """Load settings and set up logging; print located errors and return None if invalid."""
    try:
        settings = load_settings(args.config)
    except InvalidDocument as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return None
    level = args.log_level or settings.logging.level
    fmt = args.log_format or settings.logging.format
    setup_logging(level, fmt)
    return settings
