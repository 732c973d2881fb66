"""Ledger, executors and the file applier on their own (real processes, real doveadm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.dms import files
from agent.dms.fileapply import FileApplier, FileApplyError
from agent.dms.observe import read_files
from agent.executor import DockerExecutor, LocalExecutor
from agent.mailstate.model import PasswordIntent, Secret
from agent.reconcile.ledger import (
    LEDGER_VERSION,
    Ledger,
    LedgerEntry,
    LedgerError,
    intent_digest,
    load_key,
)
from agent.reconcile.plan import Op
from tests.reconcile_rig import doveadm_verify
from tests.rig.proc import process_alive


def plain(value: str) -> PasswordIntent:
    return PasswordIntent("plain", Secret(value))


# --- ledger ------------------------------------------------------------------------------


def test_ledger_journal_compact_and_torn_line(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.load()
    led.set_account("a@x.org", LedgerEntry("d1", "{X}h1"))
    led.set_account("b@x.org", LedgerEntry("d2", None))
    led.forget_account("b@x.org")
    led.set_alias("p@x.org", frozenset({"a@x.org"}))
    # a crash mid-append leaves a torn last line: what came before survives
    with open(led.journal_path, "a") as fh:
        fh.write('{"t":"account","address":"c@x.or')
    again = Ledger(tmp_path / "ledger.json")
    data = again.load()
    assert set(data.accounts) == {"a@x.org"} and data.accounts["a@x.org"].hash == "{X}h1"
    assert data.aliases == {"p@x.org": frozenset({"a@x.org"})}
    again.compact()
    assert not again.journal_path.exists()
    raw = json.loads((tmp_path / "ledger.json").read_text())
    assert raw["version"] == LEDGER_VERSION and list(raw["accounts"]) == ["a@x.org"]
    assert (tmp_path / "ledger.json").stat().st_mode & 0o777 == 0o600


def test_ledger_v1_is_migrated(tmp_path: Path) -> None:
    old = {"version": 1, "managed": ["A@x.org", "b@x.org"], "passwordDigests": {"A@x.org": "d"}}
    (tmp_path / "ledger.json").write_text(json.dumps(old))
    led = Ledger(tmp_path / "ledger.json")
    data = led.load()
    assert data.accounts["a@x.org"].digest == "d" and data.accounts["b@x.org"].digest is None
    assert all(e.hash is None for e in data.accounts.values())
    led.compact()  # the migration alone is written back
    assert json.loads((tmp_path / "ledger.json").read_text())["version"] == LEDGER_VERSION


def test_ledger_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ledger.json").write_text(json.dumps({"version": LEDGER_VERSION + 1}))
    with pytest.raises(LedgerError, match="newer"):
        Ledger(tmp_path / "ledger.json").load()


def test_digest_key_rules(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    key = tmp_path / "keys" / "k"
    key.write_text("secret-key\n")
    key.chmod(0o600)
    assert load_key(key, tmp_path / "ledger.json") == b"secret-key"
    beside = tmp_path / "k"
    beside.write_text("x")
    beside.chmod(0o600)
    with pytest.raises(LedgerError, match="beside"):
        load_key(beside, tmp_path / "ledger.json")
    with pytest.raises(LedgerError, match="ledgerKeyFile"):
        load_key(None, tmp_path / "ledger.json")
    a = intent_digest(b"k1", plain("pw"))
    assert a != intent_digest(b"k2", plain("pw")) and "pw" not in a
    assert a != intent_digest(b"k1", PasswordIntent("hash", Secret("pw")))


# --- executors ---------------------------------------------------------------------------


async def test_local_executor_stdin_and_exit_code() -> None:
    res = await LocalExecutor().run(["sh", "-c", "read a; read b; echo $a-$b; exit 3"], "x\ny\n")
    assert res.exit_code == 3 and res.stdout == "x-y\n" and res.duration > 0


async def test_local_executor_deadline_kills_on_the_far_side(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}; exec sleep 30"
    res = await LocalExecutor().run(["sh", "-c", script], None, timeout=1)
    assert res.unknown and res.timed_out
    # timeout(1) killed and reaped it before the executor returned: nothing keeps running
    # (how long that takes is measured by bench/deadlines.py)
    assert not process_alive(int(pid_file.read_text()))


async def test_local_executor_never_uses_a_shell() -> None:
    res = await LocalExecutor().run(["echo", "$HOME; true"])
    assert res.stdout == "$HOME; true\n"


async def test_docker_executor_argv(tmp_path: Path) -> None:
    # a stand-in `docker` that runs what follows `exec -i CONTAINER` here: checks the argv we
    # build and that stdin reaches the command (no Docker engine on this machine)
    shim = tmp_path / "docker"
    shim.write_text('#!/bin/sh\n[ "$1 $2 $3" = "exec -i mail" ] || exit 99\nshift 3\nexec "$@"\n')
    shim.chmod(0o755)
    ex = DockerExecutor("mail", docker=[str(shim)])
    argv = ex.argv(["setup", "email", "list"], 7.2)
    assert argv[1:] == ["exec", "-i", "mail", "timeout", "-k", "5", "8", "setup", "email", "list"]
    res = await ex.run(["sh", "-c", "read a; echo got-$a"], "pw\n", timeout=5)
    assert res.ok and res.stdout == "got-pw\n"


# --- file applier ------------------------------------------------------------------------


def test_file_applier_writes_dms_formats_and_dovecot_accepts_the_hash(tmp_path: Path) -> None:
    fa = FileApplier(tmp_path / "cfg", tmp_path / "mail")
    fa.apply(Op("account_add", "a@x.org", password=plain("correct horse")))
    fa.apply(Op("account_add", "b@x.org", password=PasswordIntent("hash", Secret("{PLAIN}pw"))))
    fa.apply(Op("quota_set", "a@x.org", "2G"))
    fa.apply(Op("restrict_add", "a@x.org", "receive"))
    fa.apply(Op("alias_add", "p@x.org", "a@x.org"))
    fa.apply(Op("alias_add", "p@x.org", "b@x.org"))
    cfg = tmp_path / "cfg"
    accounts = (cfg / files.ACCOUNTS_FILE).read_text().splitlines()
    hash_ = accounts[0].split("|", 1)[1]
    assert hash_.startswith("{BLF-CRYPT}$2b$") and accounts[1] == "b@x.org|{PLAIN}pw"
    assert doveadm_verify(hash_, "correct horse")
    assert not doveadm_verify(hash_, "wrong")
    assert (cfg / files.QUOTAS_FILE).read_text() == "a@x.org:2G\n"
    assert (cfg / files.RECEIVE_ACCESS_FILE).read_text() == "a@x.org \t\t REJECT\n"  # as DMS
    assert (cfg / files.VIRTUAL_FILE).read_text() == "p@x.org a@x.org,b@x.org\n"
    with pytest.raises(FileApplyError, match="already"):
        fa.apply(Op("account_add", "a@x.org", password=plain("x")))
    (tmp_path / "mail" / "x.org" / "a").mkdir(parents=True)
    fa.apply(Op("account_del", "a@x.org", delete_mail_data=True))
    assert (cfg / files.VIRTUAL_FILE).read_text() == "p@x.org b@x.org\n"
    assert (cfg / files.QUOTAS_FILE).read_text() == ""
    assert not (tmp_path / "mail" / "x.org" / "a").exists()
    actual = read_files(cfg)
    assert list(actual.state.accounts) == ["b@x.org"]


def test_file_applier_refuses_to_rewrite_an_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / files.ACCOUNTS_FILE).write_text("a@x.org|{PLAIN}a\nthis line is broken\n")
    with pytest.raises(FileApplyError, match="not rewriting"):
        FileApplier(tmp_path).apply(Op("account_add", "b@x.org", password=plain("b")))
    assert "broken" in (tmp_path / files.ACCOUNTS_FILE).read_text()


def test_a_dms_file_that_is_not_utf8_is_a_located_error_and_never_rewritten(
    tmp_path: Path,
) -> None:
    """Was: a traceback (UnicodeDecodeError) from `plan` and from every pass."""
    from agent.dms.observe import ObserveError

    virtual = tmp_path / files.VIRTUAL_FILE
    virtual.write_bytes(b"b@x.org b@x.org\ncaf\xe9@x.org b@x.org\n")  # saved as latin-1
    with pytest.raises(ObserveError) as info:
        read_files(tmp_path)
    assert str(info.value) == (
        f"{virtual}:2: not UTF-8 text (the first invalid byte is in column 4); "
        "DMS and the agent read this file as UTF-8: save it as UTF-8"
    )
    with pytest.raises(
        FileApplyError, match=r"alias_add p@x\.org: not UTF-8 text \(byte 4 of a line\); save"
    ):
        FileApplier(tmp_path).apply(Op("alias_add", "p@x.org", value="b@x.org"))
    assert virtual.read_bytes() == b"b@x.org b@x.org\ncaf\xe9@x.org b@x.org\n"


def test_observe_waits_out_a_dms_lock(tmp_path: Path) -> None:
    from agent.dms.observe import DmsBusy

    (tmp_path / "delmailuser.lock").write_text("x")
    with pytest.raises(DmsBusy):
        read_files(tmp_path)
