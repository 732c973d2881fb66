"""The whole agent as a process (``python -m agent run``): the lb builder is registered, a
settings reload re-registers without withdrawing, and SIGTERM withdraws within the grace."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.lbkit import LbHost, backend, wait_route
from tests.rig.logs import keep_logs
from tests.rig.proc import Daemon, free_port

ROOT = Path(__file__).resolve().parent.parent


async def _lb_status(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        body: dict[str, Any] = (await resp.json())["components"].get("lb", {})
        return body


async def _until(
    url: str, check: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = await _lb_status(url)
            if check(last):
                return last
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"agent never got there: {last}")


async def test_agent_process_registers_reloads_and_withdraws_on_sigterm(
    lb_host: LbHost, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port, front, http_port = free_port("127.0.0.2"), free_port(), free_port()
    settings: dict[str, Any] = {
        "server": {"port": http_port},
        "dms": {"configDir": None},
        "lb": {
            "enabled": True,
            "ports": [{"name": "smtp", "frontend": front, "backend": port}],
            "targets": [{"url": lb_host.v2_url, "secretFile": str(lb_host.hmac_key)}],
            "deleteOnShutdown": True,
            "shutdownGrace": 5,
            "stateFile": str(tmp_path / "lb-state.json"),
        },
    }
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    env = {"HOST_IP": "127.0.0.2", "POD_NAME": "mail-e2e", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "agent", "run", "-c", str(path)]
    agent = await asyncio.to_thread(Daemon, "agent", argv, tmp_path, env)
    keep_logs(request, agent)
    proc = agent.proc
    status_url = f"http://127.0.0.1:{http_port}/status"
    try:
        async with backend("e2e", "127.0.0.2", port):
            await _until(status_url, lambda s: s.get("state") == "ok")
            await wait_route(front, "e2e")
            first_seq = json.loads((tmp_path / "lb-state.json").read_text())["sequence"]
            # A settings change restarts the component: it registers again, never deletes.
            settings["lb"]["heartbeatInterval"] = 120
            path.write_text(yaml.safe_dump(settings))
            await _until(
                status_url,
                lambda s: (
                    s.get("state") == "ok"
                    and s["details"]["targets"]  # type: ignore[index]
                    and next(iter(s["details"]["targets"].values()))["lastSequence"]  # type: ignore[index]
                    != first_seq
                ),
            )
            assert lb_host.state()["services"]["mailserver"]["address"] == "127.0.0.2"
            assert (await wait_route(front, "e2e"))[0].startswith("220 e2e")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 10) == 0
        assert lb_host.state()["services"] == {}
        assert f":{front}" not in lb_host.config.read_text()
        assert lb_host.triggered("dms-lb") >= 3  # add, add after reload, delete
    finally:
        agent.stop()


def _seq(status: dict[str, Any]) -> object:
    return next(iter(status["details"]["targets"].values()))["lastSequence"]
