"""The reconciler against the `setup` double of DMS v15.1.0, with the real `doveadm pw -t`."""

from __future__ import annotations

import asyncio
import itertools
import json

from agent.executor import LocalExecutor
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile.reconciler import Engine
from agent.settings import Settings
from tests.reconcile_rig import DmsRig, doveadm_verify, fault_script


def pw(value: str) -> PasswordIntent:
    return PasswordIntent("plain", Secret(value))


def state(n: int = 3, **over: object) -> Desired:
    accounts = {f"u{i}@x.org": Account(f"u{i}@x.org") for i in range(n)}
    passwords = {a: pw(f"pw-{a}") for a in accounts}
    st = MailState(accounts=accounts, passwords=passwords)
    for k, v in over.items():
        setattr(st, k, v)
    return Desired(st)


def engine(rig: DmsRig, settings: Settings | None = None) -> Engine:
    return Engine(settings or rig.settings(), LocalExecutor())


async def test_first_sync_then_noop(dms_rig: DmsRig) -> None:
    d = state(2)
    d.state.accounts["u0@x.org"] = Account("u0@x.org", "1G", frozenset({"send"}))
    d.state.aliases["post@x.org"] = ("u0@x.org", "u1@x.org")
    eng = engine(dms_rig)
    report = await eng.run_pass(d)
    assert report.outcome == "applied", report.describe()
    assert [c["argv"][:2] for c in dms_rig.mutating_calls()] == [
        ["email", "add"],
        ["email", "add"],
        ["quota", "set"],
        ["email", "restrict"],
        ["alias", "add"],
        ["alias", "add"],
    ]
    # passwords went on stdin, never argv
    assert all("pw-" not in " ".join(c["argv"]) for c in dms_rig.calls())
    assert doveadm_verify(dms_rig.hash_of("u0@x.org"), "pw-u0@x.org")
    assert "u0@x.org:1G" in dms_rig.file("dovecot-quotas.cf")
    assert "post@x.org u0@x.org,u1@x.org" in dms_rig.file("postfix-virtual.cf")
    before = len(dms_rig.calls())
    again = await engine(dms_rig).run_pass(d)  # a fresh engine: everything from the files
    assert again.outcome == "noop" and again.plan is not None and again.plan.ops == []
    assert len(dms_rig.calls()) == before


async def test_one_change_among_many_is_one_command(dms_rig: DmsRig) -> None:
    d = state(25)
    eng = engine(dms_rig)
    assert (await eng.run_pass(d)).outcome == "applied"
    before = len(dms_rig.calls())
    d2 = state(25)
    d2.state.accounts["u7@x.org"] = Account("u7@x.org", "500M")
    report = await eng.run_pass(d2)
    calls = dms_rig.calls()[before:]
    assert [c["argv"] for c in calls] == [["quota", "set", "u7@x.org", "500M"]]
    assert report.outcome == "applied"


async def test_password_change_and_drift(dms_rig: DmsRig) -> None:
    d = state(1)
    eng = engine(dms_rig)
    await eng.run_pass(d)
    d2 = state(1)  # a new desired state object, as sources publish
    d2.state.passwords["u0@x.org"] = pw("second secret")
    report = await eng.run_pass(d2)
    assert [op.kind for op in report.plan.ops] == ["password_update"]  # type: ignore[union-attr]
    assert doveadm_verify(dms_rig.hash_of("u0@x.org"), "second secret")
    # changed outside (webmail, a manual setup): drift, kept under onChange
    outside = dms_rig.run_setup("email", "update", "u0@x.org", stdin="outside\noutside\n")
    assert outside.returncode == 0
    report = await eng.run_pass(d2)
    assert report.plan.drift == ["u0@x.org"] and report.plan.ops == []  # type: ignore[union-attr]
    assert doveadm_verify(dms_rig.hash_of("u0@x.org"), "outside")
    # reverted under enforce
    enforce = Engine(dms_rig.settings(passwords="enforce"), LocalExecutor())
    report = await enforce.run_pass(d2)
    assert [op.reason for op in report.plan.ops] == ["drift"]  # type: ignore[union-attr]
    assert doveadm_verify(dms_rig.hash_of("u0@x.org"), "second secret")


