"""Supervisor, settings reload, shutdown and the CLI's exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent.app import Agent, AgentContext, Backoff, Component, supervise
from agent.cli import main
from agent.metrics import COMPONENT_RESTARTS
from agent.settings import load_settings
from agent.status import State, StatusRegistry
from tests.rig.proc import free_port, wait_for_port


class Crashy:
    """Crashes ``crashes`` times, then runs until cancelled."""

    def __init__(self, name: str, crashes: int) -> None:
        self.name = name
        self.crashes = crashes
        self.starts: list[float] = []

    async def run(self) -> None:
        self.starts.append(time.monotonic())
        if len(self.starts) <= self.crashes:
            raise RuntimeError(f"boom {len(self.starts)}")
        await asyncio.Event().wait()


class Ticker:
    def __init__(self) -> None:
        self.name = "ticker"
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.005)


async def test_crashing_component_restarts_with_backoff_while_others_run() -> None:
    status = StatusRegistry()
    crashy, ticker = Crashy("crashy", crashes=3), Ticker()
    before = COMPONENT_RESTARTS.labels("crashy")._value.get()
    delays: list[tuple[int, float]] = []

    class Recorded(Backoff):
        def delay(self, attempt: int) -> float:
            delays.append((attempt, super().delay(attempt)))
            return delays[-1][1]

    backoff = Recorded(initial=0.02, maximum=1.0, factor=2.0)
    tasks = [asyncio.create_task(supervise(c, status, backoff)) for c in (crashy, ticker)]
    try:
        async with asyncio.timeout(20):
            while len(crashy.starts) < 4:
                await asyncio.sleep(0.01)
        # the other component ran through the crashes and still runs (how often it ticked
        # in that time is the machine's speed, not a property of the supervisor)
        ticks = ticker.ticks
        assert ticks > 0
        async with asyncio.timeout(20):
            while ticker.ticks == ticks:
                await asyncio.sleep(0.01)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert len(crashy.starts) == 4
    # jittered exponential: restart n waits a delay in [0.5, 1.0] * 0.02 * 2**n
    assert [n for n, _ in delays] == [0, 1, 2]
    for n, delay in delays:
        assert 0.5 * 0.02 * 2**n <= delay <= 0.02 * 2**n
    entry = status.component("crashy")
    assert entry.restarts == 3
    assert entry.last_crash == "RuntimeError: boom 3"
    assert COMPONENT_RESTARTS.labels("crashy")._value.get() - before == 3


async def test_reload_applies_valid_and_rejects_invalid_settings(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("reconcile:\n  mode: apply\n")
    built: list[str] = []

    def builder(ctx: AgentContext) -> list[Component]:
        built.append(ctx.settings.reconcile.mode)
        return [Ticker()]

    agent = Agent(load_settings(path, {}), path)
    agent._builders = [builder]
    await agent.start_components()
    path.write_text("reconcile:\n  mode: observe\n")
    assert await agent.reload()
    assert agent.settings.reconcile.mode == "observe"
    path.write_text("reconcile:\n  mode: sideways\n")
    assert not await agent.reload()
    assert agent.settings.reconcile.mode == "observe"  # the running settings stay
    settings_status = agent.status.component("settings")
    assert settings_status.state is State.DEGRADED
    assert any("reconcile.mode" in e for e in settings_status.details["errors"])
    assert built == ["apply", "observe"]
    await agent.stop_components()


async def test_a_changed_settings_file_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("reconcile:\n  mode: apply\n")
    agent = Agent(load_settings(path, {}), path)
    agent._builders = []
    watcher = asyncio.create_task(agent.watch_settings())
    try:
        # the watcher may not watch yet: write again until a write is seen (no fixed sleep)
        async with asyncio.timeout(20):
            while agent.settings.reconcile.mode != "observe":
                path.write_text("reconcile:\n  mode: observe\n")
                await asyncio.sleep(0.1)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert agent.settings.reconcile.mode == "observe"


def test_cli_invalid_settings_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("server:\n  port: -1\n")
    assert main(["run", "--config", str(path)]) == 2
    assert f"{path}:2: server.port:" in capsys.readouterr().err


def test_cli_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "run" in capsys.readouterr().out


def test_run_serves_then_shuts_down_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"server: {{port: {port}}}\nlogging: {{format: json}}\ndms: {{configDir: null}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(path)],
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(line["msg"] == "stopped" for line in lines)
