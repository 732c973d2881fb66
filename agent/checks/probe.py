"""The mailserver's livenessProbe: a tiny POSIX sh script reading the agent's verdict file.

It fails ONLY on a fresh, affirmative ``unhealthy``. A missing, unreadable, malformed or stale
file passes, and so does a timestamp from the future or one the shell cannot compute with (more
than 12 digits, a leading zero that dash reads as octal, a sign): a dead, absent or stuck agent
must never get the mailserver restarted (fail-open). Arithmetic runs in a subshell, so even an
"Illegal number" there is a pass, never the shell's exit status 2 (which the kubelet counts as
a failure). It runs in the mailserver container, so it uses only
``sh``, ``read``, ``date +%s`` and ``sed`` (all in DMS's Debian image).

``dms-agent probe-script`` prints it; ``--exec`` prints a livenessProbe ``exec.command`` that
embeds it, so no ConfigMap is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_VERDICT_FILE = Path("/var/run/dms-agent/verdict")
DEFAULT_MAX_AGE = 60  # seconds; several times checks.verdictRefresh (10 s)

PROBE_SCRIPT = r"""#!/bin/sh
# dms-agent liveness probe for the mailserver (fail-open). Usage: probe [FILE] [MAX_AGE_S]
# Exit 1 only if FILE's first line is "unhealthy <unix time>" written at most MAX_AGE_S ago.
file=${1:-/var/run/dms-agent/verdict}
max_age=${2:-60}
case $max_age in ''|*[!0-9]*) max_age=60 ;; esac
[ -r "$file" ] || exit 0
IFS=' ' read -r verdict stamp rest < "$file" || [ -n "$stamp" ] || exit 0
[ "$verdict" = unhealthy ] || exit 0
# unparsable (empty, signed, not digits, leading zero, absurdly large): stale, so pass
case $stamp in ''|*[!0-9]*|0*|?????????????*) exit 0 ;; esac
now=$(date +%s 2>/dev/null) || exit 0
case $now in ''|*[!0-9]*|0*|?????????????*) exit 0 ;; esac
age=$( (echo $((now - stamp))) 2>/dev/null ) || exit 0
case $age in ''|*[!0-9-]*) exit 0 ;; esac
# stale (agent gone or stuck) or from the future (clock trouble): pass
if [ "$age" -lt -5 ] || [ "$age" -gt "$max_age" ]; then exit 0; fi
echo "dms-agent verdict: unhealthy, written ${age}s ago"
sed -e 1d -e '/^#/d' "$file" 2>/dev/null | head -n 10
exit 1
"""


def exec_command(
    verdict_file: Path = DEFAULT_VERDICT_FILE, max_age: int = DEFAULT_MAX_AGE
) -> list[str]:
    """A livenessProbe ``exec.command`` running the script inline (``sh -c SCRIPT probe F A``)."""
    return ["sh", "-c", PROBE_SCRIPT, "dms-agent-probe", str(verdict_file), str(max_age)]


def exec_command_json(verdict_file: Path, max_age: int) -> str:
    return json.dumps(exec_command(verdict_file, max_age), indent=2)
