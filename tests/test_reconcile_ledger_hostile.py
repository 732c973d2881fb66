"""A hostile or broken ledger, journal or key: a LedgerError naming file, line and field, never
a traceback; the reconciler fails closed, logs at ERROR and sends one Event per cause."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from agent.events import EventType
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile.ledger import (
    LEDGER_API,
    LEDGER_VERSION,
    Ledger,
    LedgerEntry,
    LedgerError,
    load_key,
)
from agent.reconcile.reconciler import Engine
from agent.settings import Settings


def v2(**parts: object) -> str:
    return json.dumps({"apiVersion": LEDGER_API, "version": LEDGER_VERSION, **parts})


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (v2(accounts={"a@x.org": {"since": "x"}}), "accounts.a@x.org.since: must be a number"),
        (v2(accounts={"a@x.org": {"digest": 7}}), "accounts.a@x.org.digest: must be a string"),
        (v2(accounts={"a@x.org": {"origin": "stolen"}}), "accounts.a@x.org.origin: must be"),
        (v2(accounts={"a@x.org": []}), "accounts.a@x.org: must be an object"),
        (v2(accounts=[1, 2]), "accounts: must be an object"),
        (v2(aliases={"p@x.org": "a@x.org"}), "aliases.p@x.org: must be a list of strings"),
        (json.dumps({"version": 1, "managed": [1]}), "managed: must be a list of strings"),
        ("[]", "not a JSON object"),
        ('{"version": 2, "accou', "unreadable ledger"),
        (json.dumps({"version": 1, "passwordDigests": []}), "passwordDigests: must be an object"),
        (v2(aliases=["p@x.org"]), "aliases: must be an object"),
    ],
)  # fmt: skip
def test_wrong_types_in_the_snapshot_name_the_field(
    tmp_path: Path, snapshot: str, expected: str
) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(snapshot)
    with pytest.raises(LedgerError) as info:
        Ledger(path).load()
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_a_non_utf8_snapshot_is_a_ledger_error(tmp_path: Path) -> None:
    (tmp_path / "ledger.json").write_bytes(b'{"version": 2, "accounts": {"\xff": {}}}')
    with pytest.raises(LedgerError, match="unreadable ledger"):
        Ledger(tmp_path / "ledger.json").load()


@pytest.mark.parametrize(
    ("journal", "expected"),
    [
        (b'{"t":"account","address":"a","entry":{"since":"x"}}\n', ":1: entry.since: must be"),
        (b'{"t":"account","address":7,"entry":{}}\n', ":1: address: must be a string"),
        (b'{"t":"alias","alias":"p@x.org","recipients":"a"}\n', ":1: recipients: must be a list"),
        (b'{"t":"launch"}\n', ":1: t: must be account, forget or alias"),
        (b'{"t":"forget","address":"\xff"}\n{"t":"forget"}\n', ":1: not a journal record"),
        (b'[1]\n', ":1: must be an object"),
        (b'{"t":"forget","address":7}\n', ":1: address: must be a string"),
        (b'{"t":"alias","alias":null,"recipients":[]}\n', ":1: alias: must be a string"),
        # a broken line that is not the last one is an error even when the last one is torn
        (b'{"t":"forget"\n{"t":"forget","address":"a"}\n{"t":"acc', ":1: not a journal record"),
    ],
)  # fmt: skip
def test_journal_lines_with_wrong_types_name_line_and_field(
    tmp_path: Path, journal: bytes, expected: str
) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.journal_path.write_bytes(journal)
    with pytest.raises(LedgerError) as info:
        led.load()
    assert str(info.value).startswith(f"{led.journal_path}{expected}")


def test_a_torn_last_line_is_skipped_and_never_glued_to_the_next(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.journal_path.write_bytes(b'{"t":"forget","address":"z"}\n{"t":"account","addr\xff')
    led.load()
    led.forget_account("nobody")  # nothing to forget: no line
    led.set_alias("p@x.org", frozenset({"a@x.org"}))
    again = Ledger(tmp_path / "ledger.json")
    data = again.load()  # the torn line was cut before the append: no error, nothing lost
    assert data.aliases == {"p@x.org": frozenset({"a@x.org"})}
    assert again.journal_path.read_bytes().startswith(b'{"t":"forget","address":"z"}\n{"t":"alias"')


def test_a_key_others_can_read_or_write_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "ledger.key"
    key.write_text("k\n")
    for mode, word in ((0o644, "read"), (0o640, "read"), (0o666, "change"), (0o620, "change")):
        key.chmod(mode)
        with pytest.raises(LedgerError, match=f"mode {mode:04o} lets others {word}"):
            load_key(key, tmp_path / "ledger.json")
    key.chmod(0o400)
    assert load_key(key, tmp_path / "ledger.json") == b"k"


def test_a_kubelet_secret_volume_mode_is_the_pod_specs(tmp_path: Path) -> None:
    """The shipped manifests mount the key 0444 (the agent is not root and no fsGroup is set):
    only containers that mount the volume see it."""
    mount = tmp_path / "secrets"
    data = mount / "..2026_01_01"
    data.mkdir(parents=True)
    (data / "ledger.key").write_text("k\n")
    (data / "ledger.key").chmod(0o444)
    (mount / "..data").symlink_to(data.name)
    (mount / "ledger.key").symlink_to("..data/ledger.key")
    assert load_key(mount / "ledger.key", tmp_path / "ledger.json") == b"k"


def test_create_ledger_key_makes_a_private_random_key_once(tmp_path: Path) -> None:
    key = tmp_path / "var" / "ledger.key"
    first = load_key(key, tmp_path / "cfg" / "ledger.json", create=True)
    assert len(first) == 64 and (key.stat().st_mode & 0o777) == 0o600
    assert load_key(key, tmp_path / "cfg" / "ledger.json", create=True) == first
    with pytest.raises(LedgerError, match="No such file"):
        load_key(tmp_path / "absent.key", tmp_path / "cfg" / "ledger.json")


def test_the_example_settings_create_their_key_instead_of_shipping_one() -> None:
    root = Path(__file__).parent.parent
    assert not (root / "examples" / "ledger.key").exists()
    from agent.settings import load_settings

    rec = load_settings(root / "examples" / "local.yaml", {}).reconcile
    assert rec.create_ledger_key and rec.ledger_key_file == Path("var/ledger.key")


class Events:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def emit(self, reason: str, message: str, type: EventType = "Normal") -> None:
        self.sent.append((reason, message))


async def test_a_ledger_failure_is_an_error_log_and_one_event_per_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "k").write_text("k\n")
    os.chmod(keys / "k", 0o600)
    settings = Settings.model_validate(
        {
            "dms": {"configDir": str(cfg), "executor": {"kind": "file"}},
            "reconcile": {"ledgerKeyFile": str(keys / "k")},
        }
    )
    events = Events()
    engine = Engine(settings, None, events)
    ledger = cfg / "dms-agent-ledger.json"
    ledger.write_text('{"version": 2, "accou')  # truncated: used to fail closed in silence
    state = MailState(accounts={"a@x.org": Account("a@x.org")})
    state.passwords["a@x.org"] = PasswordIntent("plain", Secret("pw"))
    desired = Desired(state=state)
    with caplog.at_level(logging.ERROR, "dms_agent.reconcile"):
        for _ in range(3):
            report = await engine.run_pass(desired)
            assert report.error is not None and "unreadable ledger" in report.error
        ledger.write_text(v2(accounts={"a@x.org": {"since": "x"}}))  # another cause
        await engine.run_pass(desired)
    assert [r for r, _ in events.sent] == ["LedgerUnusable", "LedgerUnusable"]
    assert "unreadable ledger" in events.sent[0][1] and "since" in events.sent[1][1]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "the ledger is unusable" in errors[0].getMessage()


def test_the_streamed_snapshot_is_the_ledgers_json(tmp_path: Path) -> None:
    """compact() streams the snapshot (100,000 accounts as one dict and string cost ~80 MB)."""
    led = Ledger(tmp_path / "ledger.json")
    led.load()
    led.set_accounts({f'u{i}"@x.org': LedgerEntry(f"d{i}", None, "adopted", i) for i in range(3)})
    led.set_alias("p@x.org", frozenset({"u0@x.org", "u1@x.org"}))
    led.compact()
    assert json.loads(led.path.read_text()) == led.data.as_json()
    assert Ledger(tmp_path / "ledger.json").load() == led.data


# --- survivors of the second mutation run ----------------------------------------------------


def test_a_key_others_may_only_execute_is_accepted(tmp_path: Path) -> None:
    """Only read and write bits of group and others count: an execute bit leaks nothing."""
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "ledger.key"
    key.write_text("k\n")
    key.chmod(0o611)
    assert load_key(key, tmp_path / "ledger.json") == b"k"


def test_a_created_key_is_logged_with_its_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "var" / "ledger.key"
    with caplog.at_level(logging.INFO, logger="dms_agent.ledger"):
        load_key(key, tmp_path / "cfg" / "ledger.json", create=True)
    assert caplog.messages == [f"{key}: no digest key; created a new random one (createLedgerKey)"]


def test_an_unreadable_or_unwritable_journal_or_snapshot_is_a_located_error(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.journal_path.mkdir()  # a folder where the journal should be
    with pytest.raises(LedgerError) as read:
        led.load()
    assert str(read.value) == f"{led.journal_path}: Is a directory"
    led.journal_path.rmdir()
    led.load()
    led.journal_path.mkdir()
    with pytest.raises(LedgerError) as write:
        led.set_alias("p@x.org", frozenset({"a"}))
    assert str(write.value) == f"{led.journal_path}: not written: Is a directory"
    led.journal_path.rmdir()
    led.set_alias("p@x.org", frozenset({"a"}))
    led.path.mkdir()  # a folder where the snapshot should be
    with pytest.raises(LedgerError) as compact:
        led.compact()
    assert str(compact.value) == f"{led.path}: not written: Is a directory"
    assert led.journal_path.exists()  # kept: nothing it holds is lost


def test_a_journal_of_only_a_torn_line_loads_empty_and_takes_appends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.journal_path.write_bytes(b'{"t":"account","addr')  # the first append, torn
    assert led.load().accounts == {}
    for n in (1, 2):  # the torn bytes are cut once, then each record is appended after the other
        led.set_account(f"u{n}@x.org", LedgerEntry(f"d{n}", None))
    again = Ledger(tmp_path / "ledger.json").load()
    assert sorted(again.accounts) == ["u1@x.org", "u2@x.org"]
    assert led.journal_path.read_bytes().count(b"\n") == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dms_agent.ledger"):
        Ledger(tmp_path / "ledger.json").load()  # a whole journal: nothing called torn
    assert caplog.messages == []


def test_a_clean_journals_last_record_survives_the_next_append(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.load()
    led.set_account("a@x.org", LedgerEntry("d1", None))
    led.set_account("b@x.org", LedgerEntry("d2", None))
    again = Ledger(tmp_path / "ledger.json")
    again.load()
    again.set_account("c@x.org", LedgerEntry("d3", None))  # after a restart: appended, not cut
    assert sorted(Ledger(tmp_path / "ledger.json").load().accounts) == [
        "a@x.org",
        "b@x.org",
        "c@x.org",
    ]


def test_an_alias_emptied_in_the_journal_that_was_never_recorded(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.journal_path.write_bytes(b'{"t":"alias","alias":"p@x.org","recipients":[]}\n')
    assert led.load().aliases == {}


def test_a_snapshot_with_several_aliases_reads_back(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.json")
    led.load()
    for alias in ("p@x.org", "q@x.org", "r@x.org"):
        led.set_alias(alias, frozenset({"a@x.org"}))
    led.compact()
    assert Ledger(tmp_path / "ledger.json").load().aliases == led.data.aliases


def test_a_journal_folded_before_any_append_takes_the_next_one(tmp_path: Path) -> None:
    """After a restart: a clean journal is replayed, the first pass changes nothing but folds
    it into the snapshot, and the next pass's record starts a new journal."""
    led = Ledger(tmp_path / "ledger.json")
    led.load()
    led.set_account("a@x.org", LedgerEntry("d1", None))
    again = Ledger(tmp_path / "ledger.json")
    again.load()
    again.compact()
    assert not again.journal_path.exists()
    again.set_account("b@x.org", LedgerEntry("d2", None))
    assert sorted(Ledger(tmp_path / "ledger.json").load().accounts) == ["a@x.org", "b@x.org"]
