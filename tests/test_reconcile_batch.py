"""Ops of one kind done as a batch: one write per DMS file and one ledger append for the run,
the same files and ledger as op by op, each op's own error, and nothing lost to a file changed
on disk meanwhile or to a write that fails."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.dms import fileapply, files
from agent.dms.fileapply import FileApplier, FileApplyError, FileResult
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile import apply as apply_module
from agent.reconcile import ledger as ledger_module
from agent.reconcile import reconciler
from agent.reconcile.apply import Applier, OpResult
from agent.reconcile.ledger import LEDGER_NAME, Ledger, new_entry
from agent.reconcile.plan import Op
from tests.test_reconcile_replan import engine


def hashed(value: str) -> PasswordIntent:
    return PasswordIntent("hash", Secret(value))


def seeded(folder: Path) -> FileApplier:
    folder.mkdir()
    (folder / files.ACCOUNTS_FILE).write_text("a@x.org|{PLAIN}a\n")
    (folder / files.QUOTAS_FILE).write_text("a@x.org:1G\n")
    return FileApplier(folder)


def count_writes(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[str]:
    written: list[str] = []
    real = module.write_file

    def counting(path: Path, data: Any, *args: Any, **kwargs: Any) -> None:
        written.append(path.name)
        real(path, data, *args, **kwargs)

    monkeypatch.setattr(module, "write_file", counting)
    return written


def count_journal_lines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of records in each append to the ledger's journal."""
    appends: list[int] = []
    real = ledger_module.append_file

    def counting(path: Path, data: Any, mode: int = 0o600) -> None:
        lines = list(data)
        appends.append(len(lines))
        real(path, lines, mode)

    monkeypatch.setattr(ledger_module, "append_file", counting)
    return appends


ADDS = [
    Op("account_add", "b@x.org", password=hashed("{PLAIN}b")),
    Op("account_add", "a@x.org", password=hashed("{PLAIN}again")),  # exists: fails alone
    Op("account_add", "c@x.org", password=hashed("{PLAIN}c")),
]


def test_a_batch_writes_each_file_once_and_leaves_what_single_ops_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = seeded(tmp_path / "single")
    for op in ADDS:
        try:
            single.apply(op)
        except FileApplyError:
            pass
    batch = seeded(tmp_path / "batch")
    written = count_writes(monkeypatch, fileapply)
    results = batch.apply_batch(ADDS)
    assert written == [files.ACCOUNTS_FILE]
    assert results[0] == FileResult("{PLAIN}b") and results[2] == FileResult("{PLAIN}c")
    assert isinstance(results[1], FileApplyError) and str(results[1]) == "a@x.org already exists"
    for name in (files.ACCOUNTS_FILE, files.QUOTAS_FILE):
        assert (batch.config_dir / name).read_bytes() == (single.config_dir / name).read_bytes()
    # a later op of the batch sees the earlier ones: a quota for an account added just before
    quotas = [Op("quota_set", "b@x.org", "2G"), Op("quota_set", "z@x.org", "3G")]
    written.clear()
    outcome = batch.apply_batch(quotas)
    assert written == [files.QUOTAS_FILE]
    assert outcome[0] == FileResult() and str(outcome[1]) == "z@x.org does not exist"
    quota_text = (batch.config_dir / files.QUOTAS_FILE).read_text()
    assert quota_text == "a@x.org:1G\nb@x.org:2G\n"


