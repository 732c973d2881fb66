"""The reconciler converges through DMS v15.1.0's matching quirks (docs/dms-compat.md), driven
against the `setup` double, which reproduces them: `restrict add` finds an address anywhere in
the access file, `restrict del` removes every line starting with it, DMS's sed edits miss lines
spelled with upper case, and `email del` reads a leading `-` as options."""

from __future__ import annotations

from agent.commands.plan import render_plan
from agent.dms.actual import Actual
from agent.dms.commands import command_for
from agent.executor import LocalExecutor
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Restriction, Secret
from agent.mailstate.syntax import check_password
from agent.reconcile.access import AccessLines
from agent.reconcile.ledger import LedgerData
from agent.reconcile.plan import Op, Plan, PlanPolicy, plan
from agent.reconcile.reconciler import Engine, PassReport
from agent.settings import Settings
from tests.reconcile_rig import DmsRig, doveadm_verify

SEND = "postfix-send-access.cf"
RECEIVE = "postfix-receive-access.cf"


def desired(restricted: dict[str, frozenset[Restriction]]) -> Desired:
    """The accounts with their restrictions, each with a password."""
    accounts = {a: Account(a, None, r) for a, r in restricted.items()}
    passwords = {a: PasswordIntent("plain", Secret(f"pw-{a}")) for a in restricted}
    return Desired(MailState(accounts=accounts, passwords=passwords))


def engine(rig: DmsRig, settings: Settings | None = None) -> Engine:
    return Engine(settings or rig.settings(), LocalExecutor())


def restrict_calls(rig: DmsRig) -> list[list[str]]:
    return [c["argv"] for c in rig.mutating_calls() if c["argv"][1] == "restrict"]


def ops_of(report: PassReport) -> list[dict[str, object]]:
    assert report.plan is not None
    return [op.describe() for op in report.plan.ops]


SENDS = frozenset({"send"})
RECEIVES = frozenset({"receive"})
NONE: frozenset[Restriction] = frozenset()


async def test_restrict_add_of_an_address_inside_another_line_converges(dms_rig: DmsRig) -> None:
    eng = engine(dms_rig)
    assert (await eng.run_pass(desired({"ab@x.org": SENDS, "b@x.org": NONE}))).outcome == "applied"
    report = await eng.run_pass(desired({"ab@x.org": SENDS, "b@x.org": SENDS}))
    assert report.outcome == "applied", report.describe()
    (op,) = ops_of(report)
    assert op["kind"] == "restrict_add" and op["via"] == "files"
    assert "inside 'ab@x.org'" in str(op["reason"])
    assert dms_rig.file(SEND) == "ab@x.org \t\t REJECT\nb@x.org \t\t REJECT\n"  # DMS's bytes
    again = await eng.run_pass(desired({"ab@x.org": SENDS, "b@x.org": SENDS}))
    assert again.outcome == "noop", again.describe()


async def test_restrict_adds_that_clash_within_one_pass_converge_in_that_pass(
    dms_rig: DmsRig,
) -> None:
    eng = engine(dms_rig)
    d = desired({"ab@x.org": RECEIVES, "b@x.org": RECEIVES})
    report = await eng.run_pass(d)
    assert report.outcome == "applied", report.describe()
    assert restrict_calls(dms_rig) == [["email", "restrict", "add", "receive", "ab@x.org"]]
    assert dms_rig.file(RECEIVE) == "ab@x.org \t\t REJECT\nb@x.org \t\t REJECT\n"
    assert (await eng.run_pass(d)).outcome == "noop"


async def test_restrict_del_never_removes_a_restriction_not_asked(dms_rig: DmsRig) -> None:
    eng = engine(dms_rig)
    both = desired({"b@x.org": SENDS, "b@x.org.au": SENDS})
    assert (await eng.run_pass(both)).outcome == "applied"
    assert dms_rig.file(SEND) == "b@x.org \t\t REJECT\nb@x.org.au \t\t REJECT\n"
    one = desired({"b@x.org": NONE, "b@x.org.au": SENDS})
    report = await eng.run_pass(one)
    assert report.outcome == "applied", report.describe()
    (op,) = ops_of(report)
    assert op["kind"] == "restrict_del" and op["via"] == "files"
    assert "also remove b@x.org.au" in str(op["reason"])
    assert dms_rig.file(SEND) == "b@x.org.au \t\t REJECT\n"
    assert (await eng.run_pass(one)).outcome == "noop"


