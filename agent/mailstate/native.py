"""DMS's own files as a source of desired state.

``postfix-accounts.cf`` declares accounts and their hashes (hash intents);
``postfix-virtual.cf`` aliases; ``dovecot-quotas.cf`` and the access files attach quotas and
restrictions to accounts declared anywhere (checked when merging). The same syntax rules as
for the state document apply, with errors located by file line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from agent.dms import files
from agent.errors import InvalidDocument
from agent.mailstate import syntax
from agent.mailstate.fragment import Collector, Fragment
from agent.mailstate.model import Account, Restriction
from agent.mailstate.parse import check_hash_intent, check_recipients


def parse_native(name: str, text: str, source: str) -> Fragment:
    """``name`` is one of files.NATIVE_FILES; InvalidDocument lists every error."""
    c = Collector(source)
    frag = Fragment(source)
    parsers: dict[str, Callable[[Collector, Fragment, str], None]] = {
        files.ACCOUNTS_FILE: _accounts,
        files.VIRTUAL_FILE: _virtual,
        files.QUOTAS_FILE: _quotas,
        files.SEND_ACCESS_FILE: lambda c, f, t: _access(c, f, t, "send"),
        files.RECEIVE_ACCESS_FILE: lambda c, f, t: _access(c, f, t, "receive"),
    }
    parsers[name](c, frag, text)
    if c.errors:
        raise InvalidDocument(c.sorted_errors())
    frag.warnings = c.warnings
    return frag


def _address(c: Collector, line: int, raw: str) -> str | None:
    address = raw.lower()
    problem = syntax.check_address(address)
    if problem:
        c.error(line, raw, problem)
        return None
    return address


def _accounts(c: Collector, frag: Fragment, text: str) -> None:
    parsed = files.parse_accounts(text, c.source)
    c.errors.extend(parsed.errors)
    for entry in parsed.entries:
        address = _address(c, entry.line, entry.address)
        if address is None:
            continue
        if entry.extra:
            c.warn(entry.line, entry.address, "the extra Dovecot field is not carried over")
        intent = check_hash_intent(c, entry.line, entry.address, entry.hash)
        origin = (c.source, entry.line)
        frag.accounts[address] = (Account(address), origin)
        if intent is not None:
            frag.passwords[address] = (intent, origin)


def _virtual(c: Collector, frag: Fragment, text: str) -> None:
    parsed = files.parse_virtual(text, c.source)
    c.errors.extend(parsed.errors)
    for entry in parsed.entries:
        alias = entry.alias.lower()
        problem = syntax.check_alias_key(alias)
        if problem:
            c.error(entry.line, entry.alias, problem)
            continue
        report = partial(_report_line, c, entry.line, entry.alias)
        recipients = check_recipients(entry.recipients, report)
        if recipients is not None:
            frag.aliases[alias] = (recipients, (c.source, entry.line))


def _report_line(c: Collector, line: int, field: str, _index: int, message: str) -> None:
    c.error(line, field, message)


def _quotas(c: Collector, frag: Fragment, text: str) -> None:
    parsed = files.parse_quotas(text, c.source)
    c.errors.extend(parsed.errors)
    for entry in parsed.entries:
        address = _address(c, entry.line, entry.address)
        quota, problem = syntax.check_quota(entry.quota)
        if problem:
            c.error(entry.line, entry.address, problem)
        if address is not None and quota is not None:
            frag.quotas[address] = (quota, (c.source, entry.line))


def _access(c: Collector, frag: Fragment, text: str, kind: Restriction) -> None:
    parsed = files.parse_access(text, c.source)
    c.errors.extend(parsed.errors)
    for entry in parsed.entries:
        address = _address(c, entry.line, entry.address)
        if entry.action != "REJECT":
            c.error(entry.line, entry.address, f"only REJECT is understood, not {entry.action!r}")
        elif address is not None:
            frag.restricts.append((address, kind, (c.source, entry.line)))
