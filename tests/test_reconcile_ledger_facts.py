"""What a pass writes to the ledger besides the ops it ran: adoptions with their digest and hash,
accounts gone for good, hashes learned after a migration, alias claims — and what observe mode
leaves alone. Against the `setup` double (found by bench/mutation.py)."""

from __future__ import annotations

import json

from agent.app import AgentContext
from agent.executor import LocalExecutor
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile.ledger import intent_digests
from agent.reconcile.reconciler import Engine, Reconciler
from agent.status import StatusRegistry
from tests.reconcile_rig import DmsRig


def ledger(rig: DmsRig) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(
        (rig.config_dir / "dms-agent-ledger.json").read_text()
    )
    return data


async def test_adoption_forgetting_learned_hashes_and_alias_claims(dms_rig: DmsRig) -> None:
    for name in ("a", "b", "c"):
        made = dms_rig.run_setup("email", "add", f"{name}@x.org", stdin="hand\nhand\n")
        assert made.returncode == 0
    pw = PasswordIntent("plain", Secret("declared"))
    state = MailState(
        accounts={n: Account(n) for n in ("a@x.org", "b@x.org", "c@x.org")},
        passwords={"a@x.org": pw},
        aliases={"l@x.org": ("a@x.org", "b@x.org")},
    )
    eng = Engine(dms_rig.settings(), LocalExecutor())
    first = await eng.run_pass(Desired(state))
    assert first.outcome in ("noop", "applied"), first.describe()
    key = dms_rig.key_file.read_bytes().strip()
    accounts = ledger(dms_rig)["accounts"]
    a = accounts["a@x.org"]
    assert a["digest"] == intent_digests(key, {"a@x.org": pw})["a@x.org"]  # type: ignore[index]
    assert a["hash"] == dms_rig.hash_of("a@x.org") and a["origin"] == "adopted"  # type: ignore[index]
    assert accounts["b@x.org"]["digest"] is None  # type: ignore[index]
    assert ledger(dms_rig)["aliases"] == {"l@x.org": ["a@x.org", "b@x.org"]}
    # c@x.org removed from outside and no longer declared: forgotten, the others kept
    assert dms_rig.run_setup("email", "del", "c@x.org", stdin="n\n").returncode == 0
    smaller = MailState(
        accounts={n: Account(n) for n in ("a@x.org", "b@x.org")},
        passwords={"a@x.org": pw},
        aliases={"l@x.org": ("a@x.org",)},
    )
    await eng.run_pass(Desired(smaller))
    assert sorted(ledger(dms_rig)["accounts"]) == ["a@x.org", "b@x.org"]
    assert ledger(dms_rig)["aliases"] == {"l@x.org": ["a@x.org"]}
    # a ledger that knows no hashes (as after a v1 migration) learns them from DMS's file
    raw = ledger(dms_rig)
    for entry in raw["accounts"].values():  # type: ignore[attr-defined]
        entry["hash"] = None
    (dms_rig.config_dir / "dms-agent-ledger.json").write_text(json.dumps(raw))
    await Engine(dms_rig.settings(), LocalExecutor()).run_pass(Desired(smaller))
    learned = ledger(dms_rig)["accounts"]
    assert learned["a@x.org"]["hash"] == dms_rig.hash_of("a@x.org")  # type: ignore[index]
    assert learned["b@x.org"]["hash"] == dms_rig.hash_of("b@x.org")  # type: ignore[index]


async def test_observe_mode_counts_a_pass_and_writes_nothing(dms_rig: DmsRig) -> None:
    ctx = AgentContext(
        settings=dms_rig.settings(mode="observe"),
        status=StatusRegistry(),
        executor=LocalExecutor(),
    )
    rec = Reconciler(ctx)
    pw = PasswordIntent("plain", Secret("p"))
    state = MailState(accounts={"a@x.org": Account("a@x.org")}, passwords={"a@x.org": pw})
    report = await rec.reconcile(Desired(state))
    assert report.outcome == "observed" and rec.passes == 1
    assert [op.target for op in report.plan.ops] == ["a@x.org"]  # type: ignore[union-attr]
    assert dms_rig.mutating_calls() == []
    assert not (dms_rig.config_dir / "dms-agent-ledger.json").exists()
    assert ctx.status.component("reconcile").details["mode"] == "observe"


async def test_a_hash_changed_outside_is_not_learned_while_passwords_are_initial(
    dms_rig: DmsRig,
) -> None:
    """Only an entry without a hash learns DMS's: a password changed outside while the
    ledger holds the applied hash stays drift (even in a pass that records other facts, here an
    adoption), reported once passwords are managed again."""
    assert dms_rig.run_setup("email", "add", "a@x.org", stdin="hand\nhand\n").returncode == 0
    pw = PasswordIntent("plain", Secret("declared"))
    state = MailState(accounts={"a@x.org": Account("a@x.org")}, passwords={"a@x.org": pw})
    initial = Engine(dms_rig.settings(passwords="initial"), LocalExecutor())
    await initial.run_pass(Desired(state))
    adopted = dms_rig.hash_of("a@x.org")
    assert ledger(dms_rig)["accounts"]["a@x.org"]["hash"] == adopted  # type: ignore[index]
    outside = dms_rig.run_setup("email", "update", "a@x.org", stdin="other\nother\n")
    assert outside.returncode == 0 and dms_rig.hash_of("a@x.org") != adopted
    assert dms_rig.run_setup("email", "add", "b@x.org", stdin="hand\nhand\n").returncode == 0
    state.accounts["b@x.org"] = Account("b@x.org")
    await initial.run_pass(Desired(state))
    assert ledger(dms_rig)["accounts"]["b@x.org"]["origin"] == "adopted"  # type: ignore[index]
    assert ledger(dms_rig)["accounts"]["a@x.org"]["hash"] == adopted  # type: ignore[index]
    on_change = Engine(dms_rig.settings(), LocalExecutor())
    report = await on_change.run_pass(Desired(state))
    assert report.plan is not None and report.plan.drift == ["a@x.org"]
