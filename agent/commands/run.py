"""``dms-agent run``: the main job."""

from __future__ import annotations

import argparse
import asyncio

from agent.commands.common import EXIT_INVALID_SETTINGS, add_settings_options, settings_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the agent: watch sources, reconcile, check, serve health and metrics",
        description=(
            "Run until SIGTERM/SIGINT. SIGHUP or a change of the settings file reloads the "
            "settings; an invalid new file is rejected and the running settings stay."
        ),
    )
    add_settings_options(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings is None:
        return EXIT_INVALID_SETTINGS
    from agent.app import run_agent

    asyncio.run(run_agent(settings, args.config))
    return 0
