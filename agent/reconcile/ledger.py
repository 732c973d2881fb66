"""The ledger: what the agent manages, on the DMS config volume.

For every managed account it keeps a keyed digest (HMAC-SHA256) of the last applied password
intent and the hash DMS held right after, so that a changed intent, a password changed from
outside (drift) and "nothing to do" can be told apart without running a command.

Layout on disk:
- ``<path>``: a versioned JSON snapshot, replaced atomically (temp file, fsync, rename).
- ``<path>.journal``: one JSON line appended (and fsynced) as each op completes. Each line holds
  a whole entry, so replaying it twice is harmless, and a torn last line is ignored: losing the
  last entries only means the next reconcile adopts or re-checks those accounts.
``compact()`` folds the journal into a new snapshot (at the end of every reconcile).

The digest key comes from a Secret or a settings file and is never stored beside the ledger,
and is refused when others may read it (as ssh refuses private keys). Both files are checked
field by field on load: a wrong type is a LedgerError naming the file (and journal line) and the
field, never a traceback; the reconciler fails closed on it and says so once per cause.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from agent.fsio import append_file, truncate_file, write_file
from agent.mailstate.model import PasswordIntent

log = logging.getLogger("dms_agent.ledger")

LEDGER_VERSION = 2
LEDGER_API = "dms-agent/ledger"
LEDGER_NAME = "dms-agent-ledger.json"

Origin = Literal["created", "adopted"]


class LedgerError(Exception):
    """The ledger or its key cannot be used; the message says why and where."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    digest: str | None  # keyed digest of the password intent last applied (None: none declared)
    hash: str | None  # the hash DMS held after that (None: not known, e.g. no config folder)
    origin: Origin = "created"
    since: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "hash": self.hash,
            "origin": self.origin,
            "since": self.since,
        }

    @staticmethod
    def from_json(raw: Any, where: str) -> LedgerEntry:
        """An entry checked field by field; ``where`` names it in the LedgerError."""
        if not isinstance(raw, dict):
            raise LedgerError(f"{where}: must be an object")
        for name in ("digest", "hash"):
            if raw.get(name) is not None and not isinstance(raw[name], str):
                raise LedgerError(f"{where}.{name}: must be a string or null")
        origin = raw.get("origin", "created")
        if origin not in ("created", "adopted"):
            raise LedgerError(f"{where}.origin: must be created or adopted")
        since = raw.get("since", 0.0)
        if isinstance(since, bool) or not isinstance(since, int | float):
            raise LedgerError(f"{where}.since: must be a number")
        return LedgerEntry(raw.get("digest"), raw.get("hash"), origin, float(since))


@dataclass(slots=True)
class LedgerData:
    """The in-memory ledger; plan() reads it, the applier records into it."""

    accounts: dict[str, LedgerEntry] = field(default_factory=dict)
    aliases: dict[str, frozenset[str]] = field(default_factory=dict)  # managed recipients

    def as_json(self) -> dict[str, Any]:
        return {
            "apiVersion": LEDGER_API,
            "version": LEDGER_VERSION,
            "accounts": {a: e.as_json() for a, e in sorted(self.accounts.items())},
            "aliases": {a: sorted(r) for a, r in sorted(self.aliases.items())},
        }

    def json_chunks(self) -> Iterator[str]:
        """``as_json()`` as JSON text, one entry per line, made as it is written (the whole
        ledger of 100,000 accounts as one dict and one string took ~80 MB at the peak)."""
        yield '{"accounts": {'
        sep = "\n "
        for address, entry in sorted(self.accounts.items()):
            yield f"{sep}{json.dumps(address)}: {json.dumps(entry.as_json(), sort_keys=True)}"
            sep = ",\n "
        yield '\n},\n"aliases": {'
        sep = "\n "
        for alias, recipients in sorted(self.aliases.items()):
            yield f"{sep}{json.dumps(alias)}: {json.dumps(sorted(recipients))}"
            sep = ",\n "
        yield f'\n}},\n"apiVersion": {json.dumps(LEDGER_API)},\n"version": {LEDGER_VERSION}}}\n'


def _journal_line(rec: dict[str, Any]) -> str:
    return json.dumps(rec, separators=(",", ":")) + "\n"


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _field_str(rec: Mapping[str, Any], name: str, where: str) -> str:
    value = rec.get(name)
    if not isinstance(value, str):
        raise LedgerError(f"{where}: {name}: must be a string")
    return value


