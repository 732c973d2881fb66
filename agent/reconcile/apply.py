"""Apply ops one at a time — DMS takes no lock for add/update/alias/quota and loses writes
under concurrency — and record each completed op in the ledger.

Routes: a `setup` command through the Executor, or the file applier (pre-hashed passwords, and
everything for the no-DMS ``file`` executor). A running op is shielded from cancellation: on
SIGTERM the command finishes and is recorded before the agent stops. One agent applies at a
time: ``ApplyLock`` is an fcntl lock on a file in the DMS config folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from agent.dms.actual import DkimBackend
from agent.dms.commands import Command, CommandError, command_for
from agent.dms.fileapply import BATCH_KINDS, FileApplier, FileApplyError, FileResult
from agent.dms.observe import ANSI, account_hash
from agent.executor import Executor, Result
from agent.fsio import open_private
from agent.reconcile.ledger import Ledger, new_entry
from agent.reconcile.plan import Op

T = TypeVar("T")

OpStatus = Literal["ok", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class OpResult:
    op: Op
    status: OpStatus
    message: str = ""  # safe to show: no secret
    exit_code: int | None = None
    duration: float = 0.0  # the command's own time as the executor measured it

    def describe(self) -> dict[str, Any]:
        out = {**self.op.describe(), "status": self.status, "duration": round(self.duration, 4)}
        if self.message:
            out["message"] = self.message
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        return out


class LockBusy(Exception):
    """Another agent holds the apply lock."""


class ApplyLock:
    """fcntl lock on ``path``: held by one process at a time, released if it dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = open_private(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        holder = f"{os.getpid()}\n".encode()
        if os.pread(fd, 64, 0) != holder:  # rewritten only when another process held it last
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder, 0)
        self._fd = fd
        return True

    async def acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise LockBusy(f"another dms-agent is applying ({self.path} is locked)")
            await asyncio.sleep(0.2)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


MESSAGE_LIMIT = 1000  # characters of a failed command's output kept for /status, log, Event
DMS_LOG_LINE = re.compile(r"^\[\s*(TRACE|DEBUG|INF|INFO|WARNING|ERROR)\s*\]\s*(.*)$")


def safe_message(res: Result, secrets: Sequence[str] = ()) -> str:
    """What a failed command said that matters, without colours or secrets: DMS's ERROR lines
    (either stream) and any unlabelled line on stderr (a tool's own error, e.g. sed's), in
    order, joined by " | "; without such lines, the last line of the output."""
    errors, outputs = _clean_lines(res.stderr, secrets), _clean_lines(res.stdout, secrets)
    meaningful = []
    for stream, lines in (("stderr", errors), ("stdout", outputs)):
        for line in lines:
            m = DMS_LOG_LINE.match(line)
            if m is None:
                if stream == "stderr":
                    meaningful.append(line)
            elif m.group(1) == "ERROR" and m.group(2) != "Aborting":
                meaningful.append(f"ERROR {m.group(2)}")
    if not meaningful:
        last = errors or outputs
        return last[-1][:MESSAGE_LIMIT] if last else ""
    return " | ".join(meaningful)[:MESSAGE_LIMIT]


