"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import sys

from agent.errors import InvalidDocument
from agent.logs import setup_logging
from agent.settings import Settings, load_settings

EXIT_INVALID_SETTINGS = 2


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