def _str_list(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LedgerError(f"{where}: must be a list of strings")
    return frozenset(value)


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LedgerError(f"{where}: must be an object")
    return value


# --- keyed digests -------------------------------------------------------------------------


def load_key(key_file: Path | None, ledger_path: Path, create: bool = False) -> bytes:
    """Read the digest key; refuse a missing, empty, misplaced or readable-by-others one.

    ``create``: make a random key (0600) when there is none — for the local demo only: a key
    lost in production would make every password look changed once.
    """
    if key_file is None:
        raise LedgerError("reconcile.ledgerKeyFile is not set: the password digest key is needed")
    if key_file.resolve().parent == ledger_path.resolve().parent:
        raise LedgerError(f"{key_file}: the digest key must not live beside the ledger")
    if create and not key_file.exists():
        write_file(key_file, secrets.token_hex(32) + "\n", mode=0o600, make_parents=True)
        log.info("%s: no digest key; created a new random one (createLedgerKey)", key_file)
    try:
        _check_key_mode(key_file)
        key = key_file.read_bytes().strip()
    except OSError as exc:
        raise LedgerError(f"{key_file}: {exc.strerror or exc}") from None
    if not key:
        raise LedgerError(f"{key_file}: the digest key is empty")
    return key


def _check_key_mode(key_file: Path) -> None:
    """As ssh does: others must not read the key. In a kubelet Secret volume (files reached
    through ``..data``) the pod spec's ``defaultMode`` decides, and only containers that mount
    the volume see it; writable by others is refused everywhere."""
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o022:
        raise LedgerError(f"{key_file}: mode {mode:04o} lets others change the digest key")
    kubelet_volume = (key_file.parent / "..data").is_symlink()
    if mode & 0o044 and not kubelet_volume:
        raise LedgerError(
            f"{key_file}: mode {mode:04o} lets others read the digest key; "
            f"make it private: chmod 600 {key_file}"
        )


def intent_digest(key: bytes, intent: PasswordIntent) -> str:
    msg = f"{intent.kind}\0{intent.secret.value}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def intent_digests(key: bytes, passwords: Mapping[str, PasswordIntent]) -> dict[str, str]:
    return {addr: intent_digest(key, intent) for addr, intent in passwords.items()}


# --- the file ------------------------------------------------------------------------------


class Ledger:
    """The ledger file plus its journal. Blocking I/O: call from a thread or at start-up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal_path = path.with_name(path.name + ".journal")
        self.data = LedgerData()
        self._journal_lines = 0
        self._torn_at: int | None = None  # where a torn last journal line starts
        self._pending: list[dict[str, Any]] | None = None  # inside batch(): records to append

    # loading ------------------------------------------------------------------------------
    def load(self) -> LedgerData:
        self.data = LedgerData()
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_bytes().decode("utf-8"))
            except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                raise LedgerError(f"{self.path}: unreadable ledger: {exc}") from None
            self.data = migrate(raw, str(self.path))
            migrated = raw.get("version") != LEDGER_VERSION
        else:
            migrated = False
        # an older layout is written anew at the next compaction
        self._journal_lines = self._replay() + (1 if migrated else 0)
        return self.data

    def _replay(self) -> int:
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise LedgerError(f"{self.journal_path}: {exc.strerror or exc}") from None
        lines = raw.split(b"\n")
        torn = lines[-1] != b""  # no newline at the end: a crash mid-append
        self._torn_at = len(raw) - len(lines[-1]) if torn else None
        if not torn:
            lines.pop()
        count = 0
        for n, line in enumerate(lines, 1):
            where = f"{self.journal_path}:{n}"
            try:
                rec = json.loads(line.decode("utf-8"))
            except ValueError:
                if n == len(lines) and torn:
                    # torn by a crash mid-append: what it said is re-learned next reconcile
                    log.warning("%s: ignoring a torn last journal line", where)
                    continue
                raise LedgerError(f"{where}: not a journal record (JSON in UTF-8)") from None
            self._apply_line(rec, where)
            count += 1
        return count

    def _apply_line(self, rec: Any, where: str) -> None:
        if not isinstance(rec, dict):
            raise LedgerError(f"{where}: must be an object")
        kind = rec.get("t")
        if kind == "account":
            address = _field_str(rec, "address", where)
            self.data.accounts[address] = LedgerEntry.from_json(rec.get("entry"), f"{where}: entry")
        elif kind == "forget":
            self.data.accounts.pop(_field_str(rec, "address", where), None)
        elif kind == "alias":
            alias = _field_str(rec, "alias", where)
            recipients = _str_list(rec.get("recipients"), f"{where}: recipients")
            if recipients:
                self.data.aliases[alias] = recipients
            else:
                self.data.aliases.pop(alias, None)
        else:
            raise LedgerError(f"{where}: t: must be account, forget or alias")

    # recording ----------------------------------------------------------------------------
    def set_account(self, address: str, entry: LedgerEntry) -> None:
        self.data.accounts[address] = entry
        self._append({"t": "account", "address": address, "entry": entry.as_json()})

    def forget_account(self, address: str) -> None:
        if self.data.accounts.pop(address, None) is not None:
            self._append({"t": "forget", "address": address})

    def set_alias(self, alias: str, recipients: frozenset[str]) -> None:
        if recipients:
            self.data.aliases[alias] = recipients
        else:
            self.data.aliases.pop(alias, None)
        self._append({"t": "alias", "alias": alias, "recipients": sorted(recipients)})

    def record_hash(self, address: str, hash_: str | None) -> None:
        entry = self.data.accounts.get(address)
        if entry is not None and entry.hash != hash_:
            self.set_account(address, replace(entry, hash=hash_))

    def set_accounts(self, entries: Mapping[str, LedgerEntry]) -> None:
        """Many entries with one fsync (e.g. adopting a whole imported DMS), streamed: 100,000
        records never sit in memory as one text."""
        self.data.accounts.update(entries)
        recs = ({"t": "account", "address": a, "entry": e.as_json()} for a, e in entries.items())
        self._append_lines(_journal_line(rec) for rec in recs)
        self._journal_lines += len(entries)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The records made inside are appended together when it ends, with one fsync (a
        batch of ops done with one write per file is recorded with one append too)."""
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            self._append(*pending)

    def _append(self, *recs: dict[str, Any]) -> None:
        if self._pending is not None:
            self._pending.extend(recs)
            return
        if recs:
            self._append_lines(_journal_line(rec) for rec in recs)
            self._journal_lines += len(recs)

    def _append_lines(self, text: Iterable[str]) -> None:
        try:
            if self._torn_at is not None:  # never glue a record onto a torn line: cut it
                truncate_file(self.journal_path, self._torn_at)
                self._torn_at = None
            append_file(self.journal_path, text, mode=0o600)
        except OSError as exc:
            raise LedgerError(f"{self.journal_path}: not written: {exc.strerror or exc}") from None

    def compact(self) -> None:
        """Write the snapshot atomically, then drop the journal it now contains."""
        if self._journal_lines == 0:
            return  # nothing new: an idle pass writes nothing
        try:
            write_file(self.path, self.data.json_chunks(), mode=0o600)
        except OSError as exc:
            raise LedgerError(f"{self.path}: not written: {exc.strerror or exc}") from None
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()
        self._journal_lines = 0


def new_entry(digest: str | None, hash_: str | None, origin: Origin) -> LedgerEntry:
    return LedgerEntry(digest=digest, hash=hash_, origin=origin, since=time.time())


# --- versions ------------------------------------------------------------------------------


def migrate(raw: Any, where: str) -> LedgerData:
    """Read any known ledger version into the current model.

    Version 1 (the first layout) listed managed addresses and a digest per address:
    ``{"version": 1, "managed": [...], "passwordDigests": {addr: digest}}``; it knew neither
    DMS's hashes nor aliases, so hashes start unknown (no drift is claimed for them).
    """
    if not isinstance(raw, dict):
        raise LedgerError(f"{where}: the ledger is not a JSON object")
    version = raw.get("version")
    if version == 1:
        digests = _object(raw.get("passwordDigests"), f"{where}: passwordDigests")
        managed = _str_list(raw.get("managed") or [], f"{where}: managed")
        accounts = {
            a.lower(): LedgerEntry(_opt_str(digests.get(a)), None, "created", 0.0) for a in managed
        }
        log.info("%s: ledger version 1 migrated to version %d", where, LEDGER_VERSION)
        return LedgerData(accounts=accounts)
    if version == LEDGER_VERSION:
        accounts = {
            a: LedgerEntry.from_json(e, f"{where}: accounts.{a}")
            for a, e in _object(raw.get("accounts"), f"{where}: accounts").items()
        }
        aliases = {
            a: _str_list(r, f"{where}: aliases.{a}")
            for a, r in _object(raw.get("aliases"), f"{where}: aliases").items()
        }
        return LedgerData(accounts=accounts, aliases={a: r for a, r in aliases.items() if r})
    if isinstance(version, int) and version > LEDGER_VERSION:
        raise LedgerError(
            f"{where}: ledger version {version} was written by a newer dms-agent "
            f"(this one knows up to {LEDGER_VERSION}); refusing to guess"
        )
    raise LedgerError(f"{where}: unknown ledger version {version!r}")
