"""plan(desired, actual, ledger, policy) -> Plan: the difference as ordered ops. Pure: no I/O.

Order: new accounts, password changes, quotas, restrictions, new aliases, alias removals, account
removals, then DKIM keys for new domains. Guards applied here, before anything runs:
- deletion ceiling (``maxDeletions``: the larger of a count and a percentage of what the agent
  manages; aliases counted apart): over it, deletions are refused while the rest applies;
- an empty desired state never deletes anything unless approved;
- only managed accounts are pruned, unless ``pruneUnmanaged``;
- password modes ``enforce`` / ``onChange`` / ``initial`` (see ``_password_ops``);
- skew: a declared new account without a password waits (pending);
- DMS limits: LDAP refused, quotas with quotas disabled, DMS's alias prefix match.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from agent.dms.actual import Actual
from agent.dms.files import access_line
from agent.mailstate.model import Desired, DkimSpec, PasswordIntent, Policy, Restriction
from agent.reconcile.access import AccessLines
from agent.reconcile.dkimwork import DkimWork
from agent.reconcile.ledger import LedgerData

OpKind = Literal[
    "account_add",
    "password_update",
    "quota_set",
    "quota_del",
    "restrict_add",
    "restrict_del",
    "alias_add",
    "alias_del",
    "account_del",
    "dkim_add",
]
PasswordMode = Literal["enforce", "onChange", "initial"]
# the order ops run in is the order OpKind lists them
ORDER: tuple[OpKind, ...] = get_args(OpKind)
DELETIONS = frozenset({"account_del"})
ALIAS_DELETIONS = frozenset({"alias_del"})


@dataclass(frozen=True, slots=True)
class Op:
    kind: OpKind
    target: str  # account address, alias, or domain
    value: str = ""  # recipient, quota, restriction, or DKIM selector
    password: PasswordIntent | None = field(default=None, repr=False)
    digest: str | None = None  # keyed digest of ``password``, recorded in the ledger
    delete_mail_data: bool = False
    dkim: DkimSpec | None = None
    reason: str = ""
    # written to DMS's file by the agent itself, under the apply lock: DMS's command would hit
    # one of its matching quirks here (see docs/dms-compat.md)
    direct: bool = False

    @property
    def key(self) -> str:
        """Stable identity for retries and results (never holds a secret)."""
        return f"{self.kind}:{self.target}:{self.value}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "target": self.target}
        if self.value:
            out["value"] = self.value
        if self.password is not None:
            out["password"] = self.password.kind  # "plain" or "hash", never the value
        if self.delete_mail_data:
            out["deleteMailData"] = True
        if self.reason:
            out["reason"] = self.reason
        if self.direct:
            out["via"] = "files"
        return out


@dataclass(frozen=True, slots=True)
class Adoption:
    """A declared account that already exists: recorded as managed, its password untouched."""

    address: str
    digest: str | None
    hash: str | None


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    prune: bool = False
    prune_unmanaged: bool = False
    delete_mail_data: bool = False
    max_count: int = 5
    max_percent: float = 10.0
    passwords: PasswordMode = "onChange"
    allow_deletions: int = 0  # one-shot approval of refused deletions
    via_commands: bool = True  # DMS's `setup` quirks apply (not for the file executor)
    deferred: frozenset[str] = frozenset()  # op keys waiting for a retry backoff
    # the DKIM component (agent/dkim) owns keys, rotation and signing when it is enabled; the
    # plan then leaves DKIM alone so two components never race to make the same key
    dkim_ops: bool = True

    def tightened(self, doc: Policy) -> PlanPolicy:
        """The state document's policy may only tighten the operator's."""
        return PlanPolicy(
            prune=self.prune and doc.prune is not False,
            prune_unmanaged=self.prune_unmanaged and doc.prune is not False,
            delete_mail_data=self.delete_mail_data and doc.delete_mail_data is not False,
            max_count=self.max_count,
            max_percent=self.max_percent,
            passwords=self.passwords,
            allow_deletions=self.allow_deletions,
            via_commands=self.via_commands,
            deferred=self.deferred,
            dkim_ops=self.dkim_ops,
        )


@dataclass(slots=True)
class Plan:
    ops: list[Op] = field(default_factory=list)
    adopt: list[Adoption] = field(default_factory=list)
    # declared hashes DMS already holds (e.g. imported documents): the ledger learns the new
    # digest, no command runs
    settled: list[Adoption] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)  # ledger entries of accounts gone for good
    refused: list[Op] = field(default_factory=list)  # deletions over the ceiling
    refused_reason: str = ""
    blocked: dict[str, str] = field(default_factory=dict)  # op key -> why it cannot run now
    deferred: list[Op] = field(default_factory=list)  # waiting for their retry backoff
    drift: list[str] = field(default_factory=list)  # accounts whose password changed outside
    pending: dict[str, str] = field(default_factory=dict)  # account -> why it waits
    warnings: list[str] = field(default_factory=list)
    fatal: str | None = None  # nothing may be applied (e.g. LDAP provisioner)
    # what the DKIM component will do (when it owns DKIM; the plan then makes no key itself)
    dkim: list[DkimWork] = field(default_factory=list)
    # accounts DMS holds that the state no longer declares, kept because pruning is off
    kept: list[str] = field(default_factory=list)

    @property
    def held(self) -> int:
        """Work that will not run now: refused deletions, blocked ops, held DKIM steps."""
        return len(self.refused) + len(self.blocked) + sum(1 for w in self.dkim if w.held)

    @property
    def dkim_changes(self) -> int:
        return sum(1 for w in self.dkim if not w.held)

    @property
    def changes(self) -> bool:
        return bool(self.ops)

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return counts

    def describe(self, limit: int | None = None) -> dict[str, Any]:
        """As JSON; ``limit`` caps every list (for /status), the counts stay whole."""
        cut = slice(0, limit)
        return {
            "counts": {
                "ops": len(self.ops),
                "adopt": len(self.adopt),
                "refused": len(self.refused),
                "blocked": len(self.blocked),
                "deferred": len(self.deferred),
                "drift": len(self.drift),
                "pending": len(self.pending),
                "dkim": len(self.dkim),
                "kept": len(self.kept),
                "held": self.held,
            },
            "ops": [op.describe() for op in self.ops[cut]],
            "adopt": [a.address for a in self.adopt[cut]],
            "refused": [op.describe() for op in self.refused[cut]],
            "refusedReason": self.refused_reason,
            "blocked": dict(list(self.blocked.items())[cut]),
            "deferred": [op.key for op in self.deferred[cut]],
            "drift": self.drift[cut],
            "pending": dict(list(self.pending.items())[cut]),
            "warnings": self.warnings[cut],
            "fatal": self.fatal,
            "dkim": [w.describe() for w in self.dkim[cut]],
            "kept": self.kept[cut],
        }


def plan(
    desired: Desired,
    actual: Actual,
    ledger: LedgerData,
    policy: PlanPolicy,
    digests: Mapping[str, str],
) -> Plan:
    """The ordered ops that make ``actual`` equal ``desired``. ``digests``: keyed digests of
    ``desired.state.passwords`` (see ledger.intent_digests), computed once per desired state."""
    out = Plan(pending=dict(desired.pending), warnings=list(desired.warnings))
    if actual.info.ldap:
        out.fatal = "DMS uses ACCOUNT_PROVISIONER=LDAP: accounts live in LDAP, refusing to manage"
        return out
    policy = policy.tightened(desired.state.policy)
    ops: list[Op] = []
    creating = _account_ops(desired, actual, ledger, policy, digests, ops, out)
    _quota_ops(desired, actual, creating, ops, out)
    _restrict_ops(desired, actual, creating, ops)
    _alias_ops(desired, actual, ledger, policy, ops)
    _prune_ops(desired, actual, ledger, policy, ops, out)
    _dkim_ops(desired, actual, policy, ops, out)
    ops.sort(key=lambda op: (ORDER.index(op.kind), op.target, op.value))
    _guard_deletions(desired, ledger, policy, ops, out)
    if policy.via_commands:
        _guard_dms_quirks(actual, ops, out)
        ops[:] = _route_around_matching_quirks(actual, ops, out)
    for op in ops:
        if op.key in out.blocked:
            continue
        if op.key in policy.deferred:
            out.deferred.append(op)
        else:
            out.ops.append(op)
    return out


def _account_ops(
    desired: Desired,
    actual: Actual,
    ledger: LedgerData,
    policy: PlanPolicy,
    digests: Mapping[str, str],
    ops: list[Op],
    out: Plan,
) -> set[str]:
    """Creations, adoptions, password updates; returns the addresses being created."""
    creating: set[str] = set()
    passwords = desired.state.passwords
    hashes = actual.hashes
    for addr in desired.state.accounts:
        intent = passwords.get(addr)
        digest = digests.get(addr)
        if addr not in actual.state.accounts:
            if intent is None:
                # skew: the passwords document has not caught up; the rest goes ahead
                out.pending.setdefault(addr, "new account without a password")
                continue
            ops.append(Op("account_add", addr, password=intent, digest=digest, reason="new"))
            creating.add(addr)
            continue
        if addr in out.pending:
            del out.pending[addr]  # an existing account needs no password to be managed
        current = hashes.get(addr) if hashes is not None else None
        entry = ledger.accounts.get(addr)
        if entry is None:
            out.adopt.append(Adoption(addr, digest, current))
            continue
        if digest == entry.digest and (current is None or current == entry.hash):
            continue  # the common case, decided without a call
        if intent is not None and intent.kind == "hash" and intent.secret.value == current:
            out.settled.append(Adoption(addr, digest, current))  # DMS holds it already
            continue
        op = _password_op(addr, intent, digest, entry.digest, entry.hash, current, policy, out)
        if op is not None:
            ops.append(op)
    return creating


def _password_op(
    addr: str,
    intent: PasswordIntent | None,
    digest: str | None,
    applied_digest: str | None,
    applied_hash: str | None,
    current_hash: str | None,
    policy: PlanPolicy,
    out: Plan,
) -> Op | None:
    """``initial``: never after creation. ``onChange``: when the declared intent changed;
    a hash changed outside is drift, reported and kept. ``enforce``: drift is reverted too."""
    if intent is None or policy.passwords == "initial":
        return None
    if digest != applied_digest:
        return Op("password_update", addr, password=intent, digest=digest, reason="changed")
    drifted = applied_hash is not None and current_hash is not None and current_hash != applied_hash
    if not drifted:
        return None
    out.drift.append(addr)
    if policy.passwords == "enforce":
        return Op("password_update", addr, password=intent, digest=digest, reason="drift")
    return None


def _quota_ops(
    desired: Desired, actual: Actual, creating: set[str], ops: list[Op], out: Plan
) -> None:
    have_accounts = actual.state.accounts
    for addr, acc in desired.state.accounts.items():
        cur = have_accounts.get(addr)
        if cur is None:
            if acc.quota is None or addr not in creating:
                continue
        elif acc.quota == cur.quota or (
            actual.source == "commands" and shown_quota(acc.quota) == cur.quota
        ):
            limited = acc.quota is not None and acc.quota.rstrip("BkMGT").strip("0") != ""
            if actual.source == "commands" and limited and cur.quota is None:
                out.warnings.append(
                    f"{addr}: quota {acc.quota} is under 1 KiB; `setup email list` shows it as "
                    "no limit, so whether DMS holds it cannot be seen without dms.configDir"
                )
            continue
        if acc.quota is not None and not actual.info.quotas_enabled:
            out.blocked[f"quota_set:{addr}:{acc.quota}"] = "quotas are off in DMS (ENABLE_QUOTAS=0)"
            continue
        if acc.quota is None:
            ops.append(Op("quota_del", addr, reason="not declared"))
        else:
            ops.append(Op("quota_set", addr, acc.quota))


QUOTA_UNITS = {"B": 1, "k": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def shown_quota(quota: str | None) -> str | None:
    """A quota as `setup email list` shows its limit (``numfmt --to=iec`` of KiB, rounded up;
    no limit or ``0``: None), so a command-observed state compares equal."""
    if quota is None:
        return None
    unit = quota[-1] if quota[-1] in QUOTA_UNITS else "B"
    digits = quota[:-1] if quota[-1] in QUOTA_UNITS else quota
    if not digits.isdigit() or int(digits) == 0:
        return None if digits == "0" else quota
    value = float(int(digits) * QUOTA_UNITS[unit] // 1024 * 1024)
    if value < 1024:
        return None  # under 1 KiB: DMS lists a limit of 0, which reads as none
    for suffix in "KMGTPE":
        value /= 1024
        if value < 1024 or suffix == "E":
            if value < 10 and math.ceil(value * 10) / 10 < 10:
                return f"{math.ceil(value * 10) / 10:.1f}{suffix}"
            return f"{math.ceil(value)}{suffix}"
    return quota


def _restrict_ops(desired: Desired, actual: Actual, creating: set[str], ops: list[Op]) -> None:
    have_accounts = actual.state.accounts
    for addr, acc in desired.state.accounts.items():
        cur = have_accounts.get(addr)
        if cur is None:
            if not acc.restrict or addr not in creating:
                continue
            have: frozenset[Restriction] = frozenset()
        elif acc.restrict == cur.restrict:
            continue
        else:
            have = cur.restrict
        for r in sorted(acc.restrict - have):
            ops.append(Op("restrict_add", addr, r))
        for r in sorted(have - acc.restrict):
            ops.append(Op("restrict_del", addr, r))


def _alias_ops(
    desired: Desired, actual: Actual, ledger: LedgerData, policy: PlanPolicy, ops: list[Op]
) -> None:
    """A declared alias is authoritative for its recipients; an undeclared alias goes only when
    pruning is allowed and the agent manages it (or pruneUnmanaged)."""
    want = desired.state.aliases
    have = actual.state.aliases
    for alias, recipients in want.items():
        current = set(have.get(alias, ()))
        for r in recipients:
            if r not in current:
                ops.append(Op("alias_add", alias, r))
        for r in sorted(current - set(recipients)):
            ops.append(Op("alias_del", alias, r, reason="not declared"))
    if not policy.prune:
        return
    for alias, recipients in have.items():
        if alias in want:
            continue
        managed = ledger.aliases.get(alias, frozenset())
        for r in recipients:
            if r in managed or policy.prune_unmanaged:
                ops.append(Op("alias_del", alias, r, reason="alias not declared"))


def _prune_ops(
    desired: Desired,
    actual: Actual,
    ledger: LedgerData,
    policy: PlanPolicy,
    ops: list[Op],
    out: Plan,
) -> None:
    declared = desired.state.accounts
    for addr in ledger.accounts:
        if addr not in actual.state.accounts and addr not in declared:
            out.forget.append(addr)  # removed from outside and no longer wanted
    for addr in sorted(a for a in actual.state.accounts if a not in declared):
        if policy.prune and (addr in ledger.accounts or policy.prune_unmanaged):
            ops.append(
                Op("account_del", addr, delete_mail_data=policy.delete_mail_data, reason="pruned")
            )
        else:
            out.kept.append(addr)  # "kept, undeclared": prune is off, or the agent never managed it


def _dkim_ops(
    desired: Desired, actual: Actual, policy: PlanPolicy, ops: list[Op], out: Plan
) -> None:
    """The basic case only: a declared domain without a key for its selector gets one."""
    wanted = [d for d in desired.state.domains.values() if d.dkim is not None]
    if not wanted or not policy.dkim_ops:
        return
    if not policy.via_commands:
        out.warnings.append("DKIM keys are made by DMS's `setup config dkim`: not without DMS")
        return
    if actual.dkim is None or actual.info.dkim_backend == "none":
        out.warnings.append("DKIM keys cannot be checked here (no DMS config folder or backend)")
        return
    for dom in wanted:
        spec = dom.dkim
        assert spec is not None
        if spec.selector in actual.dkim.get(dom.name, frozenset()):
            continue
        op = Op("dkim_add", dom.name, spec.selector, dkim=spec, reason="no key")
        if spec.key_type == "ed25519" and actual.info.dkim_backend == "opendkim":
            out.blocked[op.key] = "OpenDKIM cannot make ed25519 keys (DMS's Rspamd can)"
        ops.append(op)


def ceiling(policy: PlanPolicy, managed: int) -> int:
    """The larger of the count and the percentage of what the agent manages."""
    return max(policy.max_count, math.floor(managed * policy.max_percent / 100.0))


def _guard_deletions(
    desired: Desired, ledger: LedgerData, policy: PlanPolicy, ops: list[Op], out: Plan
) -> None:
    accounts = [op for op in ops if op.kind in DELETIONS]
    aliases = [op for op in ops if op.kind in ALIAS_DELETIONS]
    empty = not desired.state.accounts and not desired.state.aliases
    reasons = []
    refuse: list[Op] = []
    allowed = ceiling(policy, len(ledger.accounts)) + policy.allow_deletions
    if accounts and (len(accounts) > allowed or (empty and policy.allow_deletions < len(accounts))):
        refuse += accounts
        why = "the desired state is empty" if empty else f"over maxDeletions ({allowed})"
        reasons.append(f"{len(accounts)} account deletions refused: {why}")
    managed_aliases = sum(len(r) for r in ledger.aliases.values())
    allowed_aliases = ceiling(policy, managed_aliases) + policy.allow_deletions
    if aliases and (len(aliases) > allowed_aliases or empty):
        refuse += aliases
        why = "the desired state is empty" if empty else f"over maxDeletions ({allowed_aliases})"
        reasons.append(f"{len(aliases)} alias removals refused: {why}")
    if refuse:
        keys = {op.key for op in refuse}
        ops[:] = [op for op in ops if op.key not in keys]
        out.refused = refuse
        approve = " (approve once: dms-agent apply --allow-deletions N)"
        out.refused_reason = "; ".join(reasons) + approve


def _guard_dms_quirks(actual: Actual, ops: list[Op], out: Plan) -> None:
    """DMS's `email add` refuses an address that is a PREFIX (an unescaped regex) of an
    existing alias, and `alias add` one that is a prefix of an account. Say so clearly, before
    anything runs, instead of failing with DMS's misleading message."""
    aliases = _PrefixIndex(actual.state.aliases)
    created = [op.target for op in ops if op.kind == "account_add"]
    accounts = _PrefixIndex([*actual.state.accounts, *created])
    for op in ops:
        if op.kind == "account_add" and op.password is not None and op.password.kind == "plain":
            clash = aliases.clash(op.target)
            if clash is not None:
                out.blocked[op.key] = (
                    f"DMS refuses {op.target}: alias {clash} starts with it (DMS matches "
                    "aliases by prefix); remove that alias first or declare a pre-hashed password"
                )
        elif op.kind == "alias_add":
            clash = accounts.clash(op.target)
            if clash is not None:
                out.blocked[op.key] = (
                    f"DMS refuses alias {op.target}: account {clash} starts with it "
                    "(DMS matches accounts by prefix)"
                )


