"""``dms-agent probe-script``: print the mailserver's fail-open livenessProbe."""

from __future__ import annotations

import argparse
import sys

from agent.checks.probe import (
    PROBE_SCRIPT,
    exec_command_json,
)


def run(args: argparse.Namespace) -> int:
    if args.exec:
        sys.stdout.write(exec_command_json(args.file, args.max_age) + "\n")
    else:
        sys.stdout.write(PROBE_SCRIPT)
    return 0
