"""``dms-agent probe-script``: print the mailserver's fail-open livenessProbe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.checks.probe import (
    DEFAULT_MAX_AGE,
    DEFAULT_VERDICT_FILE,
    PROBE_SCRIPT,
    exec_command_json,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "probe-script",
        help="print the mailserver's livenessProbe (fails only on a fresh 'unhealthy')",
        description=(
            "Print the POSIX sh script the mailserver container runs as its livenessProbe. It "
            "reads the verdict file the agent writes (checks.verdictFile, on a volume both "
            "containers mount) and fails only when that file says 'unhealthy' and is fresh; "
            "a missing or stale file (agent absent) passes."
        ),
    )
    p.add_argument(
        "--exec",
        action="store_true",
        help="print a JSON exec.command embedding the script instead of the script",
    )
    p.add_argument("--file", type=Path, default=DEFAULT_VERDICT_FILE, help="the verdict file")
    p.add_argument(
        "--max-age", type=int, default=DEFAULT_MAX_AGE, help="seconds a verdict stays fresh"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.exec:
        sys.stdout.write(exec_command_json(args.file, args.max_age) + "\n")
    else:
        sys.stdout.write(PROBE_SCRIPT)
    return 0
