"""Running the installed ``dms-agent`` (the console script pip made) as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.rig.proc import Daemon

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


def start_agent(workdir: Path, *args: str, env: Mapping[str, str] | None = None) -> Daemon:
    """``dms-agent run ARGS`` as a daemon in ``workdir``, its stderr in the daemon's log."""
    assert DMS_AGENT.exists(), f"{DMS_AGENT} missing: install the project (.ci/setup)"
    return Daemon("dms-agent", [str(DMS_AGENT), "run", *args], workdir, dict(env or {}))


def wait_for_log(daemon: Daemon, text: str, timeout: float = 20.0) -> str:
    """The daemon's log once it holds ``text`` (fails with the log after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = daemon.logs()
        if text in log:
            return log
        if daemon.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in the agent's log:\n{daemon.logs()}")
