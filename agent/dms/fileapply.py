"""The file applier: does an op by writing DMS's files directly, in DMS's exact formats.

Used for pre-hashed passwords (which `setup` cannot take) and for the no-DMS ``file`` executor
(a local DMS-style config folder). Each write is atomic (temp file, fsync, rename — DMS's own
``sed -i`` also replaces the inode, so its change detector sees the same kind of change), and
the caller runs it in the same one-at-a-time sequence as the `setup` commands.

``apply_batch`` does a run of ops with one write per changed file instead of one per op: the
ops run in order against the files held in memory, then each changed file is written once, in
the order the ops first changed them (the order single ops would have left them in). If a file
changed on disk meanwhile, nothing held is written and the ops are done again one by one.

Plain passwords are hashed with bcrypt and written as ``{BLF-CRYPT}$2b$…``, a scheme Dovecot
accepts (checked with ``doveadm pw -t`` in the tests). Blocking: run ``apply`` in a thread.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from agent.dms import files
from agent.errors import LocatedError
from agent.fsio import Data, write_file
from agent.mailstate.model import PasswordIntent
from agent.reconcile.plan import Op

BCRYPT_ROUNDS = 10  # ~80 ms here; stronger than DMS's own SHA512-CRYPT default
# a DMS file up to this size is held in memory during a batch (~8,000 accounts with hashes);
# a bigger one is read and written per op as without a batch (its copy would cost memory)
BATCH_FILE_LIMIT = 1 << 20
# account_del is never batched: it removes the maildir, which must not happen before its
# file changes are on disk
BATCH_KINDS = frozenset(
    {"account_add", "password_update", "quota_set", "quota_del", "alias_add", "alias_del",
     "restrict_add", "restrict_del"}
)  # fmt: skip
T = TypeVar("T")
_Entries = Callable[
    [Iterable[bytes], str], Iterator[T | LocatedError]
]  # files.iter_*(text, source)


class FileApplyError(Exception):
    """The op cannot be done on the files; the message is safe to show (no secret)."""


@dataclass(frozen=True, slots=True)
class FileResult:
    hash: str | None = None  # the hash now in postfix-accounts.cf for a password op


def hash_password(intent: PasswordIntent) -> str:
    if intent.kind == "hash":
        return intent.secret.value
    # imported here: an agent whose plain passwords go through `setup` (kube, docker, local
    # executors) never hashes one itself, and the library stays out of its memory (~0.3 MB)
    import bcrypt

    salt = bcrypt.gensalt(BCRYPT_ROUNDS)
    return "{BLF-CRYPT}" + bcrypt.hashpw(intent.secret.value.encode(), salt).decode()


@dataclass(slots=True)
class _Held:
    """A DMS file held in memory for a batch: its bytes (None: no such file), what the file on
    disk looked like when read, and whether an op of the batch changed it."""

    data: bytes | None
    signature: tuple[int, ...] | None
    changed: bool = False


def _signature(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is replaced or edited in place."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _disk_signature(path: Path) -> tuple[int, ...] | None:
    try:
        return _signature(path.stat())
    except FileNotFoundError:
        return None


def _as_bytes(data: Data) -> bytes:
    if isinstance(data, bytes):
        return data
    return (data if isinstance(data, str) else "".join(data)).encode("utf-8")


class _KnownAccounts:
    """The addresses (lower case) of a small accounts file, with the file's signature when
    they were read: valid while the file is unchanged (replacing or editing it changes the
    signature). Files above BATCH_FILE_LIMIT are not kept (their addresses cost memory)."""

    def __init__(self) -> None:
        self._by_path: dict[Path, tuple[tuple[int, ...], frozenset[str]]] = {}

    def addresses(self, path: Path) -> frozenset[str] | None:
        kept = self._by_path.get(path)
        if kept is None or _disk_signature(path) != kept[0]:
            return None
        return kept[1]

    def remember(self, path: Path, text: _Lines) -> None:
        """After a scan of ``text`` found every line readable: keep its addresses."""
        self._by_path.pop(path, None)
        if text.file is None:
            return
        st = os.fstat(text.file.fileno())
        if st.st_size > BATCH_FILE_LIMIT or _disk_signature(path) != _signature(st):
            return  # big, or replaced since it was opened
        found = frozenset(
            e.address.lower() for e in files.iter_accounts(text) if isinstance(e, files.AccountLine)
        )
        self._by_path[path] = (_signature(st), found)


class _Lines:
    """A file's lines as bytes, from the start each time they are iterated: one descriptor,
    so both passes read the same file even if DMS replaces it meanwhile (``sed -i``)."""

    def __init__(self, file: BinaryIO | None) -> None:
        self.file = file

    def __iter__(self) -> Iterator[bytes]:
        if self.file is None:  # no such file: no lines
            return iter(())
        self.file.seek(0)
        return iter(self.file)


class FileApplier:
    def __init__(self, config_dir: Path, mail_dir: Path | None = None) -> None:
        self.config_dir = config_dir
        self.mail_dir = mail_dir
        # during apply_batch: DMS's files by name, held (None: too big, read from disk)
        self._held: dict[str, _Held | None] | None = None
        self._changed: list[str] = []  # the held files changed, in the order first changed

    def apply_batch(self, ops: Sequence[Op]) -> list[FileResult | FileApplyError | OSError]:
        """Each op's result or error, as ``apply`` gives it, with one write per changed file
        (see the module's docstring); an error writing a file fails every op that succeeded."""
        self._held, self._changed = {}, []
        try:
            results = [self._outcome(op) for op in ops]
            if all(self._unchanged_on_disk(name) for name in self._changed):
                try:
                    for name in self._changed:
                        held = self._held[name]
                        assert held is not None and held.data is not None
                        write_file(self._path(name), held.data)
                except OSError as exc:
                    return [exc if isinstance(r, FileResult) else r for r in results]
                return results
        finally:
            self._held, self._changed = None, []
        return [self._outcome(op) for op in ops]  # someone changed a file: op by op, afresh

    def _outcome(self, op: Op) -> FileResult | FileApplyError | OSError:
        try:
            return self.apply(op)
        except (FileApplyError, OSError) as exc:
            return exc

    def _unchanged_on_disk(self, name: str) -> bool:
        assert self._held is not None
        held = self._held[name]
        return held is not None and _disk_signature(self._path(name)) == held.signature

    def apply(self, op: Op) -> FileResult:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        handler = getattr(self, f"_{op.kind}", None)
        if handler is None:
            raise FileApplyError(f"{op.kind} needs DMS's `setup` (no DMS here: file executor)")
        with contextlib.ExitStack() as self._open:  # the files an op reads, closed after it
            try:
                result: FileResult = handler(op)
            except UnicodeDecodeError as exc:  # before any write: rewriting would drop lines
                raise FileApplyError(
                    f"not rewriting a DMS file for {op.kind} {op.target}: not UTF-8 text "
                    f"(byte {exc.start + 1} of a line); save it as UTF-8"
                ) from None
        return result

    # --- file helpers ---------------------------------------------------------------------
    # A file is read line by line and checked whole before anything is written, then read
    # again from the same open descriptor and streamed out: neither its entries nor its text
    # ever sit in memory whole (a list of entries plus the new text took ~100 MB per op at
    # 100,000 accounts, the bytes alone 18 MB).

    def _path(self, name: str) -> Path:
        return self.config_dir / name

    def _scan(
        self, name: str, entries: _Entries[T], kind: type[T], target: str
    ) -> tuple[_Lines, T | None]:
        """The file's lines, refused if any is unreadable (rewriting would drop it), and the
        entry of ``kind`` whose key is ``target`` (any case), if there is one."""
        text = _Lines(self._read(name))
        found: T | None = None
        for item in entries(text, str(self._path(name))):
            if not isinstance(item, kind):
                raise FileApplyError(f"not rewriting {name}: {item}")
            if found is None and _key(item).lower() == target:
                found = item
        return text, found

    def _rewrite(
        self,
        name: str,
        text: _Lines,
        entries: _Entries[T],
        render: Callable[[T], str],
        change: Callable[[T], T | None] = lambda e: e,
        append: T | None = None,
    ) -> None:
        """Write ``text``'s entries back in DMS's canonical form (``change`` may replace one or
        drop it with None), then ``append``; ``text`` was checked by ``_scan``."""

        def lines() -> Iterator[str]:
            for item in entries(text, name):
                if isinstance(item, LocatedError):  # appended since the check: write nothing
                    raise FileApplyError(f"not rewriting {name}: {item}")
                kept = change(item)
                if kept is not None:
                    yield render(kept) + "\n"
            if append is not None:
                yield render(append) + "\n"

        self._save(name, lines())

    def _read(self, name: str) -> BinaryIO | None:
        """The file open for reading (None: no such file); in a batch, its held copy."""
        held = self._hold(name) if self._held is not None else None
        if held is not None:
            return None if held.data is None else io.BytesIO(held.data)
        try:
            return self._open.enter_context(self._path(name).open("rb"))
        except FileNotFoundError:
            return None

    def _hold(self, name: str) -> _Held | None:
        """The batch's copy of ``name``, read on first use (None: too big to hold)."""
        assert self._held is not None
        if name in self._held:
            return self._held[name]
        held: _Held | None
        try:
            with self._path(name).open("rb") as f:
                st = os.fstat(f.fileno())
                held = _Held(f.read(), _signature(st)) if st.st_size <= BATCH_FILE_LIMIT else None
        except FileNotFoundError:
            held = _Held(None, None)
        self._held[name] = held
        return held

    def _save(self, name: str, data: Data) -> None:
        held = self._held.get(name) if self._held is not None else None
        if held is None:
            write_file(self._path(name), data)
            return
        held.data = _as_bytes(data)
        if not held.changed:
            held.changed = True
            self._changed.append(name)

    def _account_line(self, address: str) -> tuple[_Lines, files.AccountLine | None]:
        return self._scan(files.ACCOUNTS_FILE, files.iter_accounts, files.AccountLine, address)

    # --- accounts -------------------------------------------------------------------------
    def _account_add(self, op: Op) -> FileResult:
        text, line = self._account_line(op.target)
        if line is not None:
            raise FileApplyError(f"{op.target} already exists")
        if op.password is None:
            raise FileApplyError(f"{op.target}: no password to write")
        hash_ = hash_password(op.password)
        new = files.AccountLine(op.target, hash_)
        self._rewrite(
            files.ACCOUNTS_FILE, text, files.iter_accounts, files.account_text, append=new
        )
        return FileResult(hash_)

    def _password_update(self, op: Op) -> FileResult:
        text, line = self._account_line(op.target)
        if op.password is None:
            raise FileApplyError(f"{op.target}: no password to write")
        if line is None:
            raise FileApplyError(f"{op.target} does not exist")
        updated = replace(line, hash=hash_password(op.password))
        self._rewrite(
            files.ACCOUNTS_FILE,
            text,
            files.iter_accounts,
            files.account_text,
            lambda e: updated if e.line == line.line else e,
        )
        return FileResult(updated.hash)

    def _account_del(self, op: Op) -> FileResult:
        """As DMS's `email del`: drop the address from every alias (and emptied aliases), its
        quota line, then the account; the maildir only with deleteMailData."""
        target = op.target
        accounts, line = self._account_line(target)
        if line is None:
            raise FileApplyError(f"{target} does not exist")
        virtual = self._scan(files.VIRTUAL_FILE, files.iter_virtual, files.AliasLine, "")[0]
        quotas = self._scan(files.QUOTAS_FILE, files.iter_quotas, files.QuotaLine, "")[0]

        def without_recipient(a: files.AliasLine) -> files.AliasLine | None:
            recips = tuple(r for r in a.recipients if r.lower() != target)
            return replace(a, recipients=recips) if recips else None

        self._rewrite(
            files.VIRTUAL_FILE, virtual, files.iter_virtual, files.alias_text, without_recipient
        )
        self._rewrite(
            files.QUOTAS_FILE, quotas, files.iter_quotas, files.quota_text, _unless(target)
        )
        self._rewrite(
            files.ACCOUNTS_FILE, accounts, files.iter_accounts, files.account_text, _unless(target)
        )
        if op.delete_mail_data and self.mail_dir is not None:
            local, _, domain = target.partition("@")
            shutil.rmtree(self.mail_dir / domain / local, ignore_errors=True)
        return FileResult()

    # --- quotas ---------------------------------------------------------------------------
    def _quota_set(self, op: Op) -> FileResult:
        """As DMS: an existing quota line is replaced where it stands, a new one appended."""
        self._require_account(op.target)
        text, old = self._scan(files.QUOTAS_FILE, files.iter_quotas, files.QuotaLine, op.target)
        if old is None:
            new = files.QuotaLine(op.target, op.value)
            self._rewrite(files.QUOTAS_FILE, text, files.iter_quotas, files.quota_text, append=new)
        else:
            set_ = replace(old, quota=op.value)
            self._rewrite(
                files.QUOTAS_FILE,
                text,
                files.iter_quotas,
                files.quota_text,
                lambda q: set_ if q.line == old.line else q,
            )
        return FileResult()

    def _quota_del(self, op: Op) -> FileResult:
        self._require_account(op.target)
        text, old = self._scan(files.QUOTAS_FILE, files.iter_quotas, files.QuotaLine, op.target)
        if old is not None:
            drop = _unless(op.target)
            self._rewrite(files.QUOTAS_FILE, text, files.iter_quotas, files.quota_text, drop)
        return FileResult()

    def _require_account(self, address: str) -> None:
        """A quota op's check that the account exists: answered from the addresses of the
        accounts file as last read while the file is unchanged (an update's quota op then
        does not parse every account line again)."""
        path = self._path(files.ACCOUNTS_FILE)
        known = _ACCOUNTS.addresses(path) if self._held is None else None
        if known is None:
            text, line = self._account_line(address)
            if self._held is None:
                _ACCOUNTS.remember(path, text)
            exists = line is not None
        else:
            exists = address in known
        if not exists:
            raise FileApplyError(f"{address} does not exist")

    # --- restrictions ---------------------------------------------------------------------
    def _access_file(self, op: Op) -> str:
        return files.SEND_ACCESS_FILE if op.value == "send" else files.RECEIVE_ACCESS_FILE

    def _restrict_add(self, op: Op) -> FileResult:
        """Append the one line as DMS's `restrict add` writes it; nothing else changes."""
        name = self._access_file(op)
        text = self._text(name)
        if not any(files.access_address(ln) == op.target for ln in text.splitlines()):
            if text and not text.endswith("\n"):
                text += "\n"  # DMS's `echo >>` would glue the line onto the last one
            self._save(name, text + files.access_line(op.target))
        return FileResult()

    def _restrict_del(self, op: Op) -> FileResult:
        """Remove exactly the target's lines (any case); every other line stays byte for byte."""
        name = self._access_file(op)
        text = self._text(name)
        lines = text.splitlines(keepends=True)
        kept = [ln for ln in lines if files.access_address(ln) != op.target]
        if len(kept) != len(lines):
            self._save(name, "".join(kept))
        return FileResult()

    def _text(self, name: str) -> str:
        file = self._read(name)
        # text mode, as a plain read_text: universal newlines
        return "" if file is None else io.TextIOWrapper(file, encoding="utf-8").read()

    # --- aliases --------------------------------------------------------------------------
    def _alias_add(self, op: Op) -> FileResult:
        if self._account_line(op.target)[1] is not None:
            raise FileApplyError(f"alias {op.target} is an account")
        text, old = self._scan(files.VIRTUAL_FILE, files.iter_virtual, files.AliasLine, op.target)
        render, entries = files.alias_text, files.iter_virtual
        if old is None:
            new = files.AliasLine(op.target, (op.value,))
            self._rewrite(files.VIRTUAL_FILE, text, entries, render, append=new)
            return FileResult()
        if op.value in (r.lower() for r in old.recipients):
            raise FileApplyError(f"{op.target} already forwards to {op.value}")
        grown = replace(old, recipients=(*old.recipients, op.value))
        self._rewrite(
            files.VIRTUAL_FILE, text, entries, render, lambda a: grown if a.line == old.line else a
        )
        return FileResult()

    def _alias_del(self, op: Op) -> FileResult:
        text = self._scan(files.VIRTUAL_FILE, files.iter_virtual, files.AliasLine, op.target)[0]

        def without(a: files.AliasLine) -> files.AliasLine | None:
            if a.alias.lower() != op.target:
                return a
            recips = tuple(r for r in a.recipients if r.lower() != op.value)
            return replace(a, recipients=recips) if recips else None

        self._rewrite(files.VIRTUAL_FILE, text, files.iter_virtual, files.alias_text, without)
        return FileResult()


_ACCOUNTS = _KnownAccounts()


def _key(entry: object) -> str:
    if isinstance(entry, files.AliasLine):
        return entry.alias
    assert isinstance(entry, files.AccountLine | files.QuotaLine)
    return entry.address


def _unless(target: str) -> Callable[[Any], Any]:
    """A ``change`` that drops the entry for ``target`` (any case) and keeps the others."""
    return lambda e: None if e.address.lower() == target else e
