"""DMS's native config files: pure parsers and writers, no I/O.

Formats (as DMS v15.1.0 writes them, see docs/dms-compat.md):

- ``postfix-accounts.cf``: ``email|{SCHEME}hash[|extra]``
- ``postfix-virtual.cf``: ``alias recipient[,recipient...]``; keys ``u@d``, ``u`` or ``@d``
- ``dovecot-quotas.cf``: ``email:quota``
- ``postfix-send-access.cf`` / ``postfix-receive-access.cf``: ``email <TAB><TAB> REJECT`` (DMS's
  ``restrict add`` writes a space, two tabs and a space; Postfix reads any whitespace)

Parsing is tolerant of what people and DMS leave behind: comments (``#`` as the first
non-blank character), blank lines, trailing whitespace, CRLF, a missing final newline. In the
Postfix tables a line starting with whitespace continues the previous one, as Postfix reads it.
Parsing is structural only (fields present, no stray whitespace); whether an address is valid is
the mail-state validator's business, so the observer can still read a file DMS accepted.

Each parser returns every well-formed entry plus a located error for every other line, so a
caller can reject the file whole (``raise_on_error``) or keep what is readable. Writers emit
the canonical form DMS itself writes; ``write(parse(text))`` gives back ``text`` when ``text``
is canonical (comments are not kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from sys import intern
from typing import Generic, TypeVar

from agent.errors import InvalidDocument, LocatedError

ACCOUNTS_FILE = "postfix-accounts.cf"
VIRTUAL_FILE = "postfix-virtual.cf"
QUOTAS_FILE = "dovecot-quotas.cf"
SEND_ACCESS_FILE = "postfix-send-access.cf"
RECEIVE_ACCESS_FILE = "postfix-receive-access.cf"
NATIVE_FILES = (ACCOUNTS_FILE, VIRTUAL_FILE, QUOTAS_FILE, SEND_ACCESS_FILE, RECEIVE_ACCESS_FILE)

T = TypeVar("T")
# what the parsers read: text, UTF-8 bytes, or a binary file's lines
Text = str | bytes | Iterable[bytes]


@dataclass(frozen=True, slots=True)
class AccountLine:
    address: str
    hash: str = field(repr=False)  # ``{SCHEME}...``; a hash still helps offline guessing
    extra: str | None = None  # Dovecot extra fields, the optional third ``|`` field
    line: int = 0


@dataclass(frozen=True, slots=True)
class AliasLine:
    alias: str
    recipients: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True, slots=True)
class QuotaLine:
    address: str
    quota: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class AccessLine:
    address: str
    action: str = "REJECT"
    line: int = 0


@dataclass(slots=True)
class Parsed(Generic[T]):
    """The readable entries of one file, in file order, and a located error per bad line."""

    source: str
    entries: list[T] = field(default_factory=list)
    errors: list[LocatedError] = field(default_factory=list)

    def raise_on_error(self) -> list[T]:
        if self.errors:
            raise InvalidDocument(list(self.errors))
        return self.entries


def _logical_lines(text: Text, continuation: bool) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, content)`` for each non-blank, non-comment logical line; bytes
    (whole, or as the lines of a file opened in binary mode) are read as UTF-8 a line at a
    time (a file's text never exists whole)."""
    current: tuple[int, str] | None = None
    lines = _split_lines(text) if isinstance(text, str) else _split_utf8_lines(text)
    for number, raw in lines:
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if continuation and raw[0] in " \t" and current is not None:
            current = (current[0], f"{current[1]} {stripped}")
            continue
        if current is not None:
            yield current
        current = (number, stripped)
    if current is not None:
        yield current


def _split_lines(text: str) -> Iterator[tuple[int, str]]:
    """``enumerate(text.split("\\n"), 1)`` one line at a time, without a leading BOM: the
    list of all lines of a 100,000-line file (~25 MB) never exists."""
    start, number = (1 if text.startswith("\ufeff") else 0), 1
    while (end := text.find("\n", start)) >= 0:
        yield number, text[start:end]
        start, number = end + 1, number + 1
    yield number, text[start:]