def test_a_file_changed_on_disk_during_a_batch_is_kept_and_the_ops_done_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fa = seeded(tmp_path / "cfg")
    path = fa.config_dir / files.ACCOUNTS_FILE
    real = FileApplier.apply
    calls = 0

    def apply_then_edit(self: FileApplier, op: Op) -> FileResult:
        nonlocal calls
        calls += 1
        result = real(self, op)
        if calls == 2:  # the batch's last op done in memory: someone adds an account
            with path.open("a") as f:
                f.write("outside@x.org|{PLAIN}o\n")
        return result

    monkeypatch.setattr(FileApplier, "apply", apply_then_edit)
    results = fa.apply_batch([ADDS[0], ADDS[2]])
    assert results == [FileResult("{PLAIN}b"), FileResult("{PLAIN}c")]
    assert calls == 4  # in memory, then op by op from the changed file
    assert path.read_text() == (
        "a@x.org|{PLAIN}a\noutside@x.org|{PLAIN}o\nb@x.org|{PLAIN}b\nc@x.org|{PLAIN}c\n"
    )


def test_a_failed_write_fails_every_op_it_carried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fa = seeded(tmp_path / "cfg")
    before = (fa.config_dir / files.ACCOUNTS_FILE).read_text()

    def full(path: Path, data: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(fileapply, "write_file", full)
    results = fa.apply_batch(ADDS)
    assert [type(r) for r in results] == [OSError, FileApplyError, OSError]
    assert "No space left on device" in str(results[0])
    assert (fa.config_dir / files.ACCOUNTS_FILE).read_text() == before


def test_a_batch_checks_accounts_in_its_held_file_not_in_the_addresses_kept_from_disk(
    tmp_path: Path,
) -> None:
    fa = seeded(tmp_path / "cfg")
    fa.apply(Op("quota_set", "a@x.org", "2G"))  # keeps the accounts file's addresses: a only
    # b is added in memory; the file on disk (and the addresses kept from it) still lack it
    results = fa.apply_batch([ADDS[0], Op("quota_set", "b@x.org", "3G")])
    assert results == [FileResult("{PLAIN}b"), FileResult()]
    quota_text = (fa.config_dir / files.QUOTAS_FILE).read_text()
    assert quota_text == "a@x.org:2G\nb@x.org:3G\n"


@pytest.mark.parametrize(("over_the_limit", "writes"), [(0, 1), (1, 2)])
def test_a_file_over_the_batch_limit_is_not_held_but_written_per_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, over_the_limit: int, writes: int
) -> None:
    fa = seeded(tmp_path / "cfg")
    path = fa.config_dir / files.ACCOUNTS_FILE
    # a file of exactly the limit is held; one byte more is read and written per op
    monkeypatch.setattr(fileapply, "BATCH_FILE_LIMIT", path.stat().st_size - over_the_limit)
    written = count_writes(monkeypatch, fileapply)
    results = fa.apply_batch([ADDS[0], ADDS[2]])
    assert results == [FileResult("{PLAIN}b"), FileResult("{PLAIN}c")]
    assert written == [files.ACCOUNTS_FILE] * writes
    assert path.read_text() == "a@x.org|{PLAIN}a\nb@x.org|{PLAIN}b\nc@x.org|{PLAIN}c\n"


def test_a_ledger_batch_appends_its_records_once_even_when_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(tmp_path / "ledger.json")
    appends = count_journal_lines(monkeypatch)
    with pytest.raises(RuntimeError), ledger.batch():
        ledger.set_account("a@x.org", new_entry("d1", "h1", "created"))
        ledger.set_alias("l@x.org", frozenset({"a@x.org"}))
        raise RuntimeError("the op after them failed")
    assert appends == [2]  # what was recorded before the failure is kept
    ledger.set_account("b@x.org", new_entry("d2", "h2", "created"))
    assert appends == [2, 1]  # outside a batch: at once
    reloaded = Ledger(tmp_path / "ledger.json").load()
    assert sorted(reloaded.accounts) == ["a@x.org", "b@x.org"]
    assert reloaded.aliases == {"l@x.org": frozenset({"a@x.org"})}


def file_applier(tmp_path: Path) -> Applier:
    """An applier with no DMS (the file executor's route) on a seeded config folder."""
    seeded(tmp_path / "cfg")
    ledger = Ledger(tmp_path / "ledger.json")
    ledger.load()
    return Applier(ledger, None, ["setup"], 7.0, tmp_path / "cfg", None)