async def test_prune_rename_and_unmanaged(dms_rig: DmsRig) -> None:
    eng = engine(dms_rig, dms_rig.settings(prune=True))
    await eng.run_pass(state(2))
    (dms_rig.mail_dir / "x.org" / "u1").mkdir(parents=True)
    # an account made by hand: not managed, never pruned
    assert dms_rig.run_setup("email", "add", "hand@x.org", stdin="h\nh\n").returncode == 0
    renamed = state(1)
    renamed.state.accounts["new@x.org"] = Account("new@x.org")
    renamed.state.passwords["new@x.org"] = pw("n")
    report = await eng.run_pass(renamed)
    assert [(op.kind, op.target) for op in report.plan.ops] == [  # type: ignore[union-attr]
        ("account_add", "new@x.org"),
        ("account_del", "u1@x.org"),
    ]
    accounts = dms_rig.file("postfix-accounts.cf")
    assert "hand@x.org|" in accounts and "u1@x.org|" not in accounts
    assert (dms_rig.mail_dir / "x.org" / "u1").is_dir()  # mail kept (deleteMailData off)
    del_call = next(c for c in dms_rig.calls() if c["argv"][:2] == ["email", "del"])
    assert "-y" not in del_call["argv"] and del_call["stdin_bytes"] == 2  # answered "n"
    # prune off: nothing removed
    keep = engine(dms_rig, dms_rig.settings(prune=False))
    assert (await keep.run_pass(state(0))).plan.ops == []  # type: ignore[union-attr]


async def test_delete_mail_data_with_missing_maildir(dms_rig: DmsRig) -> None:
    eng = engine(dms_rig, dms_rig.settings(prune=True, deleteMailData=True))
    await eng.run_pass(state(3))
    (dms_rig.mail_dir / "x.org" / "u2").mkdir(parents=True)
    (dms_rig.mail_dir / "x.org" / "u2" / "mail").write_text("x")
    report = await eng.run_pass(state(1))  # u1 has no maildir, u2 has one
    assert report.outcome == "applied", report.describe()
    accounts = dms_rig.file("postfix-accounts.cf")
    assert "u1@x.org" not in accounts and "u2@x.org" not in accounts
    assert not (dms_rig.mail_dir / "x.org" / "u2").exists()


async def test_max_deletions_and_allow(dms_rig: DmsRig) -> None:
    settings = dms_rig.settings(prune=True, maxDeletions={"count": 1, "percent": 0})
    eng = engine(dms_rig, settings)
    await eng.run_pass(state(4))
    smaller = state(1)
    smaller.state.accounts["extra@x.org"] = Account("extra@x.org")
    smaller.state.passwords["extra@x.org"] = pw("e")
    report = await eng.run_pass(smaller)
    assert report.plan is not None and len(report.plan.refused) == 3
    assert [op.kind for op in report.plan.ops] == ["account_add"]
    assert "u3@x.org|" in dms_rig.file("postfix-accounts.cf")
    report = await eng.run_pass(smaller, allow_deletions=2)
    assert [op.kind for op in report.plan.ops] == ["account_del"] * 3  # type: ignore[union-attr]
    assert "u3@x.org|" not in dms_rig.file("postfix-accounts.cf")


async def test_failing_setup_retried_while_others_proceed(dms_rig: DmsRig) -> None:
    bad = fault_script(
        dms_rig, "failing", 'case "$*" in *u1@x.org*) [ -e "$0.ok" ] || exit 1;; esac'
    )
    settings = dms_rig.settings()
    settings = settings.model_copy(
        update={"dms": settings.dms.model_copy(update={"setup_command": [str(bad)]})}
    )
    eng = engine(dms_rig, settings)
    report = await eng.run_pass(state(3))
    assert report.outcome == "partial"
    assert [r.op.target for r in report.failed] == ["u1@x.org"]
    assert "u2@x.org|" in dms_rig.file("postfix-accounts.cf")
    assert "account_add:u1@x.org:" in eng.retries
    # within the backoff the op is deferred, not re-run
    report = await eng.run_pass(state(3))
    assert report.plan is not None and report.plan.ops == [] and report.plan.deferred
    (dms_rig.root / "failing.ok").touch()
    async with asyncio.timeout(10):  # the op's backoff (retryInitial 0.05 s) runs out
        while any(r.not_before > eng.clock() for r in eng.retries.values()):
            await asyncio.sleep(0.02)
    report = await eng.run_pass(state(3))
    assert report.outcome == "applied" and not eng.retries


async def test_hanging_setup_times_out_and_nothing_runs_beside_it(dms_rig: DmsRig) -> None:
    hang = fault_script(dms_rig, "hanging", 'case "$*" in *u0@x.org*) sleep 30;; esac')
    settings = dms_rig.settings()
    dms = settings.dms.model_copy(update={"setup_command": [str(hang)], "command_timeout": 1})
    eng = engine(dms_rig, settings.model_copy(update={"dms": dms}))
    report = await eng.run_pass(state(2))
    assert report.interrupted and report.results[0].status == "unknown"
    assert len(report.results) == 1  # the pass stopped: fresh observe before anything else


