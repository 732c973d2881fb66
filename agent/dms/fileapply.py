"""The file applier: does an op by writing DMS's files directly, in DMS's exact formats.

Used for pre-hashed passwords (which `setup` cannot take) and for the no-DMS ``file`` executor
(a local DMS-style config folder). Each write is atomic (temp file, fsync, rename — DMS's own
``sed -i`` also replaces the inode, so its change detector sees the same kind of change), and
the caller runs it in the same one-at-a-time sequence as the `setup` commands.

Plain passwords are hashed with bcrypt and written as ``{BLF-CRYPT}$2b$…``, a scheme Dovecot
accepts (checked with ``doveadm pw -t`` in the tests). Blocking: run ``apply`` in a thread.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import bcrypt

from agent.dms import files
from agent.fsio import write_file
from agent.mailstate.model import PasswordIntent
from agent.reconcile.plan import Op

BCRYPT_ROUNDS = 10  # ~80 ms here; stronger than DMS's own SHA512-CRYPT default
T = TypeVar("T")


class FileApplyError(Exception):
    """The op cannot be done on the files; the message is safe to show (no secret)."""


@dataclass(frozen=True, slots=True)
class FileResult:
    hash: str | None = None  # the hash now in postfix-accounts.cf for a password op


def hash_password(intent: PasswordIntent) -> str:
    if intent.kind == "hash":
        return intent.secret.value
    salt = bcrypt.gensalt(BCRYPT_ROUNDS)
    return "{BLF-CRYPT}" + bcrypt.hashpw(intent.secret.value.encode(), salt).decode()


class FileApplier:
    def __init__(self, config_dir: Path, mail_dir: Path | None = None) -> None:
        self.config_dir = config_dir
        self.mail_dir = mail_dir

    def apply(self, op: Op) -> FileResult:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        handler = getattr(self, f"_{op.kind}", None)
        if handler is None:
            raise FileApplyError(f"{op.kind} needs DMS's `setup` (no DMS here: file executor)")
        result: FileResult = handler(op)
        return result

    # --- file helpers ---------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.config_dir / name

    def _load(self, name: str, parse: Callable[[str, str], files.Parsed[T]]) -> list[T]:
        path = self._path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        parsed = parse(text, str(path))
        if parsed.errors:
            # rewriting would drop the lines we cannot read: refuse rather than lose them
            raise FileApplyError(f"not rewriting {name}: {parsed.errors[0]}")
        return parsed.entries

    def _save(self, name: str, text: str) -> None:
        write_file(self._path(name), text)

    # --- accounts -------------------------------------------------------------------------
    def _accounts(self) -> list[files.AccountLine]:
        return self._load(files.ACCOUNTS_FILE, files.parse_accounts)

    def _account_add(self, op: Op) -> FileResult:
        entries = self._accounts()
        if any(e.address.lower() == op.target for e in entries):
            raise FileApplyError(f"{op.target} already exists")
        if op.password is None:
            raise FileApplyError(f"{op.target}: no password to write")
        hash_ = hash_password(op.password)
        entries.append(files.AccountLine(op.target, hash_))
        self._save(files.ACCOUNTS_FILE, files.write_accounts(entries))
        return FileResult(hash_)

    def _password_update(self, op: Op) -> FileResult:
        entries = self._accounts()
        if op.password is None:
            raise FileApplyError(f"{op.target}: no password to write")
        for i, e in enumerate(entries):
            if e.address.lower() == op.target:
                hash_ = hash_password(op.password)
                entries[i] = replace(e, hash=hash_)
                self._save(files.ACCOUNTS_FILE, files.write_accounts(entries))
                return FileResult(hash_)
        raise FileApplyError(f"{op.target} does not exist")

    def _account_del(self, op: Op) -> FileResult:
        """As DMS's `email del`: drop the address from every alias (and emptied aliases), its
        quota line, then the account; the maildir only with deleteMailData."""
        entries = self._accounts()
        kept = [e for e in entries if e.address.lower() != op.target]
        if len(kept) == len(entries):
            raise FileApplyError(f"{op.target} does not exist")
        aliases = []
        for a in self._load(files.VIRTUAL_FILE, files.parse_virtual):
            recips = tuple(r for r in a.recipients if r.lower() != op.target)
            if recips:
                aliases.append(replace(a, recipients=recips))
        self._save(files.VIRTUAL_FILE, files.write_virtual(aliases))
        quotas = self._load(files.QUOTAS_FILE, files.parse_quotas)
        self._save(
            files.QUOTAS_FILE,
            files.write_quotas(q for q in quotas if q.address.lower() != op.target),
        )
        self._save(files.ACCOUNTS_FILE, files.write_accounts(kept))
        if op.delete_mail_data and self.mail_dir is not None:
            local, _, domain = op.target.partition("@")
            shutil.rmtree(self.mail_dir / domain / local, ignore_errors=True)
        return FileResult()

    # --- quotas ---------------------------------------------------------------------------
    def _quota_set(self, op: Op) -> FileResult:
        """As DMS: an existing quota line is replaced where it stands, a new one appended."""
        self._require_account(op.target)
        quotas = self._load(files.QUOTAS_FILE, files.parse_quotas)
        for i, q in enumerate(quotas):
            if q.address.lower() == op.target:
                quotas[i] = replace(q, quota=op.value)
                break
        else:
            quotas.append(files.QuotaLine(op.target, op.value))
        self._save(files.QUOTAS_FILE, files.write_quotas(quotas))
        return FileResult()

    def _quota_del(self, op: Op) -> FileResult:
        self._require_account(op.target)
        quotas = self._load(files.QUOTAS_FILE, files.parse_quotas)
        kept = [q for q in quotas if q.address.lower() != op.target]
        if len(kept) != len(quotas):
            self._save(files.QUOTAS_FILE, files.write_quotas(kept))
        return FileResult()

    def _require_account(self, address: str) -> None:
        if not any(e.address.lower() == address for e in self._accounts()):
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
        try:
            return self._path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    # --- aliases --------------------------------------------------------------------------
    def _alias_add(self, op: Op) -> FileResult:
        if any(e.address.lower() == op.target for e in self._accounts()):
            raise FileApplyError(f"alias {op.target} is an account")
        entries = self._load(files.VIRTUAL_FILE, files.parse_virtual)
        for i, a in enumerate(entries):
            if a.alias.lower() == op.target:
                if op.value in (r.lower() for r in a.recipients):
                    raise FileApplyError(f"{op.target} already forwards to {op.value}")
                entries[i] = replace(a, recipients=(*a.recipients, op.value))
                break
        else:
            entries.append(files.AliasLine(op.target, (op.value,)))
        self._save(files.VIRTUAL_FILE, files.write_virtual(entries))
        return FileResult()

    def _alias_del(self, op: Op) -> FileResult:
        entries = self._load(files.VIRTUAL_FILE, files.parse_virtual)
        out = []
        for a in entries:
            if a.alias.lower() == op.target:
                recips = tuple(r for r in a.recipients if r.lower() != op.value)
                if recips:
                    out.append(replace(a, recipients=recips))
            else:
                out.append(a)
        self._save(files.VIRTUAL_FILE, files.write_virtual(out))
        return FileResult()
