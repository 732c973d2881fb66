"""``dms-agent run``: the main job."""

from __future__ import annotations

import argparse
import asyncio

from agent.commands.common import EXIT_INVALID_SETTINGS, settings_from_args


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings is None:
        return EXIT_INVALID_SETTINGS
    from agent.app import run_agent

    asyncio.run(run_agent(settings, args.config))
    return 0