def _split_utf8_lines(data: bytes | Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """The same for UTF-8 bytes, or for lines of bytes each ending in ``\\n`` but maybe the
    last (UnicodeDecodeError at the first bad line)."""
    if isinstance(data, bytes):
        start, number = 0, 1
        while (end := data.find(b"\n", start)) >= 0:
            yield number, _utf8(data[start:end], number)
            start, number = end + 1, number + 1
        yield number, _utf8(data[start:], number)
        return
    for number, raw in enumerate(data, 1):
        yield number, _utf8(raw[:-1] if raw.endswith(b"\n") else raw, number)


def _utf8(raw: bytes, number: int) -> str:
    return raw[3:].decode() if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw.decode()


def _iterate(
    text: Text,
    source: str,
    entry: Callable[[int, str], T | str],
    key: Callable[[T], str],
    continuation: bool,
) -> Iterator[T | LocatedError]:
    """Run ``entry`` on every logical line, in file order: each entry, or a located error for
    a line that is not one (a str result is that line's message) or repeats a key."""
    first_line: dict[str, int] = {}
    for number, content in _logical_lines(text, continuation):
        result = entry(number, content)
        if isinstance(result, str):
            yield LocatedError(source, number, "", result)
            continue
        k = key(result).lower()
        if k == key(result):  # lower-case already (as DMS writes): keep one string, not two
            k = key(result)
        if k in first_line:
            msg = f"{key(result)!r} already appears on line {first_line[k]}"
            yield LocatedError(source, number, key(result), msg)
            continue
        first_line[k] = number
        yield result


def _parse(items: Iterable[T | LocatedError], source: str) -> Parsed[T]:
    out: Parsed[T] = Parsed(source)
    for item in items:
        if isinstance(item, LocatedError):
            out.errors.append(item)
        else:
            out.entries.append(item)
    return out


def _has_space(*parts: str) -> bool:
    # substring tests run in C: a per-character generator made a 10,000-line file cost ~150 ms
    return any(" " in p or "\t" in p for p in parts)


# --- postfix-accounts.cf -------------------------------------------------------------------


def _account(number: int, content: str) -> AccountLine | str:
    parts = content.split("|", 2)
    if len(parts) < 2:
        return "expected `email|{SCHEME}hash`"
    address, hash_, *rest = parts
    if not address or _has_space(address):
        return "the address field is empty or holds whitespace"
    if not hash_.startswith("{") or "}" not in hash_ or hash_.endswith("}"):
        return "the password field must be `{SCHEME}hash`"
    if _has_space(hash_):
        return "the password field holds whitespace"
    # interned as the mail state's parser interns addresses: 100,000 accounts named in the
    # desired state, in this file and in the ledger share one string each. So is the hash:
    # once applied, a declared hash and this file's are the same value (14 MB at 100,000)
    return AccountLine(intern(address), intern(hash_), rest[0] if rest else None, number)


def iter_accounts(text: Text, source: str = ACCOUNTS_FILE) -> Iterator[AccountLine | LocatedError]:
    """``parse_accounts`` one line at a time: 100,000 entries never sit in memory together."""
    return _iterate(text, source, _account, lambda e: e.address, continuation=False)


def parse_accounts(text: Text, source: str = ACCOUNTS_FILE) -> Parsed[AccountLine]:
    return _parse(iter_accounts(text, source), source)


def account_text(e: AccountLine) -> str:
    return f"{e.address}|{e.hash}" + (f"|{e.extra}" if e.extra is not None else "")


def write_accounts(entries: Iterable[AccountLine]) -> str:
    return _join(account_text(e) for e in entries)


# --- postfix-virtual.cf --------------------------------------------------------------------


def _alias(number: int, content: str) -> AliasLine | str:
    parts = content.split(None, 1)
    if len(parts) < 2:
        return "expected `alias recipient[,recipient...]`"
    alias, rest = parts
    # Postfix separates recipients by commas and/or whitespace.
    recipients = tuple(r for r in rest.replace(",", " ").split() if r)
    if not recipients:
        return "no recipient"
    return AliasLine(alias, recipients, number)


def iter_virtual(text: Text, source: str = VIRTUAL_FILE) -> Iterator[AliasLine | LocatedError]:
    return _iterate(text, source, _alias, lambda e: e.alias, continuation=True)


def parse_virtual(text: Text, source: str = VIRTUAL_FILE) -> Parsed[AliasLine]:
    return _parse(iter_virtual(text, source), source)


def alias_text(e: AliasLine) -> str:
    return f"{e.alias} {','.join(e.recipients)}"


def write_virtual(entries: Iterable[AliasLine]) -> str:
    return _join(alias_text(e) for e in entries)


# --- dovecot-quotas.cf ---------------------------------------------------------------------


def _quota(number: int, content: str) -> QuotaLine | str:
    address, sep, quota = content.partition(":")
    if not sep or not address or not quota:
        return "expected `email:quota`"
    if _has_space(address, quota):
        return "whitespace inside `email:quota`"
    return QuotaLine(intern(address), quota, number)


def iter_quotas(text: Text, source: str = QUOTAS_FILE) -> Iterator[QuotaLine | LocatedError]:
    return _iterate(text, source, _quota, lambda e: e.address, continuation=False)


def parse_quotas(text: Text, source: str = QUOTAS_FILE) -> Parsed[QuotaLine]:
    return _parse(iter_quotas(text, source), source)


def quota_text(e: QuotaLine) -> str:
    return f"{e.address}:{e.quota}"


def write_quotas(entries: Iterable[QuotaLine]) -> str:
    return _join(quota_text(e) for e in entries)


# --- postfix-send-access.cf / postfix-receive-access.cf -----------------------------------


def _access(number: int, content: str) -> AccessLine | str:
    parts = content.split(None, 1)
    if len(parts) < 2:
        return "expected `email<TAB><TAB>ACTION`"
    return AccessLine(parts[0], parts[1], number)


def parse_access(text: Text, source: str = SEND_ACCESS_FILE) -> Parsed[AccessLine]:
    return _parse(_iter_access(text, source), source)


def _iter_access(text: Text, source: str) -> Iterator[AccessLine | LocatedError]:
    return _iterate(text, source, _access, lambda e: e.address, continuation=True)


def write_access(entries: Iterable[AccessLine]) -> str:
    return "".join(access_line(e.address, e.action) for e in entries)


def access_line(address: str, action: str = "REJECT") -> str:
    """One access line exactly as DMS's `restrict add` writes it: address, space, two tabs,
    space, action."""
    return f"{address} \t\t {action}\n"


def access_address(line: str) -> str:
    """The lower-cased address an access-file line is for ("" for a comment or blank line)."""
    fields = line.split()
    return fields[0].lower() if fields and not fields[0].startswith("#") else ""


def _join(lines: Iterable[str]) -> str:
    """One entry per line, each ending in a newline (DMS's `list` misreads a missing one)."""
    return "".join(f"{line}\n" for line in lines)
