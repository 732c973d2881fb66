"""`dms-agent plan/apply/import` end to end: documents on disk, the setup double, real doveadm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from tests.reconcile_rig import DmsRig, doveadm_verify

STATE = """apiVersion: dms-agent/v1
accounts:
{accounts}
aliases:
  postmaster@x.org: [u0@x.org]
"""


def write_docs(folder: Path, n: int, passwords: int | None = None, extra: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    accounts = "\n".join(f"  u{i}@x.org: {{quota: 1G}}" for i in range(n))
    (folder / "mailserver.yaml").write_text(STATE.format(accounts=accounts))
    pw = "\n".join(f'u{i}@x.org: {{password: "pw {i}"}}' for i in range(passwords or n))
    (folder / "passwords.yaml").write_text(pw + "\n" + extra)
    return folder


def settings_file(rig: DmsRig, source: Path, **reconcile: object) -> Path:
    s = rig.settings(**reconcile)
    data = s.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["sources"] = [{"kind": "path", "path": str(source)}]
    path = rig.root / "settings.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def cli(*argv: str) -> int:
    return main(list(argv))


def test_plan_detailed_exitcode_then_apply(
    dms_rig: DmsRig, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = settings_file(dms_rig, write_docs(dms_rig.root / "state", 3))
    assert cli("plan", "-c", str(cfg), "--detailed-exitcode") == 2
    table = capsys.readouterr().out
    assert "account_add" in table and "u2@x.org" in table and "pw 0" not in table
    assert dms_rig.mutating_calls() == []
    assert cli("plan", "-c", str(cfg), "-o", "json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert [o["kind"] for o in plan["ops"]].count("account_add") == 3
    assert cli("apply", "-c", str(cfg)) == 0
    assert doveadm_verify(dms_rig.hash_of("u1@x.org"), "pw 1")
    assert cli("plan", "-c", str(cfg), "--detailed-exitcode") == 0


def test_bad_documents_change_nothing(dms_rig: DmsRig) -> None:
    state = write_docs(dms_rig.root / "state", 3)
    cfg = settings_file(dms_rig, state, prune=True)
    assert cli("apply", "-c", str(cfg)) == 0
    before = dms_rig.file("postfix-accounts.cf")
    calls = len(dms_rig.calls())
    good = (state / "mailserver.yaml").read_text()
    for bad in (
        good[: good.index("u1@x.org") + 12],  # truncated mid-entry
        "apiVersion: dms-agent/v1\naccounts: [oops\n",  # malformed
        "apiVersion: dms-agent/v2\naccounts: {}\n",  # unknown version
    ):
        (state / "mailserver.yaml").write_text(bad)
        assert cli("apply", "-c", str(cfg)) == 1
    (state / "mailserver.yaml").write_text("")  # empty
    (state / "passwords.yaml").write_text("")
    cli("apply", "-c", str(cfg))
    assert dms_rig.file("postfix-accounts.cf") == before
    assert len(dms_rig.calls()) == calls


def test_skew_between_state_and_passwords(
    dms_rig: DmsRig, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = write_docs(
        dms_rig.root / "state", 3, passwords=2, extra='ghost@x.org: {password: "g"}\n'
    )
    cfg = settings_file(dms_rig, docs)
    assert cli("apply", "-c", str(cfg)) == 0
    out = capsys.readouterr().out
    assert "Pending: u2@x.org" in out and "ghost@x.org" in out
    accounts = dms_rig.file("postfix-accounts.cf")
    assert "u0@x.org|" in accounts and "u1@x.org|" in accounts
    assert "u2@x.org|" not in accounts and "ghost" not in accounts


def test_import_then_apply_runs_zero_commands(dms_rig: DmsRig) -> None:
    r = dms_rig.run_setup
    assert r("email", "add", "a@x.org", stdin="pa\npa\n").returncode == 0
    assert r("email", "add", "b@x.org", stdin="pb\npb\n").returncode == 0
    assert r("quota", "set", "a@x.org", "3G").returncode == 0
    assert r("email", "restrict", "add", "send", "b@x.org").returncode == 0
    assert r("alias", "add", "info@x.org", "a@x.org").returncode == 0
    assert r("alias", "add", "info@x.org", "b@x.org").returncode == 0
    hashes = {a: dms_rig.hash_of(a) for a in ("a@x.org", "b@x.org")}
    out = dms_rig.root / "imported"
    cfg = settings_file(dms_rig, out, prune=True)
    before = len(dms_rig.calls())
    assert cli("import", "-c", str(cfg), "-o", str(out)) == 0
    assert (out / "passwords.yaml").stat().st_mode & 0o777 == 0o600
    assert cli("apply", "-c", str(cfg)) == 0
    assert len(dms_rig.calls()) == before  # adopted: nothing ran
    assert {a: dms_rig.hash_of(a) for a in hashes} == hashes
    ledger = json.loads((dms_rig.config_dir / "dms-agent-ledger.json").read_text())
    assert {e["origin"] for e in ledger["accounts"].values()} == {"adopted"}
    assert cli("plan", "-c", str(cfg), "--detailed-exitcode") == 0


def test_allow_deletions_approves_once(dms_rig: DmsRig) -> None:
    state = write_docs(dms_rig.root / "state", 8)
    cfg = settings_file(dms_rig, state, prune=True, maxDeletions={"count": 2, "percent": 0})
    assert cli("apply", "-c", str(cfg)) == 0
    write_docs(state, 3)
    cli("apply", "-c", str(cfg))
    assert "u7@x.org|" in dms_rig.file("postfix-accounts.cf")  # 5 > 2: refused
    assert cli("apply", "-c", str(cfg), "--allow-deletions", "3") == 0
    assert "u7@x.org|" not in dms_rig.file("postfix-accounts.cf")
