"""``dms-agent probe-script``: print the mailserver's fail-open livenessProbe."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from agent.checks.probe import (
    DEFAULT_MAX_AGE,
    DEFAULT_VERDICT_FILE,
    PROBE_SCRIPT,
    exec_command_json,
)


def script_for(verdict_file: Path, max_age: int) -> str:
    """The script with ``verdict_file`` and ``max_age`` as its defaults (its arguments still
    override them, as the exec form passes them)."""
    file_default = "${1:-" + shlex.quote(str(verdict_file)) + "}"
    replacements = [
        (f"${{1:-{DEFAULT_VERDICT_FILE}}}", file_default),
        (f"${{2:-{DEFAULT_MAX_AGE}}}", f"${{2:-{max_age}}}"),
        (f"max_age={DEFAULT_MAX_AGE} ;;", f"max_age={max_age} ;;"),
    ]
    text = PROBE_SCRIPT
    for old, new in replacements:
        if old not in text:  # the script changed shape: refuse rather than print a wrong one
            raise RuntimeError(f"probe script has no {old!r} to set")
        text = text.replace(old, new)
    return text


def run(args: argparse.Namespace) -> int:
    if args.exec:
        sys.stdout.write(exec_command_json(args.file, args.max_age) + "\n")
    else:
        sys.stdout.write(script_for(args.file, args.max_age))
    return 0
