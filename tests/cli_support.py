"""Running the installed ``dms-agent`` (the console script pip made) as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DMS_AGENT = Path(sys.executable).parent / "dms-agent"


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``dms-agent ARGS`` in a subprocess; ``env`` is added to a copy of this environment,
    without any DMS_AGENT_* variable of the test run's own."""
    assert DMS_AGENT.exists(), f"{DMS_AGENT} missing: install the project (.ci/setup)"
    base = {k: v for k, v in os.environ.items() if not k.startswith("DMS_AGENT_")}
    return subprocess.run(
        [str(DMS_AGENT), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd or ROOT,
        timeout=timeout,
        check=False,
    )


def imported_modules(*args: str) -> set[str]:
    """Every module ``dms-agent ARGS`` imports, from Python's own import-time report."""
    proc = run_cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    found = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":
                found.add(name)
    return found