def _clean_lines(text: str, secrets: Sequence[str]) -> list[str]:
    text = ANSI.sub("", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


class Applier:
    def __init__(
        self,
        ledger: Ledger,
        executor: Executor | None,
        setup: Sequence[str],
        timeout: float,
        config_dir: Path | None,
        mail_dir: Path | None,
        dkim_backend: DkimBackend = "opendkim",
        container_mail_dir: str = "/var/mail",
    ) -> None:
        self.container_mail_dir = container_mail_dir
        self.ledger = ledger
        self.executor = executor
        self.setup = list(setup)
        self.timeout = timeout
        self.config_dir = config_dir
        self.mail_dir = mail_dir
        self.dkim_backend = dkim_backend
        self.files = FileApplier(config_dir, mail_dir) if config_dir is not None else None

    async def run(self, op: Op) -> OpResult:
        """Do ``op`` and record it. Cancellation waits for the op to finish (shielded)."""
        return await _to_the_end(self._run(op))

    def batchable(self, op: Op) -> bool:
        """Whether ``op`` may run in a batch with its like (``run_batch``): a quick file op. A
        plain password is not: its bcrypt hash (~80 ms) dwarfs the write it would save, and a
        batch of them would report progress only at its end."""
        if op.password is not None and op.password.kind != "hash":
            return False
        return self.files is not None and op.kind in BATCH_KINDS and self._via_files(op)

    async def run_batch(self, ops: Sequence[Op]) -> list[OpResult]:
        """Do batchable ``ops`` of one kind with one write per DMS file they change, then
        record the ones done with one ledger append; shielded as ``run``."""
        return await _to_the_end(self._run_batch(ops))

    async def _run_batch(self, ops: Sequence[Op]) -> list[OpResult]:
        assert self.files is not None
        started = time.monotonic()
        outcomes = await asyncio.to_thread(self.files.apply_batch, ops)
        each = (time.monotonic() - started) / max(1, len(ops))  # the batch's time, shared
        results, done = [], []
        for op, outcome in zip(ops, outcomes, strict=True):
            if isinstance(outcome, FileResult):
                results.append(OpResult(op, "ok", "", 0, each))
                done.append((op, outcome.hash))
            else:
                results.append(OpResult(op, "failed", str(outcome), None, each))
        if done:
            await asyncio.to_thread(self._record_batch, done)
        return results

    def _record_batch(self, done: Sequence[tuple[Op, str | None]]) -> None:
        with self.ledger.batch():
            for op, written in done:
                self._record(op, written)

    async def _run(self, op: Op) -> OpResult:
        written: str | None = None  # the hash the file applier wrote: no need to read it back
        if self._via_files(op):
            result, written = await self._run_file(op)
        else:
            result = await self._run_command(op)
        if result.status == "ok":
            await asyncio.to_thread(self._record, op, written)
        return result

    def _via_files(self, op: Op) -> bool:
        if self.executor is None or op.direct:
            return True
        return op.password is not None and op.password.kind == "hash"

    async def _run_file(self, op: Op) -> tuple[OpResult, str | None]:
        if self.files is None:
            return OpResult(op, "failed", "a pre-hashed password needs the DMS config folder"), None
        if op.direct and op.delete_mail_data and self.mail_dir is None:
            # DMS's own `email del -y` cannot be used here (see the op's reason) and the agent
            # cannot reach the mail: never drop the account while leaving its mail unnoticed
            why = "deleteMailData without DMS's `email del` needs the mail folder (dms.mailDir)"
            return OpResult(op, "failed", why), None
        started = time.monotonic()
        try:
            done = await asyncio.to_thread(self.files.apply, op)
        except (FileApplyError, OSError) as exc:
            return OpResult(op, "failed", str(exc), None, time.monotonic() - started), None
        return OpResult(op, "ok", "", 0, time.monotonic() - started), done.hash

    async def _run_command(self, op: Op) -> OpResult:
        assert self.executor is not None
        keep_mail = await self._maildir_missing(op)
        try:
            cmd = command_for(op, self.setup, self.dkim_backend, keep_mail=keep_mail)
        except CommandError as exc:
            return OpResult(op, "failed", str(exc))
        res = await self._exec(cmd)
        secrets = [op.password.secret.value] if op.password is not None else []
        if res.unknown:
            why = "timed out" if res.timed_out else "outcome unknown"
            msg = f"{why}: {safe_message(res, secrets)}"
            return OpResult(op, "unknown", msg, None, res.duration)
        if not res.ok:
            return OpResult(op, "failed", safe_message(res, secrets), res.exit_code, res.duration)
        return OpResult(op, "ok", "", 0, res.duration)

    async def _exec(self, cmd: Command) -> Result:
        assert self.executor is not None
        try:
            return await self.executor.run(cmd.argv, cmd.stdin, self.timeout)
        except OSError as exc:
            # the transport refused before the command started (e.g. exec forbidden, API
            # unreachable): a known "not done", retried with the op's backoff
            return Result(255, "", f"could not run: {exc}", 0.0)

    async def _maildir_missing(self, op: Op) -> bool:
        """True when deleting the mail is asked but there is none. DMS's ``-y`` then exits 1
        and deletes nothing; with no mail to keep, answering "keep mail" removes the account.
        Checked on the mounted mail folder, else in the mailserver (never from message texts).
        """
        if op.kind != "account_del" or not op.delete_mail_data:
            return False
        local, _, domain = op.target.partition("@")
        if self.mail_dir is not None:
            return not (self.mail_dir / domain / local).is_dir()
        assert self.executor is not None
        where = f"{self.container_mail_dir}/{domain}/{local}"
        res = await self.executor.run(["test", "-d", where], None, self.timeout)
        return res.exit_code == 1

    def _record(self, op: Op, written: str | None = None) -> None:
        """The ledger entry for a completed op (blocking: called in a thread); ``written``:
        the hash the file applier just wrote, else the one `setup` left is read back."""
        ledger = self.ledger
        if op.kind in ("account_add", "password_update"):
            hash_now = written
            if hash_now is None and self.config_dir is not None:
                hash_now = account_hash(self.config_dir, op.target)
            old = ledger.data.accounts.get(op.target)
            if op.kind == "password_update" and old is not None:
                ledger.set_account(op.target, replace(old, digest=op.digest, hash=hash_now))
            else:
                ledger.set_account(op.target, new_entry(op.digest, hash_now, "created"))
        elif op.kind == "account_del":
            ledger.forget_account(op.target)
        elif op.kind == "alias_add":
            managed = ledger.data.aliases.get(op.target, frozenset())
            ledger.set_alias(op.target, managed | {op.value})
        elif op.kind == "alias_del":
            managed = ledger.data.aliases.get(op.target, frozenset())
            if op.value in managed:
                ledger.set_alias(op.target, managed - {op.value})


async def _to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``; a cancellation meanwhile waits for it to end (the command runs to its
    end and is recorded), then stops the caller."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