class _PrefixIndex:
    """Entries bucketed by their first characters, so a prefix test does not scan them all."""

    WIDTH = 3

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = list(entries)
        self.buckets: dict[str, list[str]] = {}
        for e in self.entries:
            self.buckets.setdefault(e[: self.WIDTH], []).append(e)

    def clash(self, address: str) -> str | None:
        head = address[: self.WIDTH]
        if "." in head or len(head) < self.WIDTH:
            return _prefix_clash(address, self.entries)  # a wildcard up front: scan all
        return _prefix_clash(address, self.buckets.get(head, ()))


def _prefix_clash(address: str, entries: Iterable[str]) -> str | None:
    """DMS greps ``^<address>`` unescaped: ``.`` matches any character."""
    n = len(address)
    for entry in entries:
        if len(entry) >= n and all(
            a == "." or a == b for a, b in zip(address, entry[:n], strict=True)
        ):
            return entry
    return None


# --- DMS's substring, prefix and case quirks (docs/dms-compat.md) ----------------------------

EDITS_BY_ADDRESS = frozenset(
    {"password_update", "quota_set", "quota_del", "account_del", "restrict_del"}
)


def _route_around_matching_quirks(actual: Actual, ops: list[Op], out: Plan) -> list[Op]:
    """Ops whose DMS command would match the wrong lines (or none) go to the file applier
    (``direct``) when the config folder is mounted; without it they are blocked with the reason,
    so nothing is retried in vain and no restriction is removed that was not asked."""
    access: dict[str, AccessLines] = {}
    routed = []
    for op in ops:
        if op.kind in ("restrict_add", "restrict_del") and op.value not in access:
            access[op.value] = AccessLines((actual.access_lines or {}).get(op.value, ()))
        why = _quirk(op, actual, access)
        if why is None:
            routed.append(op)
        elif actual.source == "files":
            routed.append(replace(op, direct=True, reason=_join_reason(op.reason, why)))
        else:
            out.blocked[op.key] = f"{why}; mount DMS's config folder (dms.configDir) to converge"
            if op.kind == "restrict_add":
                access[op.value].remove(access_line(op.target).rstrip("\n"))  # not written
    return routed


