"""The one file writer, and every caller of it: a planted symlink is never followed.

The attack (issue #15): whoever can write to a folder the agent writes into plants a symlink at
the temp name or at the target; a writer that follows it writes the account hashes into the
link's target and chmods it. Each test plants links and checks the victim is untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import fsio
from agent.checks.verdict import write_atomically
from agent.cli import main
from agent.dkim.byo import generate_key, install_byo_key
from agent.dkim.signing import write_signing
from agent.dkim.state import save_state
from agent.dms.fileapply import FileApplier
from agent.lb.sequence import SequenceSource
from agent.mailstate.model import DkimSpec, PasswordIntent, Secret
from agent.reconcile.apply import ApplyLock
from agent.reconcile.ledger import Ledger, LedgerEntry, LedgerError
from agent.reconcile.plan import Op
from tests.reconcile_rig import DmsRig

VICTIM_TEXT = "victim: must stay as it is\n"


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir()
    path.write_text(VICTIM_TEXT)
    path.chmod(0o600)
    yield path
    assert path.read_text() == VICTIM_TEXT, "the write went through a planted link"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "a planted link's target was chmodded"


def plant(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


# --- the writer itself ---------------------------------------------------------------------


def test_write_sets_mode_on_the_descriptor_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        fsio.write_file(tmp_path / "f", "x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644
    (tmp_path / "f").chmod(0o640)
    fsio.write_file(tmp_path / "f", b"y")  # no mode: the replaced file's mode is kept
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640
    assert (tmp_path / "f").read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temp file left behind


def test_links_at_the_temp_names_are_skipped_never_opened(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(fsio.secrets, "token_hex", lambda n: next(names))
    plant(tmp_path / ".target.aaaa.tmp", victim)  # an attacker who guessed the first name
    fsio.write_file(tmp_path / "target", "secret hashes\n", mode=0o600)
    assert (tmp_path / "target").read_text() == "secret hashes\n"
    assert not (tmp_path / "target").is_symlink()


def test_a_link_at_the_target_is_refused_with_its_path(tmp_path: Path, victim: Path) -> None:
    link = plant(tmp_path / "target", victim)
    with pytest.raises(OSError, match="symbolic link") as info:
        fsio.write_file(link, "x", mode=0o644)
    assert info.value.filename == str(link)
    with pytest.raises(OSError, match="symbolic link"):
        fsio.append_file(link, "x")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# --- every caller --------------------------------------------------------------------------


def test_file_applier_ignores_the_old_fixed_temp_name(tmp_path: Path, victim: Path) -> None:
    """The issue's reproduction: a link at the fixed temp name took every hash and a chmod."""
    cfg = tmp_path / "cfg"
    plant(cfg / ".postfix-accounts.cf.dms-agent.tmp", victim)
    fa = FileApplier(cfg)
    fa.apply(Op("account_add", "a@x.org", password=PasswordIntent("hash", Secret("{PLAIN}pw"))))
    assert "a@x.org|{PLAIN}pw" in (cfg / "postfix-accounts.cf").read_text()


def test_file_applier_refuses_a_link_at_a_dms_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    victim = tmp_path / "victim.cf"
    victim.write_text("b@x.org|{PLAIN}b\n")  # readable as DMS's format: only the write refuses
    plant(cfg / "postfix-accounts.cf", victim)
    with pytest.raises(OSError, match="symbolic link"):
        FileApplier(cfg).apply(
            Op("account_add", "a@x.org", password=PasswordIntent("hash", Secret("{PLAIN}p")))
        )
    assert victim.read_text() == "b@x.org|{PLAIN}b\n"


def test_ledger_snapshot_and_journal_refuse_links(tmp_path: Path, victim: Path) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.load()
    plant(led.journal_path, victim)
    with pytest.raises(LedgerError, match="symbolic link"):
        led.set_account("a@x.org", LedgerEntry("d", "h"))
    led.journal_path.unlink()
    led.set_account("a@x.org", LedgerEntry("d", "h"))
    plant(led.path, victim)
    with pytest.raises(LedgerError, match="symbolic link"):
        led.compact()


def test_apply_lock_refuses_a_link(tmp_path: Path, victim: Path) -> None:
    lock = ApplyLock(plant(tmp_path / "lock", victim))
    with pytest.raises(OSError, match="symbolic link"):
        lock.try_acquire()


def test_verdict_file_refuses_a_link(tmp_path: Path, victim: Path) -> None:
    target = plant(tmp_path / "verdict", victim)
    with pytest.raises(OSError, match="symbolic link"):
        write_atomically(target, "unhealthy 1\n")
    target.unlink()
    write_atomically(target, "healthy 1\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # the probe may run as another user


def test_lb_sequence_file_refuses_a_link(
    tmp_path: Path, victim: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seq = SequenceSource(plant(tmp_path / "lb-state.json", victim), clock=lambda: 1.0)
    with caplog.at_level(logging.WARNING, "dms_agent.lb"):
        assert asyncio.run(seq.next()) == 1000  # the clock floor still protects
    assert "symbolic link" in caplog.text


def test_dkim_files_refuse_links(tmp_path: Path, victim: Path) -> None:
    cfg = tmp_path / "cfg"
    key = generate_key("x.org", DkimSpec(selector="s1", key_type="ed25519"))
    plant(cfg / "opendkim" / "keys" / "x.org" / "s1.txt", victim)
    with pytest.raises(OSError, match="symbolic link"):
        install_byo_key(cfg, "opendkim", key)
    plant(cfg / "opendkim" / "KeyTable", victim)
    with pytest.raises(OSError, match="symbolic link"):
        write_signing(cfg, "opendkim", {"x.org": "s1"}, {}, "/tmp/docker-mailserver")
    with pytest.raises(OSError, match="symbolic link"):
        save_state(plant(tmp_path / "dkim-state.json", victim), {})


def test_import_refuses_a_link_at_an_output_document(dms_rig: DmsRig, victim: Path) -> None:
    out = dms_rig.root / "imported"
    plant(out / "passwords.yaml", victim)
    settings = dms_rig.settings().model_dump(mode="json", by_alias=True, exclude_defaults=True)
    settings["sources"] = [{"kind": "path", "path": str(out)}]
    cfg = dms_rig.root / "settings.yaml"
    cfg.write_text(json.dumps(settings))
    assert main(["import", "-c", str(cfg), "-o", str(out), "--force"]) != 0
