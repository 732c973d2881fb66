"""The pass plans again under the apply lock when something changed after its first plan (another
agent applied meanwhile), and only then; the apply lock names its holder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.mailstate.load import desired_from_documents
from agent.mailstate.model import Desired
from agent.reconcile.apply import ApplyLock
from agent.reconcile.reconciler import Engine
from agent.settings import Settings
from agent.sources.document import SourceDocument

HASH = "{SHA512-CRYPT}$6$salt$" + "x" * 86


def desired(quota: str) -> Desired:
    state = f"apiVersion: dms-agent/v1\naccounts:\n  a@x.org: {{quota: {quota}}}\n"
    return desired_from_documents(
        (
            SourceDocument("state", "mailserver.yaml", state, False),
            SourceDocument("pw", "passwords.yaml", f'a@x.org: {{hash: "{HASH}"}}\n', True),
        )
    )


async def engine(tmp_path: Path) -> Engine:
    key = tmp_path / "keys" / "ledger.key"
    key.parent.mkdir()
    key.write_text("a test ledger key, long enough\n")
    key.chmod(0o600)
    settings = Settings.model_validate(
        {
            "dms": {"configDir": str(tmp_path / "dms"), "executor": {"kind": "file"}},
            "reconcile": {"ledgerKeyFile": str(key)},
            "dkim": {"enabled": False},
        }
    )
    e = Engine(settings, None)
    assert await e.check_dms() is None
    return e


async def test_a_change_between_the_first_plan_and_the_lock_is_planned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = await engine(tmp_path)
    first = await e.run_pass(desired("1G"))
    assert first.outcome == "applied", first.error
    quotas = tmp_path / "dms" / "dovecot-quotas.cf"
    take_lock = e._take_lock

    async def another_agent_first() -> ApplyLock | None:
        quotas.write_text(quotas.read_text().replace(":1G", ":2G"))  # it applied meanwhile
        return await take_lock()

    monkeypatch.setattr(e, "_take_lock", another_agent_first)
    report = await e.run_pass(desired("2G"))
    assert report.error is None
    assert report.plan is not None and report.plan.ops == []  # the plan made under the lock
    assert report.results == []  # nothing done twice
    assert quotas.read_text().splitlines() == ["a@x.org:2G"]


async def test_nothing_changed_under_the_lock_the_first_plan_is_applied(tmp_path: Path) -> None:
    e = await engine(tmp_path)
    await e.run_pass(desired("1G"))
    report = await e.run_pass(desired("2G"))
    assert [(r.op.kind, r.status) for r in report.results] == [("quota_set", "ok")]
    assert (tmp_path / "dms" / "dovecot-quotas.cf").read_text().splitlines() == ["a@x.org:2G"]


def test_the_apply_lock_file_names_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("12345\n")  # another process held it last
    lock = ApplyLock(path)
    assert lock.try_acquire()
    lock.release()
    assert path.read_text() == f"{os.getpid()}\n"
    assert lock.try_acquire()  # ours already: left as it is
    lock.release()
    assert path.read_text() == f"{os.getpid()}\n"
