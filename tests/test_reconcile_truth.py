"""The plan and the exit codes tell the whole truth: DKIM work the DKIM component will do, held
work with its own exit code, reasons that are true, accounts kept undeclared, an exact import,
and quotas that converge when DMS is read through `setup … list`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.commands.plan import EXIT_HELD, exit_code
from agent.dkim.byo import generate_key, install_byo_key
from agent.dkim.rotation import DomainState
from agent.dkim.state import save_state
from agent.executor import LocalExecutor
from agent.mailstate.model import (
    Account,
    Desired,
    DkimSpec,
    MailState,
    PasswordIntent,
    Secret,
)
from agent.reconcile.dkimwork import dkim_work
from agent.reconcile.plan import Plan
from agent.reconcile.reconciler import Engine
from tests.reconcile_rig import DmsRig
from tests.test_reconcile_cli import cli, settings_file

QUOTAS = {"q0@x.org": "1G", "q1@x.org": "500M", "q2@x.org": "2048M", "q3@x.org": "10k",
          "q4@x.org": "1T", "q5@x.org": "0", "q6@x.org": "1536M", "q7@x.org": "100B"}  # fmt: skip


def with_quotas(quotas: dict[str, str]) -> Desired:
    accounts = {a: Account(a, q) for a, q in quotas.items()}
    passwords = {a: PasswordIntent("plain", Secret(f"pw-{a}")) for a in quotas}
    return Desired(MailState(accounts=accounts, passwords=passwords))


async def test_quotas_converge_when_dms_is_read_through_setup_lists(dms_rig: DmsRig) -> None:
    eng = Engine(dms_rig.unmounted_settings(), LocalExecutor())
    d = with_quotas(QUOTAS)
    first = await eng.run_pass(d)
    assert first.outcome == "applied", first.describe()
    again = await eng.run_pass(d)
    assert again.outcome == "noop", again.describe()["plan"]
    assert again.plan is not None
    (warning,) = again.plan.warnings  # said, not retried: 100B lists as "no limit"
    assert warning.startswith("q7@x.org: quota 100B is under 1 KiB")


# --- the CLI: plan and apply ------------------------------------------------------------------


def docs(folder: Path, state: str, passwords: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "mailserver.yaml").write_text("apiVersion: dms-agent/v1\n" + state)
    (folder / "passwords.yaml").write_text(passwords or "{}\n")
    return folder


TWO = """accounts:
  a@x.org: {}
  b@x.org: {}
