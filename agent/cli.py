"""``dms-agent`` command line. Each sub-command lives in ``agent/commands/<name>.py``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agent import __version__

# Modules under agent/commands, in the order --help lists them. Each has register(subparsers).
COMMANDS = [
    "run",
    "plan",
    "apply",
    "takeover",
    "validate",
    "schema",
    "dkim",
    "check_dns",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dms-agent",
        description=(
            "Sidecar for docker-mailserver: keeps accounts, aliases, quotas and DKIM equal to a "
            "declared state, checks the mailserver and its DNS, and serves health and metrics."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dms-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"agent.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
