"""The ledger's records, field by field: what is written, what is read back, what a migration
keeps (found by bench/mutation.py; the crash cases are in test_reconcile_units)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from agent.fsio import write_file
from agent.reconcile.ledger import (
    LEDGER_API,
    LEDGER_VERSION,
    Ledger,
    LedgerData,
    LedgerEntry,
    LedgerError,
    load_key,
    migrate,
    new_entry,
)


def test_entry_round_trip_and_defaults() -> None:
    entry = LedgerEntry("d", "{X}h", "adopted", 12.5)
    raw = entry.as_json()
    assert raw == {"digest": "d", "hash": "{X}h", "origin": "adopted", "since": 12.5}
    assert LedgerEntry.from_json(raw, "e") == entry
    # absent fields: no digest, no hash, "created", since 0
    assert LedgerEntry.from_json({}, "e") == LedgerEntry(None, None, "created", 0.0)
    # a wrongly typed field is refused, named by its path (the ledger fails closed)
    for field_name, odd in (("digest", 5), ("hash", ["x"]), ("origin", "elsewhere"),
                            ("since", "7"), ("since", True)):  # fmt: skip
        with pytest.raises(LedgerError, match=rf"^e\.{field_name}: must be"):
            LedgerEntry.from_json({field_name: odd}, "e")


def test_new_entry_is_stamped_now() -> None:
    before = time.time()
    entry = new_entry("d", "h", "adopted")
    assert (entry.digest, entry.hash, entry.origin) == ("d", "h", "adopted")
    assert before <= entry.since <= time.time()


def test_data_as_json_is_sorted_and_versioned() -> None:
    data = LedgerData(
        accounts={"b@x.org": LedgerEntry("2", None), "a@x.org": LedgerEntry("1", "h")},
        aliases={"z@x.org": frozenset({"r2", "r1"}), "l@x.org": frozenset({"r"})},
    )
    out = data.as_json()
    assert (out["apiVersion"], out["version"]) == (LEDGER_API, LEDGER_VERSION)
    assert list(out["accounts"]) == ["a@x.org", "b@x.org"]
    assert out["accounts"]["a@x.org"]["digest"] == "1"
    assert out["aliases"] == {"l@x.org": ["r"], "z@x.org": ["r1", "r2"]}
    assert migrate(json.loads(json.dumps(out)), "here") == data


def test_migrate_v2_drops_empty_aliases_and_v1_keeps_only_what_it_knew() -> None:
    v2 = {"version": 2, "accounts": {"a@x.org": {"digest": "d"}}, "aliases": {"l": [], "m": ["r"]}}
    data = migrate(v2, "here")
    assert data.aliases == {"m": frozenset({"r"})}
    assert data.accounts == {"a@x.org": LedgerEntry("d", None)}
    assert migrate({"version": 2}, "here") == LedgerData()
    assert migrate({"version": 1}, "here") == LedgerData()
    v1 = migrate({"version": 1, "managed": ["A@X.org"], "passwordDigests": {"A@X.org": 3}}, "w")
    assert v1.accounts == {"a@x.org": LedgerEntry(None, None, "created", 0.0)}
    for bad, why in [
        ({"version": 0}, "w: unknown ledger version 0"),
        ({}, "w: unknown ledger version None"),
        ({"version": 3}, "w: ledger version 3 was written by a newer dms-agent"),
        ([], "w: the ledger is not a JSON object"),
    ]:
        with pytest.raises(LedgerError) as caught:
            migrate(bad, "w")
        assert str(caught.value).startswith(why)


def test_every_journal_record_replays(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    led = Ledger(path)
    led.load()
    led.set_accounts({"a@x.org": LedgerEntry("da", None), "b@x.org": LedgerEntry("db", "hb")})
    led.set_accounts({})  # nothing: nothing written
    led.record_hash("a@x.org", "{X}ha")
    led.record_hash("b@x.org", "hb")  # unchanged: no record
    led.record_hash("nobody@x.org", "h")  # not managed: ignored
    led.set_alias("l@x.org", frozenset({"r1", "r2"}))
    led.set_alias("m@x.org", frozenset({"r"}))
    led.set_alias("m@x.org", frozenset())  # emptied: the alias is no longer managed
    led.forget_account("b@x.org")
    led.forget_account("b@x.org")  # already gone: no record
    lines = led.journal_path.read_text().splitlines()
    assert [json.loads(x)["t"] for x in lines] == [
        *("account", "account", "account"),
        *("alias", "alias", "alias", "forget"),
    ]
    assert led.journal_path.stat().st_mode & 0o777 == 0o600
    again = Ledger(path)
    data = again.load()
    assert data.accounts == {"a@x.org": LedgerEntry("da", "{X}ha")}
    assert data.aliases == {"l@x.org": frozenset({"r1", "r2"})}
    assert data == led.data
    # a record this agent does not know fails closed, named by file and line
    with open(led.journal_path, "a") as fh:
        fh.write('{"t":"future","x":1}\n{"t":"forget","address":"a@x.org"}\n')
    with pytest.raises(LedgerError, match=rf"journal:{len(lines) + 1}: t: must be"):
        Ledger(path).load()


def test_compact_writes_only_when_something_changed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    led = Ledger(path)
    led.load()
    led.compact()
    assert not path.exists()  # an idle pass writes nothing
    led.set_account("a@x.org", LedgerEntry("d", "h"))
    led.compact()
    first = path.stat().st_ino  # each write is a new file (rename)
    assert json.loads(path.read_text())["accounts"]["a@x.org"]["hash"] == "h"
    assert path.read_text().endswith("}\n")
    fresh = Ledger(path)
    fresh.load()
    fresh.compact()  # loaded a current snapshot and no journal: nothing to write
    assert path.stat().st_ino == first


def test_the_writer_the_ledger_uses_keeps_or_sets_modes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_file(path, "one")
    assert path.read_text() == "one" and path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o640)
    write_file(path, "two")  # an existing file keeps its mode
    assert path.read_text() == "two" and path.stat().st_mode & 0o777 == 0o640
    write_file(path, "three", mode=0o600)
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temp file left


def test_load_key_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    missing = tmp_path / "keys" / "absent"
    with pytest.raises(LedgerError, match=f"^{missing}: No such file"):
        load_key(missing, tmp_path / "ledger.json")
    empty = tmp_path / "keys" / "empty"
    empty.write_text(" \n")
    empty.chmod(0o600)
    with pytest.raises(LedgerError, match=f"^{empty}: the digest key is empty$"):
        load_key(empty, tmp_path / "ledger.json")
    sneaky = tmp_path / "keys" / ".." / "k"  # beside the ledger, by another spelling
    sneaky.write_text("key")
    sneaky.chmod(0o600)
    with pytest.raises(LedgerError, match="must not live beside the ledger"):
        load_key(sneaky, tmp_path / "ledger.json")


def test_journal_details(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ledger.json"
    led = Ledger(path)
    assert led.journal_path == tmp_path / "ledger.json.journal"
    led.load()
    led.set_accounts({"a@x.org": LedgerEntry("d", "h")})
    assert Ledger(path).load().accounts == {"a@x.org": LedgerEntry("d", "h")}  # as written
    led.set_alias("never@x.org", frozenset())  # emptying an unmanaged alias: no error
    led.compact()
    first = path.stat().st_ino  # each write is a new file (rename)
    led.compact()  # compacted already: nothing new to write
    assert path.stat().st_ino == first
    # a torn last line (a crash mid-append) is ignored and named by file and line; a broken
    # line before the end is not a crash's trace: the ledger fails closed
    caplog.set_level(logging.INFO, "dms_agent.ledger")
    led.journal_path.write_text('{"t":"forget","address":"nobody@x.org"}\n{"t":"account"')
    Ledger(path).load()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{led.journal_path}:2: ignoring a torn last journal line"]
    led.journal_path.write_text(
        '{"t":"forget","address":"nobody@x.org"}\n{"t":"account"\n'
        '{"t":"alias","alias":"l@x.org","recipients":[]}\n'
    )
    with pytest.raises(LedgerError, match=r"journal:2: not a journal record"):
        Ledger(path).load()


def test_v1_migration_is_logged_with_its_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dms_agent.ledger")
    migrate({"version": 1, "managed": []}, "/cfg/ledger.json")
    assert [r.getMessage() for r in caplog.records] == [
        f"/cfg/ledger.json: ledger version 1 migrated to version {LEDGER_VERSION}"
    ]


def test_missing_key_setting_is_named() -> None:
    with pytest.raises(LedgerError) as caught:
        load_key(None, Path("/cfg/ledger.json"))
    assert str(caught.value) == (
        "reconcile.ledgerKeyFile is not set: the password digest key is needed"
    )
