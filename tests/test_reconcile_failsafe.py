"""What the reconciler does when things go wrong, against the `setup` double:

- a password that a failing command echoes never reaches the log, /status or an Event;
- a corrupt ledger snapshot fails the pass closed, with an error naming the file and place;
- an unknown outcome (timeout, lost stream) ends the pass and the next one starts at once from a
  fresh observe, which also covers "the command completed but its answer was lost".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from agent.app import AgentContext
from agent.executor import LocalExecutor, Result
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile.reconciler import Engine, Reconciler
from agent.settings import Settings
from agent.status import State, StatusRegistry
from tests.reconcile_rig import DmsRig, RecordedEvents, fault_script

SECRET = "Tr0ub4dor&3-never-shown"


def desired(passwords: dict[str, str]) -> Desired:
    accounts = {a: Account(a) for a in passwords}
    intents = {a: PasswordIntent("plain", Secret(p)) for a, p in passwords.items()}
    return Desired(MailState(accounts=accounts, passwords=intents))


def with_setup(settings: Settings, setup: Path, **dms: object) -> Settings:
    update = settings.dms.model_copy(update={"setup_command": [str(setup)], **dms})
    return settings.model_copy(update={"dms": update})


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


# --- secrets in a failing command's output -----------------------------------------------

# reads the password `setup email add` gets on stdin and echoes it back, as a tool that
# prints its input in an error would; the first line is not the last, so both are checked
ECHOING = """case "$*" in
  "email add "*|"email update "*)
    read -r pw
    echo "checking password $pw" >&2
    echo "error: password '$pw' rejected by policy" >&2
    exit 1;;
