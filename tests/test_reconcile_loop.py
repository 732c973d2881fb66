"""The reconciler component: triggers, dirty flag, status, and SIGTERM during a long sync."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent.app import AgentContext
from agent.executor import LocalExecutor
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.metrics import REGISTRY
from agent.reconcile.reconciler import Reconciler
from agent.status import State, StatusRegistry
from tests.reconcile_rig import DmsRig, fault_script
from tests.rig.proc import free_port


def desired(names: list[str]) -> Desired:
    accounts = {n: Account(n) for n in names}
    pws = {n: PasswordIntent("plain", Secret("p-" + n)) for n in names}
    return Desired(MailState(accounts=accounts, passwords=pws))


async def until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll: the facts come from files other processes write (no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_triggers_and_dirty_flag(dms_rig: DmsRig) -> None:
    slow = fault_script(dms_rig, "slow", "sleep 0.3")
    settings = dms_rig.settings(resyncInterval=3600)
    dms = settings.dms.model_copy(update={"setup_command": [str(slow)]})
    settings = settings.model_copy(update={"dms": dms})
    ctx = AgentContext(settings=settings, status=StatusRegistry(), executor=LocalExecutor())
    rec = Reconciler(ctx)
    entry = ctx.status.component("reconcile")
    task = asyncio.create_task(rec.run())
    try:
        await until(lambda: entry.message == "waiting for a desired state from the sources")
        assert rec.passes == 0  # nothing to do before a desired state exists
        ctx.hub.desired.set(desired(["a@x.org", "b@x.org"]))
        await until(lambda: len(dms_rig.calls()) >= 1)
        # a change during the pass: no debounce, no waiting for the resync
        ctx.hub.desired.set(desired(["a@x.org", "b@x.org", "c@x.org"]))
        await until(lambda: "c@x.org|" in dms_rig.file("postfix-accounts.cf"))
        assert rec.passes == 2
        await until(lambda: entry.state is State.OK and entry.details.get("opsDone") == 1)
        assert entry.details["plan"]["ops"][0]["target"] == "c@x.org"
        # resync on demand: a pass with nothing to do
        ctx.hub.resync.set(1)
        await until(lambda: rec.passes == 3)
        assert entry.details["outcome"] == "noop"
        noop = REGISTRY.get_sample_value("dms_agent_reconcile_runs_total", {"result": "noop"})
        assert noop is not None and noop >= 1
        assert REGISTRY.get_sample_value("dms_agent_reconcile_managed_accounts") == 3
        assert "p-a@x.org" not in json.dumps(ctx.status.snapshot())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_sigterm_lets_the_running_command_finish(dms_rig: DmsRig, tmp_path: Path) -> None:
    """SIGTERM while the third command runs: it runs to its end, and no fourth one begins.
    The third command waits at a gate the test opens only once the agent has taken the
    signal (its "shutting down" line), so no timing decides the outcome."""
    starts, gate = tmp_path / "starts", tmp_path / "gate"
    held = fault_script(
        dms_rig,
        "held",
        f'echo start >> "{starts}"\n'
        f'if [ "$(wc -l < "{starts}")" -ge 3 ]; then\n'
        f'  while [ ! -e "{gate}" ]; do sleep 0.02; done\n'
        "fi",
    )
    state = tmp_path / "docs"
    state.mkdir()
    names = [f"u{i}@x.org" for i in range(6)]
    accounts = "".join(f"  {n}: {{}}\n" for n in names)
    (state / "mailserver.yaml").write_text(f"apiVersion: dms-agent/v1\naccounts:\n{accounts}")
    (state / "passwords.yaml").write_text("".join(f'{n}: {{password: "p"}}\n' for n in names))
    s = dms_rig.settings()
    data = s.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["dms"]["setupCommand"] = [str(held)]
    data["sources"] = [{"kind": "path", "path": str(state)}]
    data["server"] = {"port": free_port()}
    (tmp_path / "conf").mkdir()  # its own folder: the agent watches the settings' folder
    cfg = tmp_path / "conf" / "settings.yaml"
    cfg.write_text(json.dumps(data))
    agent_log = tmp_path / "agent.log"
    log = open(agent_log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "-c", str(cfg)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )

    def wait_for(cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not cond():
            assert time.monotonic() < deadline, f"{what}:\n{agent_log.read_text()}"
            assert proc.poll() is None, f"the agent ended early:\n{agent_log.read_text()}"
            time.sleep(0.05)

    try:
        wait_for(lambda: starts.exists() and len(starts.read_text().split()) == 3, "3rd command")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "shutting down" in agent_log.read_text(), "no shutdown line")
        gate.touch()
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    calls = dms_rig.calls()
    assert len(starts.read_text().split()) == 3  # nothing began after SIGTERM...
    assert len(calls) == 3  # ...and what had begun ran to its end
    assert all(c["exit"] == 0 for c in calls)  # the running one finished, not killed
    ledger = dms_rig.config_dir / "dms-agent-ledger.json"
    journal = dms_rig.config_dir / "dms-agent-ledger.json.journal"
    text = (ledger.read_text() if ledger.exists() else "") + (
        journal.read_text() if journal.exists() else ""
    )
    for c in calls:  # every command that ran is in the ledger
        assert c["argv"][2] in text
