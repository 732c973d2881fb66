"""/status shows a pass in progress: what it is doing, ops done of ops planned, and an ETA —
not "waiting for a desired state" while a first sync runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.app import AgentContext
from agent.executor import LocalExecutor
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile.reconciler import Reconciler
from agent.status import State, StatusRegistry
from tests.reconcile_rig import DmsRig, fault_script


def accounts(n: int) -> Desired:
    names = [f"u{i}@x.org" for i in range(n)]
    pws = {a: PasswordIntent("plain", Secret(f"p-{a}")) for a in names}
    return Desired(MailState(accounts={a: Account(a) for a in names}, passwords=pws))


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll: the status is a plain value another task sets (no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_status_shows_done_total_and_eta_during_a_pass(dms_rig: DmsRig) -> None:
    gate = dms_rig.root / "gate"
    held = fault_script(
        dms_rig,
        "held",
        f'case "$*" in *u2@x.org*) while [ ! -e "{gate}" ]; do sleep 0.02; done;; esac',
    )
    settings = dms_rig.settings(resyncInterval=3600)
    dms = settings.dms.model_copy(update={"setup_command": [str(held)]})
    ctx = AgentContext(
        settings=settings.model_copy(update={"dms": dms}),
        status=StatusRegistry(),
        executor=LocalExecutor(),
    )
    rec = Reconciler(ctx)
    entry = ctx.status.component("reconcile")
    task = asyncio.create_task(rec.run())
    try:
        ctx.hub.desired.set(accounts(5))
        await until(lambda: "2/5" in entry.message)  # u0, u1 done; u2 waits at the gate
        assert entry.message.startswith("pass 1: applying, 2/5 ops done, ETA ")
        progress = entry.details["progress"]
        assert progress["phase"] == "applying" and (progress["done"], progress["total"]) == (2, 5)
        assert progress["etaSeconds"] >= 0
        assert entry.state is State.STARTING  # no verdict on the state until the pass ends
        gate.touch()
        await until(lambda: entry.state is State.OK)
        assert entry.details["progress"] is None and entry.details["opsDone"] == 5
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