def _join_reason(reason: str, why: str) -> str:
    return f"{reason}; {why}" if reason else why


def _quirk(op: Op, actual: Actual, access: dict[str, AccessLines]) -> str | None:
    """Why DMS's command for ``op`` would not do exactly ``op`` (None: it would). Restriction
    ops also update ``access`` to the lines as they will be once ``op`` ran."""
    if op.kind in EDITS_BY_ADDRESS and op.target in actual.cased:
        return f"DMS cannot edit {op.target}: its files spell it with upper case letters"
    if op.kind in ("alias_add", "alias_del") and (
        op.target in actual.cased or op.value in actual.cased
    ):
        return f"DMS cannot edit alias {op.target}: its file spells it with upper case letters"
    if op.kind == "restrict_add":
        lines = access[op.value]
        clash = lines.holding(op.target)
        lines.add(access_line(op.target).rstrip("\n"))
        if clash is not None:
            return f"DMS's restrict add finds {op.target} inside {clash!r}"
    if op.kind == "restrict_del":
        lines = access[op.value]
        mine, swept = lines.of(op.target), lines.starting_with(op.target)
        for line in mine:
            lines.remove(line)
        if sorted(swept) != sorted(mine):
            others = sorted({ln.split()[0] for ln in swept if ln not in mine})
            if others:
                return f"DMS's restrict del would also remove {', '.join(others)}"
            return f"DMS's restrict del cannot match {op.target} (spelled with upper case)"
    return None