async def test_without_the_config_folder_quirky_restrictions_are_blocked_once(
    dms_rig: DmsRig,
) -> None:
    eng = engine(dms_rig, dms_rig.unmounted_settings())
    assert (
        await eng.run_pass(desired({"b@x.org": SENDS, "b@x.org.au": SENDS}))
    ).outcome == "applied"
    before = restrict_calls(dms_rig)
    for _ in range(2):  # stable: nothing retried in vain, nothing removed
        report = await eng.run_pass(desired({"b@x.org": NONE, "b@x.org.au": SENDS}))
        assert report.plan is not None and report.plan.ops == []
        (why,) = report.plan.blocked.values()
        assert "also remove b@x.org.au" in why and "dms.configDir" in why
    assert restrict_calls(dms_rig) == before
    assert dms_rig.file(SEND) == "b@x.org \t\t REJECT\nb@x.org.au \t\t REJECT\n"


async def test_an_account_spelled_with_upper_case_is_updated_by_the_files(
    dms_rig: DmsRig,
) -> None:
    """DMS finds `U0@x.org` case-insensitively, then its sed changes nothing (exit 1)."""
    dms_rig.run_setup("email", "add", "u0@x.org", "old")
    text = dms_rig.file("postfix-accounts.cf").replace("u0@x.org", "U0@x.org")
    (dms_rig.config_dir / "postfix-accounts.cf").write_text(text)
    eng = engine(dms_rig)
    d = desired({"u0@x.org": NONE})
    adopted = await eng.run_pass(d)  # adopted, password untouched
    assert adopted.plan is not None and [a.address for a in adopted.plan.adopt] == ["u0@x.org"]
    d = desired({"u0@x.org": NONE})  # a new state (digests are cached per state object)
    d.state.passwords["u0@x.org"] = PasswordIntent("plain", Secret("new"))
    report = await eng.run_pass(d)
    assert report.outcome == "applied", report.describe()
    (op,) = ops_of(report)
    assert op["kind"] == "password_update" and op["via"] == "files"
    assert doveadm_verify(dms_rig.hash_of("U0@x.org"), "new")
    assert (await eng.run_pass(d)).outcome == "noop"


async def test_an_account_with_a_leading_dash_is_deleted(dms_rig: DmsRig) -> None:
    eng = engine(dms_rig, dms_rig.settings(prune=True))
    assert (await eng.run_pass(desired({"-y@x.org": NONE, "u1@x.org": NONE}))).outcome == "applied"
    report = await eng.run_pass(desired({"u1@x.org": NONE}))
    assert report.outcome == "applied", report.describe()
    assert "-y@x.org" not in dms_rig.file("postfix-accounts.cf")
    deletes = [c["argv"] for c in dms_rig.mutating_calls() if c["argv"][1] == "del"]
    assert deletes == [["email", "del", "--", "-y@x.org"]]


def test_passwords_dms_would_strip_or_split_are_refused_before_any_command() -> None:
    """`setup` reads the password with `read`: surrounding blanks go, a line break splits it."""
    for bad in (" pw", "pw\t", "p\nw", ""):
        assert check_password(bad) is not None, repr(bad)
    assert check_password("in ner") is None


def test_email_del_commands_answer_the_prompt_and_end_the_options() -> None:
    setup = ["setup"]
    keep = command_for(Op("account_del", "a@x.org"), setup)
    assert keep.argv == ["setup", "email", "del", "a@x.org"] and keep.stdin == "n\n"
    dash = command_for(Op("account_del", "-y@x.org", delete_mail_data=True), setup, keep_mail=False)
    assert dash.argv == ["setup", "email", "del", "-y", "--", "-y@x.org"] and dash.stdin == ""