esac"""


async def test_echoed_password_never_reaches_log_status_or_event(
    dms_rig: DmsRig, caplog: pytest.LogCaptureFixture
) -> None:
    setup = fault_script(dms_rig, "echoing", ECHOING)
    settings = with_setup(dms_rig.settings(resyncInterval=3600), setup)
    events = RecordedEvents()
    ctx = AgentContext(
        settings=settings, status=StatusRegistry(), executor=LocalExecutor(), events=events
    )
    rec = Reconciler(ctx)
    caplog.set_level(logging.DEBUG)
    report = await rec.reconcile(desired({"a@x.org": SECRET}))
    # the command did run, did fail, and its message was kept (redacted, not dropped)
    assert report.outcome == "failed"
    assert report.results[0].exit_code == 1
    assert report.results[0].message == (
        "checking password *** | error: password '***' rejected by policy"
    )
    failed = [e for e in events.emitted if e[0] == "OpFailed"]
    assert failed and failed[0][2] == "Warning" and "'***'" in failed[0][1]
    assert "rejected by policy" in caplog.text  # the warning line and the event's line
    status = json.dumps(ctx.status.snapshot())
    assert "rejected by policy" in status and rec.status.state is State.DEGRADED
    for where, text in [("log", caplog.text), ("/status", status), ("events", str(events.emitted))]:
        assert SECRET not in text, where


async def test_echoed_password_redacted_on_an_unknown_outcome_too(dms_rig: DmsRig) -> None:
    # echoes the password, then outlives the deadline: timeout(1) kills it (outcome unknown)
    body = 'read -r pw; echo "stuck on $pw" >&2; exec sleep 30'
    setup = fault_script(dms_rig, "echo-and-hang", body)
    settings = with_setup(dms_rig.settings(), setup, command_timeout=1)
    report = await Engine(settings, LocalExecutor()).run_pass(desired({"a@x.org": SECRET}))
    assert report.interrupted and report.results[0].status == "unknown"
    assert report.results[0].message == "timed out: stuck on ***"
    assert SECRET not in json.dumps(report.describe())


def test_agent_process_stderr_never_shows_the_password(dms_rig: DmsRig, tmp_path: Path) -> None:
    """The real CLI, its real logging set-up: what an operator would see in `kubectl logs`."""
    setup = fault_script(dms_rig, "echoing", ECHOING)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "mailserver.yaml").write_text("apiVersion: dms-agent/v1\naccounts:\n  a@x.org: {}\n")
    (docs / "passwords.yaml").write_text(f'a@x.org: {{password: "{SECRET}"}}\n')
    data = with_setup(dms_rig.settings(), setup).model_dump(
        mode="json", by_alias=True, exclude_defaults=True
    )
    data["sources"] = [{"kind": "path", "path": str(docs)}]
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(json.dumps(data))
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "apply", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        check=False,
    )
    assert proc.returncode != 0, proc.stderr
    assert "rejected by policy" in proc.stdout + proc.stderr  # the failure is shown...
    assert SECRET not in proc.stdout and SECRET not in proc.stderr  # ...without the password


# --- a corrupt ledger snapshot -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"apiVersion": "dms-agent/ledger", "version": 2, "accounts": {"a@x.o', "line 1"),
        ("not json at all\n", "line 1 column 1"),
        ("", "line 1 column 1"),  # truncated to nothing (a full disk at the wrong moment)
        ('["a@x.org"]\n', "not a JSON object"),
        ('{"version": "2"}\n', "unknown ledger version '2'"),
    ],
)
async def test_corrupt_ledger_fails_closed_with_a_located_error(
    dms_rig: DmsRig, content: str, why: str
) -> None:
    eng = Engine(dms_rig.settings(prune=True), LocalExecutor())
    first = await eng.run_pass(desired({"a@x.org": "pa", "b@x.org": "pb"}))
    assert first.outcome == "applied", first.describe()
    ledger = dms_rig.config_dir / "dms-agent-ledger.json"
    ledger.write_text(content)
    calls = len(dms_rig.mutating_calls())
    # a fresh agent (as after a restart) reads the corrupt file: b@x.org is no longer declared,
    # and were the ledger read as empty, a@x.org would be "adopted" and the file rewritten
    report = await Engine(dms_rig.settings(prune=True), LocalExecutor()).run_pass(
        desired({"a@x.org": "pa"})
    )
    assert report.outcome == "failed" and report.error is not None
    assert str(ledger) in report.error and why in report.error
    assert len(dms_rig.mutating_calls()) == calls  # nothing was applied
    assert ledger.read_text() == content  # nor the ledger rewritten
    plan_only = await Engine(dms_rig.settings(), LocalExecutor()).plan_only(desired({}))
    assert plan_only.outcome == "failed" and str(ledger) in (plan_only.error or "")


# --- an unknown outcome ------------------------------------------------------------------


class LosesOneAnswer:
    """The agent's LocalExecutor, except that the answer to the first command matching
    ``match`` is lost after it ran to its end (as when an exec stream drops)."""

    def __init__(self, match: str) -> None:
        self.match = match
        self.inner = LocalExecutor()
        self.lost: list[list[str]] = []

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        res = await self.inner.run(argv, stdin, timeout)
        if not self.lost and self.match in " ".join(argv):
            self.lost.append(list(argv))
            return Result(None, "", "stream closed", res.duration)
        return res


async def test_completed_command_with_lost_answer_is_seen_done_by_the_next_pass(
    dms_rig: DmsRig,
) -> None:
    executor = LosesOneAnswer("email add b@x.org")
    settings = dms_rig.settings(resyncInterval=3600)
    ctx = AgentContext(settings=settings, status=StatusRegistry(), executor=executor)
    rec = Reconciler(ctx)
    task = asyncio.create_task(rec.run())
    try:
        ctx.hub.desired.set(desired({"a@x.org": "pa", "b@x.org": "pb", "c@x.org": "pc"}))
        entry = ctx.status.component("reconcile")
        # no new desired state, no resync (an hour away): the unknown outcome alone brings
        # the second pass, which observes b@x.org present and runs only what is left
        await until(lambda: rec.passes >= 2 and entry.state is State.OK)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert executor.lost  # the fault did happen
    adds = [c["argv"][2] for c in dms_rig.mutating_calls() if c["argv"][:2] == ["email", "add"]]
    assert adds == ["a@x.org", "b@x.org", "c@x.org"]  # b@x.org once: never re-run blindly
    assert all(c["exit"] == 0 for c in dms_rig.mutating_calls())
    ledger = json.loads((dms_rig.config_dir / "dms-agent-ledger.json").read_text())
    assert sorted(ledger["accounts"]) == ["a@x.org", "b@x.org", "c@x.org"]
    assert ledger["accounts"]["b@x.org"]["origin"] == "adopted"  # learned from the observe
    assert not rec.engine.retries


async def test_unknown_outcome_ends_the_pass_and_the_next_one_observes_afresh(
    dms_rig: DmsRig,
) -> None:
    # the first `email add b@x.org` hangs past its deadline without doing anything
    body = (
        'case "$*" in "email add b@x.org"*)'
        ' [ -e "$0.hung" ] || { touch "$0.hung"; exec sleep 30; };; esac'
    )
    setup = fault_script(dms_rig, "hang-once", body)
    settings = with_setup(dms_rig.settings(resyncInterval=3600), setup, command_timeout=1)
    ctx = AgentContext(settings=settings, status=StatusRegistry(), executor=LocalExecutor())
    rec = Reconciler(ctx)
    first = await rec.reconcile(desired({"a@x.org": "pa", "b@x.org": "pb", "c@x.org": "pc"}))
    assert first.interrupted and [r.status for r in first.results] == ["ok", "unknown"]
    assert "c@x.org|" not in dms_rig.file("postfix-accounts.cf")  # nothing ran after it
    assert rec.dirty  # the component goes again at once
    # the op waits out its short retry backoff (retryInitial 0.05 s); then the next pass plans
    # from what DMS holds now: a@x.org is there, so only b@x.org and c@x.org run
    eng = rec.engine
    await until(lambda: all(r.not_before <= eng.clock() for r in eng.retries.values()))
    second = await rec.reconcile(desired({"a@x.org": "pa", "b@x.org": "pb", "c@x.org": "pc"}))
    assert [(r.op.target, r.status) for r in second.results] == [
        ("b@x.org", "ok"),
        ("c@x.org", "ok"),
    ]
    assert not rec.dirty and not eng.retries
