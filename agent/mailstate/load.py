"""From source documents to one validated desired state.

How a document is read is decided by its ``name`` (a ConfigMap/Secret key or a file name):

- DMS's own file names (``postfix-accounts.cf``, ``postfix-virtual.cf``, ``dovecot-quotas.cf``,
  ``postfix-send-access.cf``, ``postfix-receive-access.cf``): DMS's native formats.
- ``*.yaml`` / ``*.yml`` whose name contains ``password``: a passwords document.
- other ``*.yaml`` / ``*.yml``: a state document, which must say ``apiVersion: dms-agent/v1``;
  in a secret source (``SourceDocument.secret``) a YAML document is a passwords document
  unless it has ``apiVersion`` and one of ``domains``, ``accounts``, ``aliases``, ``policy``.
- anything else is ignored, with a warning.

Every document is checked on its own, then all are merged: an account, alias or password
declared twice (in any letter case) is an error naming both places. Any error rejects the whole
set (the caller keeps its last good state). Skew between state and passwords is not an error:
a password for an undeclared account is a warning; a declared account without a password is
``pending`` (an account DMS already has needs none: the planner adopts it).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from typing import Protocol, TypeVar

from agent import heap
from agent.dms.files import NATIVE_FILES
from agent.errors import InvalidDocument, LocatedError
from agent.mailstate.fragment import Collector, Fragment, Origin, Origins, where
from agent.mailstate.model import Account, Desired, Domain, MailState, PasswordIntent, Policy
from agent.mailstate.native import parse_native
from agent.mailstate.parse import parse_passwords, parse_state
from agent.mailstate.withhold import withhold
from agent.sources.document import SourceDocument
from agent.yamlloc import load_yaml

_STATE_KEYS = {"domains", "accounts", "aliases", "policy"}
NO_PASSWORD = "no password in any passwords document"
# Keys the generation digest of documents holding secrets, so a logged generation cannot be
# used to test password guesses offline. Generations of such documents differ between runs.
_PROCESS_KEY = os.urandom(32)
T = TypeVar("T")


async def desired_from_documents_async(docs: Sequence[SourceDocument]) -> Desired:
    """The same, off the event loop: 10,000 accounts take a good fraction of a second."""
    import asyncio  # here: `dms-agent validate` runs no loop and need not load asyncio

    return await asyncio.to_thread(desired_from_documents, docs)


def desired_from_documents(docs: Sequence[SourceDocument]) -> Desired:
    """Parse, merge and validate ``docs``; InvalidDocument lists every error of every one."""
    if sum(len(doc.text) for doc in docs) >= _BIG_STATE:
        heap.keep_big_buffers_mapped()
    with _collector_paused():
        return _desired(docs)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a state is built: parsing makes hundreds of
    thousands of containers and none is garbage yet, so each full collection on the way only
    walks them (~15 % of a 10,000-account parse). Reference counting still frees as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _desired(docs: Sequence[SourceDocument]) -> Desired:
    errors: list[LocatedError] = []
    fragments: list[Fragment] = []
    notes: list[LocatedError] = []
    secret_docs: set[int] = set()
    parsed_chars = 0
    for i, doc in enumerate(docs):
        try:
            frag, is_secret, fresh = _CACHE.parse(doc)
        except InvalidDocument as exc:
            errors.extend(exc.errors)
            continue
        parsed_chars += len(doc.text) if fresh else 0
        if is_secret or doc.secret:
            secret_docs.add(i)
        if frag is None:
            notes.append(LocatedError(doc.origin, None, "", "not a state document; ignored"))
        else:
            fragments.append(frag)
    if errors:
        raise InvalidDocument(errors)
    desired = _Merger().merge(fragments)
    desired.warnings[:0] = [str(n) for n in notes]
    desired.generation = generation(docs, secret_docs)
    if parsed_chars >= _BIG_PARSE:
        heap.release_free_memory()  # the YAML values and line index of a big parse
    return desired


_BIG_PARSE = 4 << 20  # characters parsed (not from the cache) worth handing memory back for
_BIG_STATE = 1 << 20  # characters of documents from which big buffers are kept unmapped


def _parse_document(doc: SourceDocument) -> tuple[Fragment | None, bool]:
    """The fragment (None: ignored) and whether the document holds passwords."""
    lower = doc.name.lower()
    native = doc.name in NATIVE_FILES
    if not native and not lower.endswith((".yaml", ".yml")):
        return None, False
    if doc.problem is not None:
        raise InvalidDocument([LocatedError(doc.origin, doc.problem_line, "", doc.problem)])
    may_hold_passwords = doc.name == NATIVE_FILES[0] or "password" in lower or doc.secret
    try:
        frag, holds_passwords = _parse_text(doc, native, lower)
    except InvalidDocument as exc:
        if may_hold_passwords:
            raise InvalidDocument(withhold(exc.errors)) from None
        raise
    if frag is not None and (holds_passwords or may_hold_passwords):
        frag.warnings = withhold(frag.warnings)
    return frag, holds_passwords


def _parse_text(doc: SourceDocument, native: bool, lower: str) -> tuple[Fragment | None, bool]:
    if native:
        return parse_native(doc.name, doc.text, doc.origin), doc.name == NATIVE_FILES[0]
    located = load_yaml(doc.text, doc.origin)
    value = located.value
    state_like = (
        isinstance(value, dict) and "apiVersion" in value and bool(_STATE_KEYS & value.keys())
    )
    if "password" in lower or (doc.secret and not state_like):
        return parse_passwords(located), True
    return parse_state(located), False


class _FragmentCache:
    """Valid parsed documents by content, so that a change to one document (a Secret's
    passwords) re-parses only that one, not the 10,000-account ConfigMap beside it.
    Fragments are never mutated after parsing, so sharing them is safe.

    Bounded by the text it stands for as well as by count: a fragment holds ~10 times its
    document's size, so past generations of a 100,000-account document (15 MB, ~150 MB
    parsed) would stay in memory; such a document is parsed again instead."""

    def __init__(self, size: int = 32, chars: int = 4 << 20) -> None:
        self._size = size
        self._chars = chars  # the most document text whose fragments are kept
        self._items: OrderedDict[bytes, tuple[Fragment | None, bool, int]] = OrderedDict()
        self._held = 0  # characters of the documents kept
        self._lock = threading.Lock()  # the async wrapper runs loads in worker threads

    def parse(self, doc: SourceDocument) -> tuple[Fragment | None, bool, bool]:
        """(fragment, holds passwords, parsed now rather than found)"""
        digest = hashlib.blake2b(
            f"{doc.origin}\0{doc.name}\0{doc.secret}\0".encode(), key=_PROCESS_KEY
        )
        key = _fed(digest, doc.text).digest()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0], hit[1], False
        frag, holds_passwords = _parse_document(doc)  # raises on errors: never kept
        if len(doc.text) <= self._chars:
            self._keep(key, (frag, holds_passwords, len(doc.text)))
        return frag, holds_passwords, True

    def _keep(self, key: bytes, item: tuple[Fragment | None, bool, int]) -> None:
        with self._lock:
            if key in self._items:  # parsed twice at once: already counted
                return
            self._items[key] = item
            self._held += item[2]
            while len(self._items) > self._size or self._held > self._chars:
                self._held -= self._items.popitem(last=False)[1][2]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._held = 0


_CACHE = _FragmentCache()


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


_H = TypeVar("_H", bound=_Digest)
_FEED = 1 << 20


def _fed(digest: _H, text: str) -> _H:
    """``digest`` updated with ``text`` in UTF-8, a MiB at a time: a 15 MB document is never
    encoded whole beside itself."""
    for start in range(0, len(text), _FEED):
        digest.update(text[start : start + _FEED].encode())
    return digest


def generation(docs: Sequence[SourceDocument], secret: Collection[int] = ()) -> str:
    """A short digest of the inputs, stable for the same documents in any order."""
    parts = []
    for i, doc in enumerate(docs):
        if i in secret or doc.secret:
            digest = _fed(hmac.new(_PROCESS_KEY, None, hashlib.sha256), doc.text).hexdigest()
        else:
            digest = _fed(hashlib.sha256(), doc.text).hexdigest()
        parts.append(f"{doc.origin}\0{doc.name}\0{digest}")
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]


class _Merger:
    """Merges fragments in order, then checks what only the whole can show."""

    def __init__(self) -> None:
        self.c = Collector("")
        self.domains: dict[str, tuple[Domain, Origin]] = {}
        self.accounts: dict[str, tuple[Account, Origin]] = {}
        self.aliases: dict[str, tuple[tuple[str, ...], Origin]] = {}
        self.passwords: dict[str, tuple[PasswordIntent, Origin]] = {}
        self.settings: dict[tuple[str, str], Origin] = {}
        self.warnings: list[LocatedError] = []

    def error(self, origin: Origin, field: str, message: str) -> None:
        self.c.errors.append(LocatedError(origin[0], origin[1], field, message))

    def warn(self, origin: Origin, field: str, message: str) -> None:
        self.warnings.append(LocatedError(origin[0], origin[1], field, message))

    def merge(self, fragments: Sequence[Fragment]) -> Desired:
        state = MailState()
        for frag in fragments:
            self.warnings.extend(frag.warnings)
            self._declarations(frag)
        for frag in fragments:
            self._attach(frag)
        state.policy = _tightest([f.policy for f in fragments if f.policy is not None])
        self._alias_checks()
        if self.c.errors:
            raise InvalidDocument(self.c.sorted_errors())
        state.domains = {k: v for k, (v, _) in self.domains.items()}
        state.accounts = {k: v for k, (v, _) in self.accounts.items()}
        state.aliases = {k: v for k, (v, _) in self.aliases.items()}
        state.origins = Origins(self.accounts, self.aliases)
        for address, (intent, origin) in self.passwords.items():
            if address in self.accounts:
                state.passwords[address] = intent
            else:
                self.warn(origin, address, "password for an account no document declares; unused")
        pending = {a: NO_PASSWORD for a in self.accounts if a not in state.passwords}
        return Desired(state, [str(w) for w in self.warnings], pending)

    def _declarations(self, frag: Fragment) -> None:
        for name, (domain, origin) in frag.domains.items():
            old = self.domains.get(name)
            if old is not None and old[0] != domain:
                self.error(origin, name, f"domain declared differently at {where(old[1])}")
            elif old is None:
                self.domains[name] = (domain, origin)
        self._unique("account", self.accounts, frag.accounts)
        self._unique("alias", self.aliases, frag.aliases)
        self._unique("password", self.passwords, frag.passwords)
        self.settings.update(frag.settings)

    def _unique(
        self, kind: str, mine: dict[str, tuple[T, Origin]], theirs: dict[str, tuple[T, Origin]]
    ) -> None:
        for key, entry in theirs.items():
            old = mine.get(key)
            if old is not None:
                self.error(entry[1], key, f"{kind} declared twice: here and at {where(old[1])}")
            else:
                mine[key] = entry  # the fragment's own pair: 100,000 new ones took ~6 MB

    def _attach(self, frag: Fragment) -> None:
        """Quotas and restrictions from DMS's files, for accounts declared anywhere."""
        for address, (quota, origin) in frag.quotas.items():
            if self._settable(address, "quota", origin):
                account, account_origin = self.accounts[address]
                self.accounts[address] = (
                    Account(address, quota, account.restrict),
                    account_origin,
                )
        for address, kind, origin in frag.restricts:
            if self._settable(address, kind, origin):
                account, account_origin = self.accounts[address]
                self.accounts[address] = (
                    Account(address, account.quota, account.restrict | {kind}),
                    account_origin,
                )

    def _settable(self, address: str, what: str, origin: Origin) -> bool:
        if address not in self.accounts:
            self.error(origin, address, f"{what} for an account no document declares")
            return False
        old = self.settings.get((address, what))
        if old is not None:
            self.error(origin, address, f"{what} set twice: here and at {where(old)}")
            return False
        self.settings[(address, what)] = origin
        return True

    def _alias_checks(self) -> None:
        for alias, (_, origin) in self.aliases.items():
            account = self.accounts.get(alias)
            if account is not None:
                self.error(origin, alias, f"alias equals the account at {where(account[1])}")
        # Loops through exact aliases are certain. A loop through a catch-all holds only if
        # no undeclared account (unmanaged, kept when pruning is off) takes the address: warn.
        exact = find_loops(self._edges(catch_all=False))
        for cycle in exact:
            origin = self.aliases[cycle[0]][1]
            self.error(origin, cycle[0], "alias loop: " + " -> ".join([*cycle, cycle[0]]))
        certain = {frozenset(c) for c in exact}
        for cycle in find_loops(self._edges(catch_all=True)):
            if frozenset(cycle) not in certain:
                origin = self.aliases[cycle[0]][1]
                loop = " -> ".join([*cycle, cycle[0]])
                self.warn(origin, cycle[0], f"alias loop through a catch-all: {loop}")
        self._dangling_recipients()

    def _edges(self, catch_all: bool) -> dict[str, list[str]]:
        """alias -> the aliases its recipients are delivered through."""
        edges: dict[str, list[str]] = {}
        for alias, (recipients, _) in self.aliases.items():
            targets = []
            for r in recipients:
                domain_key = "@" + r.partition("@")[2]
                if r in self.aliases:
                    targets.append(r)
                elif catch_all and r not in self.accounts and domain_key in self.aliases:
                    targets.append(domain_key)
            edges[alias] = targets
        return edges

    def _dangling_recipients(self) -> None:
        local = set(self.domains) | {a.partition("@")[2] for a in self.accounts}
        for alias, (recipients, origin) in self.aliases.items():
            for r in recipients:
                local_part, _, domain = r.partition("@")
                if domain not in local or r in self.accounts or r in self.aliases:
                    continue
                if "@" + domain in self.aliases or local_part in self.aliases:
                    continue
                self.warn(origin, alias, f"recipient {r} is neither an account nor an alias here")


def find_loops(edges: dict[str, list[str]]) -> list[list[str]]:
    """Every cycle found by one depth-first walk (iterative: alias chains can be long)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    loops: list[list[str]] = []
    for start in sorted(edges):
        if start in state:
            continue
        path: list[str] = [start]
        state[start] = 1
        iters = [iter(edges.get(start, ()))]
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                loops.append(path[path.index(nxt) :])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(edges.get(nxt, ())))
    return loops


def _tightest(policies: Sequence[Policy]) -> Policy:
    """``false`` anywhere wins; ``true`` only grants what the operator's settings allow."""

    def tight(values: list[bool | None]) -> bool | None:
        given = [v for v in values if v is not None]
        return None if not given else all(given)

    return Policy(
        tight([p.prune for p in policies]),
        tight([p.delete_mail_data for p in policies]),
    )