def test_bare_local_part_and_catch_all_aliases_meet_the_prefix_guard() -> None:
    """DMS's `alias add` greps `^ALIAS` over the accounts: a bare `u` clashes with `u1@x.org`,
    and so does `u1.x` (a `.` matches the `@`); a catch-all `@x.org` starts no account line."""
    accounts = {"u1@x.org": Account("u1@x.org")}
    want = MailState(accounts=dict(accounts))
    want.aliases.update({"u": ("r@y.org",), "@x.org": ("r@y.org",), "u1.x": ("r@y.org",)})
    have = Actual(MailState(accounts=dict(accounts)), {"u1@x.org": "{X}h"})
    p = plan(Desired(want), have, LedgerData(), PlanPolicy(), {})
    assert sorted(p.blocked) == ["alias_add:u1.x:r@y.org", "alias_add:u:r@y.org"]
    assert [op.key for op in p.ops] == ["alias_add:@x.org:r@y.org"]


async def test_a_direct_deletion_never_leaves_mail_behind_unnoticed(dms_rig: DmsRig) -> None:
    """`U0@x.org` cannot be deleted by DMS (case); with deleteMailData and no mail folder the
    agent cannot delete the mail itself either: the op fails with that reason, nothing goes."""
    dms_rig.run_setup("email", "add", "u0@x.org", "old")
    text = dms_rig.file("postfix-accounts.cf").replace("u0@x.org", "U0@x.org")
    (dms_rig.config_dir / "postfix-accounts.cf").write_text(text)
    settings = dms_rig.settings(prune=True, pruneUnmanaged=True, deleteMailData=True)
    dms = settings.dms.model_copy(update={"mail_dir": None})
    eng = engine(dms_rig, settings.model_copy(update={"dms": dms}))
    report = await eng.run_pass(desired({"keep@x.org": NONE}))  # not empty: no refusal
    assert report.outcome == "partial", report.describe()
    (failed,) = [r for r in report.describe()["results"] if r["status"] != "ok"]
    assert failed["kind"] == "account_del" and "dms.mailDir" in failed["message"]
    assert "U0@x.org|" in dms_rig.file("postfix-accounts.cf")


def test_access_lines_find_what_grep_f_and_the_sed_prefix_find() -> None:
    lines = AccessLines(
        ["ab@x.org.au \t\t REJECT", "B@x.org\t\tREJECT", "# was a@b@x.org", "c@y.org \t\t REJECT"]
    )
    assert lines.holding("b@x.org") == "ab@x.org.au"  # local ends with, domain starts with
    assert lines.holding("b@x.org.au") == "ab@x.org.au"
    assert lines.holding("a@b@x.org") == "a@b@x.org"  # a comment counts too, as for grep -F
    assert lines.holding("b@x") == "ab@x.org.au"
    assert lines.holding("a@b") == "a@b@x.org"
    assert lines.holding("c@x.org") is None and lines.holding("b@y.org") is None
    assert lines.starting_with("B@x.org") == ["B@x.org\t\tREJECT"]  # case-sensitive, as sed
    assert lines.starting_with("b@x.org") == []
    assert lines.of("b@x.org") == ["B@x.org\t\tREJECT"]  # what the agent means: any case
    lines.remove("ab@x.org.au \t\t REJECT")
    assert lines.holding("b@x.org") == "a@b@x.org"  # not `B@x.org`: case-sensitive
    lines.add("zb@x.org \t\t REJECT")
    assert lines.holding("b@x.org") == "zb@x.org"


def test_the_plan_table_says_which_ops_the_agent_writes_itself() -> None:
    op = Op("restrict_add", "b@x.org", "send", reason="DMS's restrict add finds it", direct=True)
    table = render_plan(Plan(ops=[op]))
    assert "restrict_add  b@x.org  send" in table
    assert "DMS's restrict add finds it, written to DMS's file by the agent" in table