async def test_ldap_provisioner_refused(dms_rig: DmsRig) -> None:
    settings = dms_rig.settings()
    dms = settings.dms.model_copy(update={"environment": {"ACCOUNT_PROVISIONER": "LDAP"}})
    eng = engine(dms_rig, settings.model_copy(update={"dms": dms}))
    report = await eng.run_pass(state(2))
    assert report.outcome == "failed" and "LDAP" in (report.plan.fatal or "")  # type: ignore[union-attr]
    assert dms_rig.calls() == []


async def test_two_agents_on_one_folder_never_overlap(dms_rig: DmsRig) -> None:
    a, b = engine(dms_rig), engine(dms_rig)
    d = state(6)
    ra, rb = await asyncio.gather(a.run_pass(d), b.run_pass(d))
    calls = dms_rig.mutating_calls()
    assert len(calls) == 6  # the second agent saw the first one's work: nothing twice
    spans = sorted((c["start"], c["end"]) for c in calls)
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(spans))
    assert {ra.outcome, rb.outcome} == {"applied", "noop"}
    ledger = json.loads((dms_rig.config_dir / "dms-agent-ledger.json").read_text())
    assert sorted(ledger["accounts"]) == sorted(d.state.accounts)


async def test_observe_through_setup_list_when_not_mounted(dms_rig: DmsRig) -> None:
    eng = engine(dms_rig, dms_rig.unmounted_settings(prune=True, deleteMailData=True))
    d = state(3)
    d.state.accounts["u0@x.org"] = Account("u0@x.org", "1G", frozenset({"receive"}))
    d.state.aliases["post@x.org"] = ("u1@x.org",)
    assert (await eng.run_pass(d)).outcome == "applied"
    before = len(dms_rig.mutating_calls())
    again = await eng.run_pass(d)
    assert again.outcome == "noop", again.describe()
    assert len(dms_rig.mutating_calls()) == before  # only `… list` commands ran
    # deleteMailData with no maildir: checked in the mailserver, the account still goes
    report = await eng.run_pass(state(2))
    assert report.outcome == "applied", report.describe()
    assert "u2@x.org" not in dms_rig.file("postfix-accounts.cf")
    # a broken `email list` (the file is not empty) never reads as "no accounts"
    broken = fault_script(dms_rig, "broken", 'case "$*" in "email list") exit 1;; esac')
    eng.settings = eng.settings.model_copy(
        update={"dms": eng.settings.dms.model_copy(update={"setup_command": [str(broken)]})}
    )
    calls = len(dms_rig.mutating_calls())
    report = await eng.run_pass(state(2))
    assert report.outcome == "failed" and "email list" in (report.error or "")
    assert len(dms_rig.mutating_calls()) == calls


async def test_dkim_key_for_a_new_domain(dms_rig: DmsRig) -> None:
    from agent.mailstate.model import DkimSpec, Domain

    d = state(1, domains={"x.org": Domain("x.org", DkimSpec(key_size=1024))})
    owned = await engine(dms_rig).plan_only(d)  # the DKIM component (on by default) owns keys
    assert [op.kind for op in owned.plan.ops] == ["account_add"]  # type: ignore[union-attr]
    eng = engine(dms_rig, dms_rig.settings(dkim_component=False))
    report = await eng.run_pass(d)
    assert [op.kind for op in report.plan.ops] == ["account_add", "dkim_add"]  # type: ignore[union-attr]
    assert report.outcome == "applied", report.describe()
    assert (dms_rig.config_dir / "opendkim" / "keys" / "x.org" / "mail.private").exists()
    assert (await eng.run_pass(d)).outcome == "noop"


async def test_observe_mode_reports_without_applying(dms_rig: DmsRig) -> None:
    eng = engine(dms_rig, dms_rig.settings(mode="observe"))
    report = await eng.plan_only(state(2))
    assert report.outcome == "observed" and len(report.plan.ops) == 2  # type: ignore[union-attr]
    assert dms_rig.calls() == [] and not (dms_rig.config_dir / "dms-agent-ledger.json").exists()


def test_digests_reused_across_states_match_a_full_computation(dms_rig: DmsRig) -> None:
    from agent.reconcile.ledger import intent_digests

    eng = engine(dms_rig)
    first = eng.digests(state(5))
    changed = state(5)
    changed.state.passwords["u3@x.org"] = pw("another")
    key = dms_rig.key_file.read_bytes().strip()
    assert eng.digests(changed) == intent_digests(key, changed.state.passwords)
    assert eng.digests(changed)["u3@x.org"] != first["u3@x.org"]