"""
TWO_PW = 'a@x.org: {password: "pa"}\nb@x.org: {password: "pb"}\n'


def test_plan_lists_the_dkim_components_work_and_apply_names_who_does_it(
    dms_rig: DmsRig, capsys: pytest.CaptureFixture[str]
) -> None:
    state = "domains:\n  x.org: {dkim: {selector: mail}}\n" + TWO
    cfg = settings_file(dms_rig, docs(dms_rig.root / "state", state, TWO_PW))
    assert cli("apply", "-c", str(cfg)) == 0
    capsys.readouterr()
    assert cli("plan", "-c", str(cfg), "--detailed-exitcode") == 2  # keys to make: changes
    out = capsys.readouterr().out
    assert "No changes" not in out
    assert "DKIM: x.org: generate 'mail': no key on disk" in out
    assert "(rsa/2048) (dms-agent run (its DKIM component))" in out
    assert cli("plan", "-c", str(cfg), "-o", "json") == 0
    (work,) = json.loads(capsys.readouterr().out)["dkim"]
    assert work["step"] == "generate" and work["doneBy"].startswith("dms-agent run")
    assert cli("apply", "-c", str(cfg)) == 0
    assert "dms-agent run (its DKIM component)" in capsys.readouterr().out
    dkim = [c for c in dms_rig.calls() if c["argv"][:2] == ["config", "dkim"]]
    assert dkim == []  # the plan never races the DKIM component for a key


def test_refused_and_blocked_work_has_its_own_exit_code(
    dms_rig: DmsRig, capsys: pytest.CaptureFixture[str]
) -> None:
    state = docs(dms_rig.root / "state", TWO, TWO_PW)
    cfg = settings_file(dms_rig, state, prune=True, maxDeletions={"count": 1, "percent": 0})
    assert cli("apply", "-c", str(cfg)) == 0
    docs(state, "accounts:\n  c@x.org: {}\n", 'c@x.org: {password: "pc"}\n')
    assert cli("plan", "-c", str(cfg)) == EXIT_HELD  # 2 deletions > 1, even without -detailed
    assert cli("plan", "-c", str(cfg), "--detailed-exitcode") == EXIT_HELD
    assert cli("apply", "-c", str(cfg)) == EXIT_HELD  # c was added; the deletions wait
    assert "c@x.org|" in dms_rig.file("postfix-accounts.cf")
    assert "a@x.org|" in dms_rig.file("postfix-accounts.cf")
    capsys.readouterr()
    assert cli("apply", "-c", str(cfg), "--allow-deletions", "2") == 0


def test_quota_blocked_is_counted_in_one_summary_never_no_changes(
    dms_rig: DmsRig, capsys: pytest.CaptureFixture[str]
) -> None:
    dms_rig.dms.set_env(ENABLE_QUOTAS="0")
    state = "accounts:\n  a@x.org: {quota: 1G}\n"
    cfg = settings_file(dms_rig, docs(dms_rig.root / "state", state, 'a@x.org: {password: "p"}\n'))
    assert cli("apply", "-c", str(cfg)) == EXIT_HELD
    capsys.readouterr()
    assert cli("plan", "-c", str(cfg), "--detailed-exitcode") == EXIT_HELD
    out = capsys.readouterr().out
    assert "No changes" not in out and out.startswith("No ops to run.")
    assert "Blocked: quota_set:a@x.org:1G: quotas are off" in out
    assert "Plan: no ops; 0 refused, 1 blocked, 0 pending" in out


def test_an_empty_desired_state_says_so_for_aliases_too(
    dms_rig: DmsRig, capsys: pytest.CaptureFixture[str]
) -> None:
    aliases = "aliases:\n  info@x.org: [a@x.org]\n"
    state = docs(dms_rig.root / "state", TWO + aliases, TWO_PW)
    cfg = settings_file(dms_rig, state, prune=True)
    assert cli("apply", "-c", str(cfg)) == 0
    docs(state, "accounts: {}\n")
    capsys.readouterr()
    assert cli("plan", "-c", str(cfg), "-o", "json") == EXIT_HELD
    reason = json.loads(capsys.readouterr().out)["refusedReason"]
    assert "2 account deletions refused: the desired state is empty" in reason
    assert "1 alias removals refused: the desired state is empty" in reason
    assert "maxDeletions" not in reason


async def test_accounts_kept_undeclared_are_listed_in_plan_and_status(dms_rig: DmsRig) -> None:
    dms_rig.run_setup("email", "add", "old@x.org", stdin="p\np\n")
    eng = Engine(dms_rig.settings(), LocalExecutor())
    report = await eng.run_pass(with_quotas({"a@x.org": "1G"}))
    assert report.plan is not None and report.plan.kept == ["old@x.org"]
    details = report.describe()["plan"]
    assert details["kept"] == ["old@x.org"] and details["counts"]["kept"] == 1


def test_import_is_exact_with_an_existing_ledger(dms_rig: DmsRig) -> None:
    cfg = settings_file(dms_rig, docs(dms_rig.root / "state", TWO, TWO_PW))
    assert cli("apply", "-c", str(cfg)) == 0  # the ledger now holds plain-password digests
    out = dms_rig.root / "imported"
    imported = settings_file(dms_rig, out)
    assert cli("import", "-c", str(imported), "-o", str(out)) == 0
    before = len(dms_rig.calls())
    assert cli("plan", "-c", str(imported), "--detailed-exitcode") == 0
    assert cli("apply", "-c", str(imported)) == 0
    assert len(dms_rig.calls()) == before  # not one command (the folder is mounted)


def test_import_from_a_missing_config_folder_is_an_error(
    dms_rig: DmsRig, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = settings_file(dms_rig, dms_rig.root / "out")
    data = json.loads(cfg.read_text())
    data["dms"]["configDir"] = str(dms_rig.root / "no-such-folder")
    data["dms"]["executor"] = {"kind": "file"}
    cfg.write_text(json.dumps(data))
    assert cli("import", "-c", str(cfg), "-o", str(dms_rig.root / "out")) == 1
    assert "no such folder" in capsys.readouterr().err  # never "imported 0 accounts"
    assert not (dms_rig.root / "out").exists()


def test_dkim_work_shows_a_held_rotation_and_a_wrong_key(tmp_path: Path) -> None:
    """As the DKIM component decides it: a new selector waits for DNS; a key of the wrong size
    under the declared selector is held (a new selector is needed)."""
    specs = {"a.org": DkimSpec("new", "rsa", 1024), "b.org": DkimSpec("mail", "rsa", 2048)}
    for domain, spec in (
        ("a.org", DkimSpec("old", "rsa", 1024)),
        ("a.org", specs["a.org"]),
        ("b.org", DkimSpec("mail", "rsa", 1024)),
    ):
        install_byo_key(tmp_path, "opendkim", generate_key(domain, spec))
    save_state(tmp_path / "dms-agent-dkim.json", {"a.org": DomainState(signing="old")})
    work = dkim_work(specs, tmp_path, "opendkim", None, True, 0.0)
    assert [(w.domain, w.step, w.selector, w.held) for w in work] == [
        ("a.org", "wait", "new", True),
        ("b.org", "mismatch", "mail", True),
    ]
    assert work[0].reason == "holding signing on 'old': 'new' switches when DNS serves it"
    plan = Plan(dkim=work)
    assert plan.held == 2 and plan.dkim_changes == 0
    assert exit_code(plan, detailed=True) == EXIT_HELD
