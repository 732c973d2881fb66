"""``dms-agent run``: the main job."""

from __future__ import annotations

import argparse
import asyncio
import sys

from agent.commands.common import EXIT_INVALID_SETTINGS, settings_from_args
from agent.errors import CannotStart

EXIT_CANNOT_START = 69  # sysexits' EX_UNAVAILABLE: what the agent needs to serve is taken


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings is None:
        return EXIT_INVALID_SETTINGS
    from agent.app import run_agent

    try:
        asyncio.run(run_agent(settings, args.config))
    except CannotStart as exc:
        print(
            f"dms-agent: {exc} (another agent running? choose server.port in the settings "
            "or DMS_AGENT_SERVER__PORT)",
            file=sys.stderr,
        )
        return EXIT_CANNOT_START
    return 0
