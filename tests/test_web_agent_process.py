"""The status page of a real `dms-agent run` process on the embedded set-up (the README's first
command, in a temporary folder), loaded in Chromium: what the agent really reported, and never
a password or hash from its passwords document."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig.chromium import Chromium, Tab
from tests.rig.proc import free_port, wait_for_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


@pytest.fixture
def agent_url(tmp_path: Path) -> Iterator[str]:
    listener = socket.socket()  # what the agent's one check connects to
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    shutil.copytree(EXAMPLES / "state", tmp_path / "state")
    (tmp_path / "ledger.key").write_text("a-test-ledger-key-of-some-length\n")
    (tmp_path / "ledger.key").chmod(0o600)  # the agent refuses a key others may read
    http_port = free_port()
    settings = {
        "server": {"port": http_port},
        "sources": [{"kind": "path", "path": str(tmp_path / "state")}],
        "dms": {"configDir": str(tmp_path / "dms-config"), "executor": {"kind": "file"}},
        "reconcile": {"mode": "apply", "ledgerKeyFile": str(tmp_path / "ledger.key")},
        "checks": {
            "enabled": True,
            "verdictFile": str(tmp_path / "verdict"),
            "dmsDefaults": {"enabled": False},
            "checks": [{"name": "smtp", "kind": "tcp", "port": listener.getsockname()[1]}],
        },
    }
    (tmp_path / "settings.yaml").write_text(json.dumps(settings))
    with (tmp_path / "agent.log").open("wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-c", str(tmp_path / "settings.yaml")],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", http_port, timeout=30, proc=agent)
        yield f"http://127.0.0.1:{http_port}/"
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        listener.close()


def read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body.decode()


async def reload_until(tab: Tab, url: str, condition: str, timeout: float = 30) -> None:
    """The handler renders at most every few seconds: reload until the page shows it."""
    deadline = time.monotonic() + timeout
    while True:
        await tab.open(url)
        if await tab.evaluate(condition):
            return
        assert time.monotonic() < deadline, f"not shown within {timeout}s: {condition}"
        await asyncio.sleep(0.5)


async def test_real_agent_page_shows_its_plan_dkim_and_health(agent_url: str) -> None:
    secrets = ("correct horse battery staple", "$2b$12$", "BLF-CRYPT")
    async with Chromium() as tab:
        await tab.viewport(1200, 900)
        await reload_until(
            tab, agent_url,
            "document.title === 'healthy · dms-agent' && "
            "document.querySelector('#dkim pre.fix') !== null && "
            "document.querySelector('#plan').innerText.includes('alice@example.com')",
        )  # fmt: skip
        plan = await tab.evaluate("document.querySelector('#plan').innerText")
        assert "account_add" in plan and "password (plain)" in plan and "password (hash)" in plan
        record = await tab.evaluate("document.querySelector('#dkim pre.fix').innerText")
        assert record.startswith("mail._domainkey.example.com. IN TXT")
        sources = await tab.evaluate("document.querySelector('#sources').innerText")
        assert "sources merge" in sources and "published" in sources
        smtp = await tab.evaluate("document.querySelector('#health tbody tr').innerText")
        assert smtp.startswith("smtp") and "passing" in smtp
        html = await tab.evaluate("document.documentElement.outerHTML")
        status = await asyncio.to_thread(read, agent_url + "status")
        for secret in secrets:
            assert secret not in html and secret not in status
        await tab.screenshot(SHOTS / "real-agent.png")
        assert tab.problems == []
