"""The applier on its own: which route an op takes, what each kind of result becomes, what the
ledger records, the apply lock and message redaction (found by bench/mutation.py).

A scripted executor answers in-process: these are the applier's decisions, not DMS's (the
`setup` double runs the real commands in test_reconcile_apply and test_reconcile_failsafe)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.executor import Result
from agent.mailstate.model import DkimSpec, PasswordIntent, Secret
from agent.reconcile.apply import (
    MESSAGE_LIMIT,
    Applier,
    ApplyLock,
    LockBusy,
    OpResult,
    safe_message,
)
from agent.reconcile.ledger import Ledger, LedgerEntry
from agent.reconcile.plan import Op


class Scripted:
    """Answers each command with the next scripted Result (or raises it)."""

    def __init__(self, *answers: Result | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list[str], str | None, float]] = []

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        self.calls.append((list(argv), stdin, timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


OK = Result(0, "", "", 0.25)


def plain(value: str = "pw") -> PasswordIntent:
    return PasswordIntent("plain", Secret(value))


def applier(
    tmp_path: Path, executor: Scripted | None, mail: bool = True, config: bool = True
) -> Applier:
    ledger = Ledger(tmp_path / "ledger.json")
    ledger.load()
    return Applier(
        ledger,
        executor,
        ["setup"],
        7.0,
        tmp_path / "cfg" if config else None,
        tmp_path / "mail" if mail else None,
        container_mail_dir="/srv/mail",
    )


# --- messages ---------------------------------------------------------------------------


def test_safe_message_is_the_meaningful_lines_without_colours_or_secrets() -> None:
    # every unlabelled stderr line and DMS's ERROR lines, joined; colours and secrets gone
    res = Result(1, "out line\n", "\x1b[31mERROR\x1b[0m first\n  pw=hunter2 rejected  \n\n", 0)
    assert safe_message(res, ["hunter2", ""]) == "ERROR first | pw=*** rejected"
    assert safe_message(Result(1, "only stdout\n", "  \n", 0)) == "only stdout"
    assert safe_message(Result(1, "", "", 0)) == ""
    assert safe_message(Result(1, "", "x" * (MESSAGE_LIMIT + 100), 0)) == "x" * MESSAGE_LIMIT
    # a secret split over the cut-off is still never shown
    cut = "y" * (MESSAGE_LIMIT - 4) + "hunter2"
    assert "hunter2" not in safe_message(Result(1, "", cut, 0), ["hunter2"])


def test_result_describe() -> None:
    op = Op("quota_set", "a@x.org", "1G")
    assert OpResult(op, "ok", duration=0.123456).describe() == {
        "kind": "quota_set",
        "target": "a@x.org",
        "value": "1G",
        "status": "ok",
        "duration": 0.1235,
    }
    failed = OpResult(op, "failed", "no", 2, 1.0).describe()
    assert (failed["message"], failed["exitCode"], failed["status"]) == ("no", 2, "failed")
    assert "exitCode" not in OpResult(op, "unknown", "lost").describe()


# --- routes and results -----------------------------------------------------------------


async def test_command_results_become_ok_failed_or_unknown(tmp_path: Path) -> None:
    ex = Scripted(
        OK,
        Result(3, "", "bad\n", 0.5),
        Result(None, "", "stream closed", 0.75),
        Result(None, "", "", 1.0, timed_out=True),
        OSError("exec refused"),
    )
    app = applier(tmp_path, ex)
    op = Op("quota_set", "a@x.org", "1G")
    ok = await app.run(op)
    assert (ok.status, ok.exit_code, ok.message, ok.duration) == ("ok", 0, "", 0.25)
    assert ex.calls[0] == (["setup", "quota", "set", "a@x.org", "1G"], None, 7.0)
    failed = await app.run(op)
    assert (failed.status, failed.exit_code, failed.message) == ("failed", 3, "bad")
    assert failed.duration == 0.5
    lost = await app.run(op)
    assert (lost.status, lost.exit_code, lost.message) == (
        "unknown",
        None,
        "outcome unknown: stream closed",
    )
    assert lost.duration == 0.75
    late = await app.run(op)
    assert (late.status, late.message) == ("unknown", "timed out: ")
    refused = await app.run(op)  # the transport refused before the command started
    assert (refused.status, refused.exit_code) == ("failed", 255)
    assert refused.message == "could not run: exec refused"


async def test_op_without_a_setup_form_fails_without_running(tmp_path: Path) -> None:
    ex = Scripted()
    res = await applier(tmp_path, ex).run(Op("nonsense", "x"))  # type: ignore[arg-type]
    assert (res.status, res.message) == ("failed", "no setup command for nonsense")
    assert ex.calls == []


async def test_pre_hashed_passwords_and_no_executor_use_the_files(tmp_path: Path) -> None:
    ex = Scripted()
    hashed = Op("account_add", "a@x.org", password=PasswordIntent("hash", Secret("{PLAIN}p")))
    res = await applier(tmp_path, ex).run(hashed)
    assert res.status == "ok" and ex.calls == []
    assert "a@x.org|{PLAIN}p" in (tmp_path / "cfg" / "postfix-accounts.cf").read_text()
    res = await applier(tmp_path, None).run(Op("alias_add", "l@x.org", "a@x.org"))
    assert res.status == "ok" and res.exit_code == 0 and res.duration >= 0
    broken = await applier(tmp_path, None).run(Op("dkim_add", "x.org", "s"))
    assert broken.status == "failed" and "needs DMS's `setup`" in broken.message
    nowhere = await applier(tmp_path, ex, config=False).run(hashed)
    assert (nowhere.status, nowhere.message) == (
        "failed",
        "a pre-hashed password needs the DMS config folder",
    )


async def test_missing_maildir_is_checked_on_the_mount_or_in_the_mailserver(
    tmp_path: Path,
) -> None:
    purge = Op("account_del", "a@x.org", delete_mail_data=True)
    ex = Scripted(OK)
    await applier(tmp_path, ex).run(purge)  # no maildir on the mount: keep the mail, no -y
    assert ex.calls[-1][0] == ["setup", "email", "del", "a@x.org"]
    (tmp_path / "mail" / "x.org" / "a").mkdir(parents=True)
    await applier(tmp_path, ex := Scripted(OK)).run(purge)
    assert ex.calls[-1][0] == ["setup", "email", "del", "-y", "a@x.org"]
    # not mounted: `test -d` in the mailserver decides (exit 1: missing)
    ex = Scripted(Result(1, "", "", 0), OK, Result(0, "", "", 0), OK)
    app = applier(tmp_path, ex, mail=False)
    await app.run(purge)
    await app.run(purge)
    assert ex.calls[0] == (["test", "-d", "/srv/mail/x.org/a"], None, 7.0)
    assert [c[0][-2] for c in ex.calls[1::2]] == ["del", "-y"]
    # no mail deletion asked: no check at all
    ex = Scripted(OK)
    await applier(tmp_path, ex, mail=False).run(Op("account_del", "a@x.org"))
    assert len(ex.calls) == 1


# --- what the ledger records ------------------------------------------------------------


async def test_completed_ops_are_recorded_failed_ones_are_not(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "postfix-accounts.cf").write_text("a@x.org|{X}after\n")
    ex = Scripted(OK, Result(1, "", "no", 0), OK, OK, OK, OK, OK)
    app = applier(tmp_path, ex)
    led = app.ledger
    await app.run(Op("account_add", "a@x.org", password=plain(), digest="d1"))
    assert led.data.accounts["a@x.org"].digest == "d1"
    assert led.data.accounts["a@x.org"].hash == "{X}after"
    assert led.data.accounts["a@x.org"].origin == "created"
    await app.run(Op("account_add", "b@x.org", password=plain(), digest="d2"))  # failed
    assert "b@x.org" not in led.data.accounts
    led.set_account("a@x.org", LedgerEntry("d1", "{X}old", "adopted", 5.0))
    await app.run(Op("password_update", "a@x.org", password=plain(), digest="d3"))
    # an update keeps the entry's origin and age, with the new digest and hash
    assert led.data.accounts["a@x.org"] == LedgerEntry("d3", "{X}after", "adopted", 5.0)
    await app.run(Op("alias_add", "l@x.org", "a@x.org"))
    await app.run(Op("alias_add", "l@x.org", "b@x.org"))
    assert led.data.aliases["l@x.org"] == frozenset({"a@x.org", "b@x.org"})
    await app.run(Op("alias_del", "l@x.org", "a@x.org"))
    await app.run(Op("alias_del", "u@x.org", "z@x.org"))  # never managed: nothing recorded
    assert led.data.aliases == {"l@x.org": frozenset({"b@x.org"})}
    ex.answers.append(OK)
    await app.run(Op("account_del", "a@x.org"))
    assert "a@x.org" not in led.data.accounts
    # what was recorded is on disk, in the journal
    again = Ledger(tmp_path / "ledger.json")
    assert again.load() == led.data


async def test_a_cancelled_apply_lets_the_running_command_finish(tmp_path: Path) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    class Slow(Scripted):
        async def run(
            self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
        ) -> Result:
            started.set()
            await release.wait()
            return await super().run(argv, stdin, timeout)

    app = applier(tmp_path, Slow(OK))
    task = asyncio.create_task(app.run(Op("alias_add", "l@x.org", "a@x.org")))
    await started.wait()
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # still waiting for the command
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert app.ledger.data.aliases == {"l@x.org": frozenset({"a@x.org"})}  # and recorded


# --- the apply lock ---------------------------------------------------------------------


async def test_apply_lock_is_exclusive_and_waits_a_bounded_time(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    first, second = ApplyLock(path), ApplyLock(path)
    assert first.try_acquire()
    assert path.read_text().strip().isdigit()  # the holder's pid, for people
    assert not second.try_acquire()
    with pytest.raises(LockBusy, match=f"another dms-agent is applying \\({path} is locked\\)"):
        await second.acquire(0.1)
    first.release()
    first.release()  # twice is harmless
    await second.acquire(5)
    assert not ApplyLock(path).try_acquire()
    second.release()
    assert ApplyLock(path).try_acquire()


# --- survivors of the first mutation run --------------------------------------------------


async def test_results_name_their_op_and_the_files_route_measures_itself(tmp_path: Path) -> None:
    ex = Scripted(OSError("refused"))
    app = applier(tmp_path, ex)
    op = Op("quota_set", "a@x.org", "1G")
    refused = await app.run(op)
    assert refused.op is op and refused.duration == 0.0  # nothing ran
    bad = Op("nonsense", "x")  # type: ignore[arg-type]
    assert (await app.run(bad)).op is bad
    none = applier(tmp_path, None)
    for file_op in (Op("alias_add", "l@x.org", "a@x.org"), Op("quota_set", "z@x.org", "1G")):
        before = time.monotonic()
        res = await none.run(file_op)
        took = time.monotonic() - before
        assert res.op is file_op and 0.0 < res.duration <= took  # its own time, measured
    ok, failed = await none.run(Op("alias_add", "m@x.org", "a@x.org")), res
    assert (ok.message, ok.exit_code) == ("", 0)
    assert (failed.status, failed.exit_code, failed.message) == (
        "failed",
        None,
        "z@x.org does not exist",
    )
    hashed = Op("account_add", "a@x.org", password=PasswordIntent("hash", Secret("{PLAIN}p")))
    assert (await applier(tmp_path, ex, config=False).run(hashed)).op is hashed


async def test_applier_passes_its_settings_on(tmp_path: Path) -> None:
    dkim = Op("dkim_add", "x.org", "s1", dkim=DkimSpec("s1", "ed25519"))
    ledger = Ledger(tmp_path / "ledger.json")
    ledger.load()
    ex = Scripted(OK, Result(1, "", "", 0), OK)
    app = Applier(ledger, ex, ["setup"], 3.0, None, None, "rspamd")
    assert (await app.run(dkim)).status == "ok"
    assert ex.calls[0][0] == [
        *("setup", "config", "dkim", "keytype", "ed25519"),
        *("selector", "s1", "domain", "x.org"),
    ]
    # DMS's own mail folder by default, when the mail is not mounted here
    await app.run(Op("account_del", "a@x.org", delete_mail_data=True))
    assert ex.calls[1][0] == ["test", "-d", "/var/mail/x.org/a"]
    # no config folder here: the ledger learns no hash, and nothing breaks
    ex.answers.append(OK)
    assert (await app.run(Op("account_add", "b@x.org", password=plain()))).status == "ok"
    assert ledger.data.accounts["b@x.org"].hash is None
    # the file route deletes the mail in the mounted mail folder
    (tmp_path / "mail" / "x.org" / "c").mkdir(parents=True)
    files_only = applier(tmp_path, None)
    hashed = PasswordIntent("hash", Secret("{PLAIN}c"))
    await files_only.run(Op("account_add", "c@x.org", password=hashed))
    await files_only.run(Op("account_del", "c@x.org", delete_mail_data=True))
    assert not (tmp_path / "mail" / "x.org" / "c").exists()


async def test_recreated_account_gets_a_fresh_entry(tmp_path: Path) -> None:
    app = applier(tmp_path, Scripted(OK))
    app.ledger.set_account("a@x.org", LedgerEntry("old", "{X}old", "adopted", 5.0))
    await app.run(Op("account_add", "a@x.org", password=plain(), digest="new"))
    entry = app.ledger.data.accounts["a@x.org"]
    assert (entry.digest, entry.origin) == ("new", "created") and entry.since > 5.0


def test_safe_message_strips_colours_from_the_line_it_shows() -> None:
    res = Result(1, "", "\x1b[1;31mERROR:\x1b[0m alias exists\n", 0)
    assert safe_message(res) == "ERROR: alias exists"


async def test_apply_lock_waits_for_the_holder_and_its_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    ApplyLock(path).release()  # never acquired: harmless
    holder = ApplyLock(path)
    assert holder.try_acquire()
    assert path.stat().st_mode & 0o777 == 0o600
    waiter = asyncio.create_task(ApplyLock(path).acquire(30))
    await asyncio.sleep(0)
    assert not waiter.done()
    holder.release()  # the waiter gets it within its wait
    async with asyncio.timeout(10):
        await waiter


# --- survivors of the second mutation run -------------------------------------------------


async def test_a_direct_mail_deletion_without_the_mail_folder_fails_and_others_go_on(
    tmp_path: Path,
) -> None:
    """Without dms.mailDir a direct deletion that should take the mail is refused (DMS's own
    `email del` cannot be used for it); the files route needs no mail folder otherwise."""
    app = applier(tmp_path, Scripted(), mail=False)
    hashed = PasswordIntent("hash", Secret("{PLAIN}p"))
    assert (await app.run(Op("account_add", "a@x.org", password=hashed))).status == "ok"
    purge = Op("account_del", "a@x.org", delete_mail_data=True, direct=True)
    res = await app.run(purge)
    assert (res.status, res.message) == (
        "failed",
        "deleteMailData without DMS's `email del` needs the mail folder (dms.mailDir)",
    )
    assert "a@x.org" in (tmp_path / "cfg" / "postfix-accounts.cf").read_text()  # still there
    kept = await app.run(Op("account_del", "a@x.org", direct=True))
    assert kept.status == "ok"


def test_re_taking_the_lock_it_held_last_writes_nothing(tmp_path: Path) -> None:
    """The holder's pid is rewritten only when another process held the lock last."""
    path = tmp_path / "lock"
    lock = ApplyLock(path)
    assert lock.try_acquire()
    lock.release()
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # a past stamp any write would move
    assert lock.try_acquire()
    lock.release()
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert path.read_text() == f"{os.getpid()}\n"
    path.write_text("12345\n")  # another process held it last
    assert lock.try_acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    lock.release()


async def test_a_stop_stays_a_stop_when_the_op_then_crashes(tmp_path: Path) -> None:
    """Cancelled while its command runs, the applier waits for it; should the op then fail with
    an unexpected error, the stop is still what the caller sees (the crash is not raised)."""
    started, finish = asyncio.Event(), asyncio.Event()

    class Crashing:
        async def run(
            self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
        ) -> Result:
            started.set()
            await finish.wait()
            raise RuntimeError("the transport broke")

    app = applier(tmp_path, None)
    app.executor = Crashing()
    task = asyncio.create_task(app.run(Op("alias_add", "l@x.org", "a@x.org")))
    async with asyncio.timeout(10):
        await started.wait()
    task.cancel()
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
