"""Parse and validate one state or passwords document into a Fragment.

Two passes over the YAML value, both collecting every problem before anything is rejected:
the structure (types, unknown keys, enumerations) as ``schema.py`` declares it — a plain check
accepts the well-formed common case (``shape.py``), pydantic then says what is wrong with any
other (``structure.py``, loaded only then: its import and model build cost ~150 ms) — then a
plain-Python pass checks what pydantic cannot (address syntax, case-insensitive duplicates,
key sizes per key type, password values) and builds the model values. The second pass runs on
the raw value and skips what has the wrong type, so one run reports both kinds of errors. It is
plain Python rather than pydantic validators because per-item validator calls would dominate
the time on 10,000-account documents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from sys import intern
from typing import Any, cast

from agent.errors import InvalidDocument
from agent.mailstate import syntax
from agent.mailstate.fragment import Collector, Fragment
from agent.mailstate.model import (
    API_VERSION,
    NO_RESTRICTIONS,
    Account,
    DkimSpec,
    Domain,
    KeyType,
    PasswordIntent,
    Policy,
    Restriction,
    Secret,
)
from agent.mailstate.shape import well_formed_passwords, well_formed_state
from agent.yamlloc import LocatedDoc, format_path

RSA_SIZES = (1024, 2048, 3072, 4096)


class _Doc(Collector):
    """A LocatedDoc plus its collector: errors by path."""

    def __init__(self, doc: LocatedDoc) -> None:
        super().__init__(doc.source)
        self.doc = doc

    def at(self, path: Sequence[str | int], message: str) -> None:
        # an empty document has no line of its own: name its first
        self.error(self.doc.line_of(path) or 1, format_path(path), message)

    def warn_at(self, path: Sequence[str | int], message: str) -> None:
        self.warn(self.doc.line_of(path) or 1, format_path(path), message)

    def check(self) -> None:
        if self.errors:
            raise InvalidDocument(self.sorted_errors())


def parse_state(doc: LocatedDoc) -> Fragment:
    """A state document (``apiVersion: dms-agent/v1``); InvalidDocument lists every error."""
    c = _Doc(doc)
    value = doc.value
    if not isinstance(value, dict):
        c.at((), f"a state document must be a mapping with `apiVersion: {API_VERSION}`")
        c.check()
    if "apiVersion" not in value:  # likely not a state document at all: one error, not 10,000
        c.at(
            (),
            f"missing `apiVersion: {API_VERSION}`; a passwords document needs 'password' in "
            "its name",
        )
        c.check()
    if not well_formed_state(value):  # pydantic only to say what is wrong
        _structure(c, "state", value)
    frag = Fragment(doc.source)
    _domains(c, frag, value.get("domains"))
    _accounts(c, frag, value.get("accounts"))
    _aliases(c, frag, value.get("aliases"))
    policy = value.get("policy")
    if isinstance(policy, dict):
        prune, delete = policy.get("prune"), policy.get("deleteMailData")
        frag.policy = Policy(
            prune if isinstance(prune, bool) else None,
            delete if isinstance(delete, bool) else None,
        )
    c.check()
    frag.warnings = c.warnings
    return frag


def parse_passwords(doc: LocatedDoc) -> Fragment:
    """A passwords document: ``address: {password: ...}`` or ``address: {hash: ...}``."""
    c = _Doc(doc)
    frag = Fragment(doc.source)
    value = doc.value
    if value is None:
        return frag
    if not isinstance(value, dict):
        c.at((), "a passwords document must be a mapping of address -> {password|hash: ...}")
        c.check()
    if "apiVersion" in value:
        if value["apiVersion"] != API_VERSION:
            c.at(("apiVersion",), f"must be {API_VERSION}")
        value = {k: v for k, v in value.items() if k != "apiVersion"}
    if not well_formed_passwords(value):  # pydantic only to say what is wrong
        _structure(c, "passwords", value)
    seen: dict[str, str] = {}
    for key, entry in value.items():
        address = _key(c, seen, key, (key,), syntax.check_address)
        if not isinstance(entry, dict):
            continue
        intent = _password_entry(c, key, entry)
        if intent is not None and address is not None:
            frag.passwords[address] = (intent, (doc.source, doc.line_of((key,))))
    c.check()
    frag.warnings = c.warnings
    return frag


# --- structure ---------------------------------------------------------------------------


def _structure(c: _Doc, kind: str, value: Any) -> None:
    """pydantic's structure errors for ``value`` as a ``kind`` document ("state" or
    "passwords"), located. Imported here: a well-formed document never loads pydantic."""
    from agent.mailstate.structure import structure_errors

    for loc, message in structure_errors(kind, value):
        c.at(loc, message)


# --- semantic checks and model values --------------------------------------------------


def _key(
    c: _Doc, seen: dict[str, str], key: str, path: tuple[str | int, ...], check: Any
) -> str | None:
    """Lower-case ``key``, check its syntax and case-insensitive uniqueness; None if bad."""
    lowered = intern(key.lower())
    problem = check(lowered)
    if problem is not None:
        c.at(path, problem)
        return None
    first = seen.get(lowered)
    if first is not None:
        c.at(
            path,
            f"same as {first!r} on line {c.doc.line_of((*path[:-1], first))} (case-insensitive)",
        )
        return None
    seen[lowered] = key
    return lowered


def _domains(c: _Doc, frag: Fragment, domains: Any) -> None:
    if not isinstance(domains, dict):
        return
    seen: dict[str, str] = {}
    for key, spec in domains.items():
        name = _key(c, seen, key, ("domains", key), syntax.check_domain)
        if name is None:
            continue
        dkim = spec.get("dkim") if isinstance(spec, dict) else None
        dkim_spec = _dkim(c, ("domains", key, "dkim"), dkim) if isinstance(dkim, dict) else None
        frag.domains[name] = (Domain(name, dkim_spec), (c.source, c.doc.line_of(("domains", key))))


def _dkim(c: _Doc, path: tuple[str, ...], dkim: dict[str, Any]) -> DkimSpec | None:
    selector, key_type, size = (
        dkim.get("selector", "mail"),
        dkim.get("keyType", "rsa"),
        dkim.get("keySize"),
    )
    ok = isinstance(selector, str) and key_type in ("rsa", "ed25519")
    if isinstance(selector, str) and not syntax.SELECTOR_RE.fullmatch(selector):
        c.at((*path, "selector"), f"selector {selector!r} must be DNS labels (a-z, 0-9, -)")
        ok = False
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool)):
        return None
    if key_type == "ed25519" and size is not None:
        c.at((*path, "keySize"), "ed25519 keys have a fixed size: drop keySize")
        ok = False
    elif key_type == "rsa" and size is not None and size not in RSA_SIZES:
        c.at((*path, "keySize"), f"RSA key size must be one of {', '.join(map(str, RSA_SIZES))}")
        ok = False
    elif key_type == "rsa" and size == 1024:
        c.warn_at((*path, "keySize"), "1024-bit RSA is weak; 2048 is the usual size")
    if not ok:
        return None
    return DkimSpec(
        cast(str, selector), cast(KeyType, key_type), size if size is not None else 2048
    )


def _accounts(c: _Doc, frag: Fragment, accounts: Any) -> None:
    if not isinstance(accounts, dict):
        return
    # The loop runs once per account: the common case (valid, new address, no settings or
    # valid ones) stays inline; errors take the slower reporting path through _key.
    seen: dict[str, str] = {}
    lines, source, out = c.doc.lines, c.source, frag.accounts
    valid = syntax.ADDRESS_RE.fullmatch
    for key, spec in accounts.items():
        path = ("accounts", key)
        # interned: the passwords document, DMS's files and the ledger name the same 100,000
        # addresses; one string each instead of one per place saves ~8 MB a copy
        lowered = intern(key.lower())
        address: str | None = lowered
        if lowered in seen or valid(lowered) is None:
            address = _key(c, seen, key, path, syntax.check_address)
        else:
            seen[lowered] = key
        if spec:  # checked even under a bad address: report everything at once
            account = _account_settings(c, frag, key, address, spec)
        elif address is not None:
            account = Account(address)
        if address is not None:
            out[address] = (account, (source, lines.get(path) or c.doc.line_of(path)))


def _account_settings(c: _Doc, frag: Fragment, key: str, address: str | None, spec: Any) -> Account:
    path = ("accounts", key)
    quota: str | None = None
    restrict = NO_RESTRICTIONS
    if isinstance(spec, dict):
        if spec.get("quota") is not None:
            quota, problem = syntax.check_quota(spec["quota"])
            if problem:
                c.at((*path, "quota"), problem)
            elif address is not None:
                frag.settings[(address, "quota")] = (c.source, c.doc.line_of((*path, "quota")))
        restrict = _restrict(c, frag, address or key, (*path, "restrict"), spec.get("restrict"))
    return Account(address or key, quota, restrict)


def _restrict(
    c: _Doc, frag: Fragment, address: str, path: tuple[str, ...], items: Any
) -> frozenset[Restriction]:
    if not isinstance(items, list):
        return NO_RESTRICTIONS
    out: set[Restriction] = set()
    for i, item in enumerate(items):
        if item not in ("send", "receive"):
            continue  # reported by the structure pass
        if item in out:
            c.at((*path, i), f"{item!r} appears twice")
        out.add(item)
        frag.settings[(address, item)] = (c.source, c.doc.line_of((*path, i)))
    return frozenset(out) if out else NO_RESTRICTIONS


def _aliases(c: _Doc, frag: Fragment, aliases: Any) -> None:
    if not isinstance(aliases, dict):
        return
    seen: dict[str, str] = {}
    for key, recipients in aliases.items():
        path = ("aliases", key)
        alias = _key(c, seen, key, path, syntax.check_alias_key)
        if not isinstance(recipients, list):
            continue
        if not recipients:
            c.at(path, "an alias needs at least one recipient")
            continue
        checked = check_recipients(recipients, partial(_report_item, c, path))
        if checked is not None and alias is not None:
            frag.aliases[alias] = (checked, (c.source, c.doc.line_of(path)))


def _report_item(c: _Doc, path: tuple[str, ...], index: int, message: str) -> None:
    c.at((*path, index), message)


def check_recipients(
    recipients: Sequence[Any], report: Callable[[int, str], None]
) -> tuple[str, ...] | None:
    """Lower-cased, checked recipients; None if any is bad (each reported by its index)."""
    out: list[str] = []
    ok = True
    for i, recipient in enumerate(recipients):
        if not isinstance(recipient, str):
            ok = False  # reported by the structure pass
            continue
        address = recipient.lower()
        problem = syntax.check_address(address)
        if problem is None and address in out:
            problem = f"{recipient!r} appears twice"
        if problem is not None:
            ok = False
            report(i, f"recipient: {problem}")
            continue
        out.append(address)
    return tuple(out) if ok else None


def _password_entry(c: _Doc, key: str, entry: dict[str, Any]) -> PasswordIntent | None:
    password, hash_ = entry.get("password"), entry.get("hash")
    if password is not None and hash_ is not None:
        c.at((key,), "give either password or hash, not both")
        return None
    if password is None and hash_ is None:
        if not (set(entry) - {"password", "hash"}):  # else: unknown keys already reported
            c.at((key,), "needs {password: ...} or {hash: ...}")
        return None
    if isinstance(password, str):
        problem = syntax.check_password(password)
        if problem:
            c.at((key, "password"), problem)
            return None
        return PasswordIntent("plain", Secret(password))
    if isinstance(hash_, str):
        return check_hash_intent(c, c.doc.line_of((key, "hash")), format_path((key, "hash")), hash_)
    return None


def check_hash_intent(
    c: Collector, line: int | None, field: str, value: str
) -> PasswordIntent | None:
    scheme, problem = syntax.check_hash(value)
    if problem is not None or scheme is None:
        c.error(line, field, problem or "bad hash")
        return None
    if scheme in syntax.PLAINTEXT_SCHEMES:
        c.warn(line, field, f"{{{scheme}}} keeps the password readable in postfix-accounts.cf")
    elif scheme not in syntax.KNOWN_SCHEMES:
        c.warn(line, field, f"{{{scheme}}} is not a scheme Dovecot is known to support")
    return PasswordIntent("hash", Secret(value))
