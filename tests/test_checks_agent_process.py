"""The real `dms-agent run` process: its verdict file, /healthz, and what happens to the
mailserver's probe when the agent is killed (SIGKILL: no chance to say goodbye)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from agent.checks.probe import PROBE_SCRIPT
from tests.rig.proc import free_port, wait_for_port


def probe(verdict_file: Path, max_age: int) -> int:
    argv = ["sh", "-c", PROBE_SCRIPT, "probe", str(verdict_file), str(max_age)]
    return subprocess.run(argv, capture_output=True, timeout=5).returncode


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def first_word(path: Path) -> str:
    try:
        return path.read_text().split(" ", 1)[0]
    except OSError:
        return ""


def test_killed_agent_leaves_a_verdict_that_goes_stale_and_the_probe_passes(
    tmp_path: Path,
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port, http_port = listener.getsockname()[1], free_port()
    verdict_file = tmp_path / "run" / "verdict"
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        json.dumps(
            {
                "server": {"port": http_port},
                "checks": {
                    "enabled": True,
                    "verdictFile": str(verdict_file),
                    "verdictRefresh": 0.5,
                    "dmsDefaults": {"enabled": False},
                    "checks": [
                        {
                            "name": "smtp",
                            "kind": "tcp",
                            "port": port,
                            "interval": 0.1,
                            "failureThreshold": 2,
                        },
                    ],
                },
            }
        )
    )
    with (tmp_path / "agent.log").open("wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-c", str(settings)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        wait_for_port("127.0.0.1", http_port, timeout=20, proc=agent)
        wait_until(lambda: first_word(verdict_file) == "healthy")
        listener.close()  # the mailserver's SMTP dies
        wait_until(lambda: first_word(verdict_file) == "unhealthy")
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/healthz", headers={"Accept": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("/healthz should answer 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert json.loads(exc.read())["checks"]["smtp"]["phase"] == "failing"
        assert probe(verdict_file, max_age=2) == 1  # fresh and affirmative: restart
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(5)
        assert first_word(verdict_file) == "unhealthy"  # nobody could take it back
        # once the file is older than max_age: stale, the agent is gone, fail open
        wait_until(lambda: probe(verdict_file, max_age=2) == 0)
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(5)
        listener.close()
