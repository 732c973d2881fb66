"""What an update's pass reuses instead of reading DMS's files again, only while they are
unchanged: the accounts file's addresses for a quota op's "does the account exist" check, and
the last observation of the folder (then taken on the event loop, without a worker thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.dms import fileapply, files
from agent.dms.fileapply import FileApplier, FileApplyError
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile.plan import Op
from tests.test_reconcile_replan import engine


def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per parse of an accounts file."""
    calls: list[int] = []
    real = files.iter_accounts

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(files, "iter_accounts", counting)
    return calls


def test_a_quota_op_reuses_the_addresses_of_an_unchanged_accounts_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = tmp_path / files.ACCOUNTS_FILE
    accounts.write_text("a@x.org|{PLAIN}a\nb@x.org|{PLAIN}b\n")
    fa = FileApplier(tmp_path)
    fa.apply(Op("quota_set", "a@x.org", "1G"))
    calls = parses(monkeypatch)
    fa.apply(Op("quota_set", "a@x.org", "2G"))
    FileApplier(tmp_path).apply(Op("quota_set", "b@x.org", "3G"))  # a new pass too
    assert calls == []
    assert (tmp_path / files.QUOTAS_FILE).read_text() == "a@x.org:2G\nb@x.org:3G\n"


def test_a_changed_accounts_file_is_read_again(tmp_path: Path) -> None:
    accounts = tmp_path / files.ACCOUNTS_FILE
    accounts.write_text("a@x.org|{PLAIN}a\nb@x.org|{PLAIN}b\n")
    fa = FileApplier(tmp_path)
    fa.apply(Op("quota_set", "b@x.org", "1G"))
    # replaced without b (as `sed -i` does): b's quota is refused
    replacement = tmp_path / "new"
    replacement.write_text("a@x.org|{PLAIN}a\n")
    replacement.rename(accounts)
    with pytest.raises(FileApplyError, match=r"^b@x.org does not exist$"):
        fa.apply(Op("quota_set", "b@x.org", "2G"))
    # appended in place (as `>>` does): c is there
    with accounts.open("a") as f:
        f.write("c@x.org|{PLAIN}c\n")
    fa.apply(Op("quota_set", "c@x.org", "3G"))
    assert (tmp_path / files.QUOTAS_FILE).read_text() == "b@x.org:1G\nc@x.org:3G\n"
    # an unreadable line is never remembered as "no such account" nor passed over
    with accounts.open("a") as f:
        f.write("not an account line\n")
    with pytest.raises(FileApplyError, match=r"^not rewriting postfix-accounts.cf: .*:3: "):
        fa.apply(Op("quota_set", "a@x.org", "4G"))


@pytest.mark.parametrize(("over_the_limit", "parsed"), [(0, []), (1, [1])])
def test_the_addresses_of_an_accounts_file_over_the_limit_are_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, over_the_limit: int, parsed: list[int]
) -> None:
    accounts = tmp_path / files.ACCOUNTS_FILE
    accounts.write_text("a@x.org|{PLAIN}a\n")
    # a file of exactly the limit has its addresses kept; one byte more is parsed per op
    monkeypatch.setattr(fileapply, "BATCH_FILE_LIMIT", accounts.stat().st_size - over_the_limit)
    fa = FileApplier(tmp_path)
    fa.apply(Op("quota_set", "a@x.org", "1G"))
    calls = parses(monkeypatch)
    fa.apply(Op("quota_set", "a@x.org", "2G"))
    assert calls == parsed
    assert (tmp_path / files.QUOTAS_FILE).read_text() == "a@x.org:2G\n"


async def test_an_unchanged_folder_is_observed_again_without_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = await engine(tmp_path)
    state = MailState(
        accounts={"a@x.org": Account("a@x.org", quota="1G")},
        passwords={"a@x.org": PasswordIntent("hash", Secret("{PLAIN}a"))},
    )
    assert (await eng.run_pass(Desired(state))).outcome == "applied"
    await eng.observe()  # read once after the pass wrote the files
    threaded: list[str] = []
    real = asyncio.to_thread

    async def recording(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        threaded.append(func.__name__)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", recording)
    first = await eng.observe()
    assert await eng.observe() is first
    assert threaded == []
    with (tmp_path / "dms" / files.QUOTAS_FILE).open("a") as f:
        f.write("b@x.org:2G\n")  # a new size: seen, read in a thread
    again = await eng.observe()
    assert threaded == ["read"]
    assert again is not first and again.state.accounts["a@x.org"].quota == "1G"