class Clock:
    """``time`` for the applier module: each reading a given number of seconds later."""

    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)

    def monotonic(self) -> float:
        return self.readings.pop(0)


async def test_an_applier_batch_gives_each_op_its_result_and_a_share_of_the_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = file_applier(tmp_path)
    monkeypatch.setattr(apply_module, "time", Clock(10.0, 13.0))
    results = await app.run_batch(ADDS)
    assert results == [  # the batch took 3 s: one each
        OpResult(ADDS[0], "ok", "", 0, 1.0),
        OpResult(ADDS[1], "failed", "a@x.org already exists", None, 1.0),
        OpResult(ADDS[2], "ok", "", 0, 1.0),
    ]
    accounts = app.ledger.data.accounts
    assert sorted(accounts) == ["b@x.org", "c@x.org"]  # the failed op is not recorded
    assert (accounts["b@x.org"].hash, accounts["c@x.org"].hash) == ("{PLAIN}b", "{PLAIN}c")
    # a batch of one op is charged the whole time
    monkeypatch.setattr(apply_module, "time", Clock(20.0, 22.0))
    alone = Op("quota_set", "b@x.org", "1G")
    assert await app.run_batch([alone]) == [OpResult(alone, "ok", "", 0, 2.0)]


async def test_a_stopped_batch_finishes_and_stays_a_stop_when_it_then_crashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = file_applier(tmp_path)
    assert app.files is not None
    started, finish = threading.Event(), threading.Event()

    def crashing(ops: Any) -> Any:
        started.set()
        finish.wait(10)
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(app.files, "apply_batch", crashing)
    task = asyncio.create_task(app.run_batch(ADDS))
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # the batch's writes are under way: waited for
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_pass_groups_runs_of_batchable_ops_of_one_kind_up_to_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconciler, "MAX_BATCH", 2)
    q1, q2, q3, q4, q5 = (Op("quota_set", f"q{i}@x.org", "1G") for i in range(1, 6))
    alias = Op("alias_add", "l@x.org", "q1@x.org")
    alone = Op("quota_set", "slow@x.org", "1G")  # not batchable: always on its own
    ops = [q1, q2, q3, alias, alone, q4, alone, q5]
    groups = list(reconciler._batches(ops, lambda op: op is not alone))
    assert groups == [[q1, q2], [q3], [alias], [alone], [q4], [alone], [q5]]
    assert list(reconciler._batches([], lambda op: True)) == []


async def test_a_first_pass_writes_each_dms_file_once_and_records_every_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"u{i:02d}@x.org" for i in range(40)]
    state = MailState(
        accounts={a: Account(a, quota="1G") for a in names},
        passwords={a: hashed("{PLAIN}" + a) for a in names},
    )
    written = count_writes(monkeypatch, fileapply)
    appended = count_journal_lines(monkeypatch)
    seen: list[tuple[int, int, float | None]] = []
    eng = await engine(tmp_path)
    report = await eng.run_pass(Desired(state), progress=lambda *a: seen.append(a))
    assert report.outcome == "applied", report.describe()
    assert len(report.results) == 80 and not report.failed
    assert written == [files.ACCOUNTS_FILE, files.QUOTAS_FILE]
    assert appended == [40]  # the quota ops record nothing in the ledger
    assert [s[:2] for s in seen] == [(0, 80), (40, 80), (80, 80)]
    dms = tmp_path / "dms"
    assert (dms / files.ACCOUNTS_FILE).read_text() == "".join(f"{a}|{{PLAIN}}{a}\n" for a in names)
    assert (dms / files.QUOTAS_FILE).read_text() == "".join(f"{a}:1G\n" for a in names)
    ledger = json.loads((dms / LEDGER_NAME).read_text())
    assert sorted(ledger["accounts"]) == names
    assert all(e["hash"] == "{PLAIN}" + a for a, e in ledger["accounts"].items())
