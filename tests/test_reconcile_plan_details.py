"""plan() branch by branch: the cases the broad plan tests pass through without pinning
(found by bench/mutation.py). Pure values, no I/O, except the real `numfmt` for quotas."""

from __future__ import annotations

import subprocess

import pytest

from agent.dms.actual import Actual, DmsInfo
from agent.mailstate.model import (
    Account,
    Desired,
    DkimSpec,
    Domain,
    MailState,
    PasswordIntent,
    Policy,
    Secret,
)
from agent.reconcile.dkimwork import DkimWork
from agent.reconcile.ledger import LedgerData, LedgerEntry, intent_digests
from agent.reconcile.plan import Adoption, Op, Plan, PlanPolicy, plan, shown_quota
from tests.rig.proc import require_binary

KEY = b"k"


def pw(value: str, kind: str = "plain") -> PasswordIntent:
    return PasswordIntent(kind, Secret(value))  # type: ignore[arg-type]


def run(d: MailState, a: Actual, ledger: LedgerData | None = None, **policy: object) -> Plan:
    digests = intent_digests(KEY, d.passwords)
    return plan(Desired(d), a, ledger or LedgerData(), PlanPolicy(**policy), digests)  # type: ignore[arg-type]


def ops(p: Plan) -> list[tuple[str, str, str]]:
    return [(op.kind, op.target, op.value) for op in p.ops]


def accounts(*names: str, **kw: object) -> dict[str, Account]:
    return {n: Account(n, **kw) for n in names}  # type: ignore[arg-type]


# --- quotas as `setup email list` shows them ------------------------------------------------

UNITS = {"B": 1, "k": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


QUOTAS = (
    *("1G", "10G", "15G", "500M", "1023M", "10M", "9999M", "512k", "1k", "999k", "1000k"),
    *("1025k", "1536k", "10239k", "10241k", "1048576k", "100", "2047", "5B", "1T", "2048G"),
)


@pytest.mark.parametrize("quota", QUOTAS)
def test_shown_quota_is_what_numfmt_prints(quota: str) -> None:
    """DMS prints a limit with ``numfmt --to=iec`` of its KiB; the real numfmt decides."""
    numfmt = require_binary("numfmt", "coreutils")
    unit = quota[-1] if quota[-1] in UNITS else "B"
    digits = quota.rstrip("BkMGT")
    kib = int(digits) * UNITS[unit] // 1024
    shown = subprocess.run(
        [numfmt, "--to=iec", "--from-unit=1024", str(kib)], capture_output=True, text=True
    ).stdout.strip()
    # under 1 KiB DMS lists a limit of 0, which `setup email list` shows as no limit at all
    assert shown_quota(quota) == (None if shown == "0" else shown)


def test_shown_quota_without_a_limit_and_unparsed() -> None:
    assert [shown_quota(q) for q in (None, "0", "0M", "0k")] == [None] * 4
    assert shown_quota("lots") == "lots"  # not a DMS quota: shown as written, never equal


def test_commands_observed_quota_compares_as_shown() -> None:
    d = MailState(accounts={"a@x.org": Account("a@x.org", quota="1536k")})
    a = Actual(MailState(accounts={"a@x.org": Account("a@x.org", quota="1.5M")}), None)
    ledger = LedgerData(accounts={"a@x.org": LedgerEntry(None, None)})
    a.source = "commands"
    assert run(d, a, ledger).ops == []
    a.source = "files"  # the file holds what was written: "1.5M" is not "1536k"
    assert ops(run(d, a, ledger)) == [("quota_set", "a@x.org", "1536k")]


# --- quotas and restrictions ----------------------------------------------------------------


def test_quota_ops_for_new_pending_and_existing_accounts() -> None:
    d = MailState(
        accounts={
            "new@x.org": Account("new@x.org", quota="1G", restrict=frozenset({"send"})),
            "wait@x.org": Account("wait@x.org", quota="1G", restrict=frozenset({"send"})),
            "had@x.org": Account("had@x.org"),
            "same@x.org": Account("same@x.org", quota="2G"),
        },
        passwords={"new@x.org": pw("n")},
    )
    a = Actual(
        MailState(
            accounts={
                "had@x.org": Account("had@x.org", quota="5G"),
                "same@x.org": Account("same@x.org", quota="2G"),
            }
        ),
        {},
    )
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in ("had@x.org", "same@x.org")})
    p = run(d, a, ledger)
    # the pending account (no password yet) gets nothing; the new one its quota and restriction
    assert ops(p) == [
        ("account_add", "new@x.org", ""),
        ("quota_set", "new@x.org", "1G"),
        ("quota_del", "had@x.org", ""),
        ("restrict_add", "new@x.org", "send"),
    ]
    assert [op.reason for op in p.ops if op.kind == "quota_del"] == ["not declared"]
    assert list(p.pending) == ["wait@x.org"]


def test_quotas_off_blocks_a_new_accounts_quota_but_not_the_account() -> None:
    d = MailState(
        accounts={"a@x.org": Account("a@x.org", quota="1G")}, passwords={"a@x.org": pw("p")}
    )
    a = Actual(MailState(), {}, info=DmsInfo(quotas_enabled=False))
    p = run(d, a)
    assert ops(p) == [("account_add", "a@x.org", "")]
    assert p.blocked == {"quota_set:a@x.org:1G": "quotas are off in DMS (ENABLE_QUOTAS=0)"}
    # removing a quota needs no quota support
    d2 = MailState(accounts={"a@x.org": Account("a@x.org")})
    a2 = Actual(MailState(accounts={"a@x.org": Account("a@x.org", "1G")}), {}, info=a.info)
    ledger = LedgerData(accounts={"a@x.org": LedgerEntry(None, None)})
    assert ops(run(d2, a2, ledger)) == [("quota_del", "a@x.org", "")]


def test_restrictions_unchanged_means_no_op() -> None:
    r = frozenset({"send", "receive"})
    d = MailState(accounts={"a@x.org": Account("a@x.org", restrict=r)})
    a = Actual(MailState(accounts={"a@x.org": Account("a@x.org", restrict=r)}), {})
    assert run(d, a, LedgerData(accounts={"a@x.org": LedgerEntry(None, None)})).ops == []


# --- passwords ------------------------------------------------------------------------------


def test_password_branches() -> None:
    d = MailState(accounts=accounts("a@x.org"), passwords={"a@x.org": pw("one")})
    digest = intent_digests(KEY, d.passwords)["a@x.org"]
    a = Actual(MailState(accounts=accounts("a@x.org")), {"a@x.org": "{X}now"})

    def entry(digest_: str | None, hash_: str | None) -> LedgerData:
        return LedgerData(accounts={"a@x.org": LedgerEntry(digest_, hash_)})

    # same intent, DMS's hash unknown (observed through commands): nothing to do, no drift
    unknown = Actual(a.state, None)
    assert run(d, unknown, entry(digest, "{X}then")).ops == []
    assert run(d, unknown, entry(digest, "{X}then")).drift == []
    # same intent, applied hash unknown (e.g. a migrated ledger): no drift claimed
    p = run(d, a, entry(digest, None), passwords="enforce")
    assert p.ops == [] and p.drift == []
    # same intent, hash changed outside: drift, kept by onChange and initial
    assert run(d, a, entry(digest, "{X}then")).drift == ["a@x.org"]
    assert run(d, a, entry(digest, "{X}then")).ops == []
    # initial: never after creation, not even for drift or a new intent
    assert run(d, a, entry("old", "{X}then"), passwords="initial").ops == []
    # a changed intent is applied under onChange and enforce, with the new digest
    for mode in ("onChange", "enforce"):
        changed = run(d, a, entry("old", "{X}now"), passwords=mode)
        assert [(op.kind, op.reason, op.digest) for op in changed.ops] == [
            ("password_update", "changed", digest)
        ]
        assert changed.ops[0].password == d.passwords["a@x.org"]
    # no declared password: the account is managed without touching its password
    bare = MailState(accounts=accounts("a@x.org"))
    assert run(bare, a, entry("old", "{X}then"), passwords="enforce").ops == []


def test_existing_account_is_never_pending_and_is_adopted_with_its_hash() -> None:
    d = MailState(accounts=accounts("a@x.org"))
    a = Actual(MailState(accounts=accounts("a@x.org")), {"a@x.org": "{X}h"})
    p = plan(
        Desired(d, pending={"a@x.org": "new account without a password"}),
        a,
        LedgerData(),
        PlanPolicy(),
        {},
    )
    assert p.pending == {} and p.ops == []
    assert [(x.address, x.digest, x.hash) for x in p.adopt] == [("a@x.org", None, "{X}h")]


# --- aliases --------------------------------------------------------------------------------


def test_alias_recipients_added_and_removed_one_by_one() -> None:
    d = MailState(accounts=accounts("k@x.org"), aliases={"l@x.org": ("a@y.org", "b@y.org")})
    a = Actual(
        MailState(accounts=accounts("k@x.org"), aliases={"l@x.org": ("b@y.org", "c@y.org")}), {}
    )
    ledger = LedgerData(accounts={"k@x.org": LedgerEntry(None, None)})
    p = run(d, a, ledger, max_count=5)
    assert ops(p) == [("alias_add", "l@x.org", "a@y.org"), ("alias_del", "l@x.org", "c@y.org")]
    assert p.ops[1].reason == "not declared"


def test_undeclared_alias_pruned_only_for_managed_recipients() -> None:
    d = MailState(accounts=accounts("k@x.org"))
    a = Actual(
        MailState(accounts=accounts("k@x.org"), aliases={"old@x.org": ("m@y.org", "u@y.org")}),
        {},
    )
    ledger = LedgerData(
        accounts={"k@x.org": LedgerEntry(None, None)},
        aliases={"old@x.org": frozenset({"m@y.org"})},
    )
    assert run(d, a, ledger).ops == []  # prune off
    p = run(d, a, ledger, prune=True)
    assert ops(p) == [("alias_del", "old@x.org", "m@y.org")]
    assert p.ops[0].reason == "alias not declared"
    both = run(d, a, ledger, prune=True, prune_unmanaged=True)
    assert {op.value for op in both.ops} == {"m@y.org", "u@y.org"}


# --- pruning and forgetting -----------------------------------------------------------------


def test_accounts_gone_outside_are_forgotten_unless_still_declared() -> None:
    d = MailState(accounts=accounts("back@x.org"), passwords={"back@x.org": pw("b")})
    a = Actual(MailState(accounts=accounts("k@x.org")), {})
    ledger = LedgerData(
        accounts={n: LedgerEntry(None, None) for n in ("gone@x.org", "back@x.org", "k@x.org")}
    )
    p = run(d, a, ledger)
    assert p.forget == ["gone@x.org"]  # back@x.org is declared: it is made again instead
    assert ops(p) == [("account_add", "back@x.org", "")]


def test_pruning_carries_delete_mail_data_and_the_document_may_veto_it() -> None:
    d = MailState(accounts=accounts("k@x.org"))
    a = Actual(MailState(accounts=accounts("k@x.org", "m@x.org")), {})
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in ("k@x.org", "m@x.org")})
    p = run(d, a, ledger, prune=True, delete_mail_data=True)
    assert [(op.kind, op.delete_mail_data, op.reason) for op in p.ops] == [
        ("account_del", True, "pruned")
    ]
    assert not run(d, a, ledger, prune=True).ops[0].delete_mail_data
    keep_mail = MailState(accounts=d.accounts, policy=Policy(delete_mail_data=False))
    assert not run(keep_mail, a, ledger, prune=True, delete_mail_data=True).ops[0].delete_mail_data
    no_prune = MailState(accounts=d.accounts, policy=Policy(prune=False))
    assert run(no_prune, a, ledger, prune=True, prune_unmanaged=True).ops == []


def test_tightened_keeps_the_operators_other_settings() -> None:
    base = PlanPolicy(
        prune=True,
        prune_unmanaged=True,
        delete_mail_data=True,
        max_count=7,
        max_percent=3.0,
        passwords="enforce",
        allow_deletions=2,
        via_commands=False,
        deferred=frozenset({"k"}),
        dkim_ops=False,
    )
    assert base.tightened(Policy()) == base
    assert base.tightened(Policy(prune=True, delete_mail_data=True)) == base
    off = base.tightened(Policy(prune=False, delete_mail_data=False))
    assert (off.prune, off.prune_unmanaged, off.delete_mail_data) == (False, False, False)
    assert (off.max_count, off.passwords, off.deferred) == (7, "enforce", frozenset({"k"}))


# --- DKIM -----------------------------------------------------------------------------------


def dkim_state(*specs: tuple[str, DkimSpec]) -> MailState:
    return MailState(domains={d: Domain(d, s) for d, s in specs})


def test_dkim_warnings_when_keys_cannot_be_made_or_checked() -> None:
    d = dkim_state(("x.org", DkimSpec()))
    files = Actual(MailState(), {}, dkim={})
    p = run(d, files, via_commands=False)
    assert p.ops == [] and "not without DMS" in p.warnings[0]
    unknown = Actual(MailState(), {}, dkim=None)
    assert "cannot be checked" in run(d, unknown).warnings[0]
    none = Actual(MailState(), {}, dkim={}, info=DmsInfo(dkim_backend="none"))
    assert "cannot be checked" in run(d, none).warnings[0]
    assert run(MailState(domains={"x.org": Domain("x.org")}), unknown).warnings == []


def test_dkim_ed25519_needs_rspamd() -> None:
    d = dkim_state(("x.org", DkimSpec("s1", "ed25519")), ("y.org", DkimSpec("s2")))
    opendkim = Actual(MailState(), {}, dkim={"y.org": frozenset({"other"})})
    p = run(d, opendkim)
    assert ops(p) == [("dkim_add", "y.org", "s2")]
    assert p.blocked == {
        "dkim_add:x.org:s1": "OpenDKIM cannot make ed25519 keys (DMS's Rspamd can)"
    }
    rspamd = Actual(MailState(), {}, dkim={}, info=DmsInfo(dkim_backend="rspamd"))
    made = run(d, rspamd)
    assert ops(made) == [("dkim_add", "x.org", "s1"), ("dkim_add", "y.org", "s2")]
    assert made.ops[0].dkim == DkimSpec("s1", "ed25519") and made.ops[0].reason == "no key"


# --- DMS's prefix quirks ----------------------------------------------------------------------


def test_prefix_clash_rules() -> None:
    # a dot in the new address matches any character (DMS's unescaped regex), also up front
    d = MailState(accounts=accounts("b.b@x.org"), passwords={"b.b@x.org": pw("p")})
    a = Actual(MailState(aliases={"bob@x.org.uk": ("t@y.org",)}), {})
    assert "alias bob@x.org.uk starts with it" in run(d, a).blocked["account_add:b.b@x.org:"]
    # no clash: a different character, or the alias is shorter than the address
    for alias in ("bxb@y.org", "b.b@x.or"):
        a = Actual(MailState(aliases={alias: ("t@y.org",)}), {})
        assert ops(run(d, a)) == [("account_add", "b.b@x.org", "")], alias
    # short addresses are compared too
    short = MailState(accounts=accounts("a@"), passwords={"a@": pw("p")})
    assert run(short, Actual(MailState(aliases={"a@b.org": ("t@y.org",)}), {})).blocked
    # a pre-hashed password goes through the file applier: no `email add`, no quirk
    hashed = MailState(accounts=accounts("bob@x.org"), passwords={"bob@x.org": pw("{X}h", "hash")})
    a = Actual(MailState(aliases={"bob@x.org.uk": ("t@y.org",)}), {})
    assert ops(run(hashed, a)) == [("account_add", "bob@x.org", "")]


def test_alias_blocked_by_an_account_created_in_the_same_plan() -> None:
    d = MailState(
        accounts=accounts("bob@x.org.uk"),
        passwords={"bob@x.org.uk": pw("p")},
        aliases={"bob@x.org": ("t@y.org",)},
    )
    p = run(d, Actual(MailState(), {}))
    assert ops(p) == [("account_add", "bob@x.org.uk", "")]
    assert "account bob@x.org.uk starts with it" in p.blocked["alias_add:bob@x.org:t@y.org"]


# --- what a plan says about itself ------------------------------------------------------------


def test_describe_summary_and_limit() -> None:
    d = MailState(
        accounts={n: Account(n, quota="1G") for n in ("a@x.org", "b@x.org", "c@x.org")},
        passwords={n: pw("s3cret") for n in ("a@x.org", "b@x.org", "c@x.org")},
    )
    p = run(d, Actual(MailState(), {}))
    p.warnings.append("w")
    assert p.changes and p.summary() == {"account_add": 3, "quota_set": 3}
    whole = p.describe()
    assert whole["counts"] == {
        "ops": 6,
        "adopt": 0,
        "refused": 0,
        "blocked": 0,
        "deferred": 0,
        "drift": 0,
        "pending": 0,
        "dkim": 0,
        "kept": 0,
        "held": 0,
    }
    assert whole["ops"][0] == {
        "kind": "account_add",
        "target": "a@x.org",
        "password": "plain",
        "reason": "new",
    }
    assert whole["ops"][3] == {"kind": "quota_set", "target": "a@x.org", "value": "1G"}
    assert whole["fatal"] is None and whole["refusedReason"] == "" and whole["warnings"] == ["w"]
    cut = p.describe(limit=2)
    assert len(cut["ops"]) == 2 and cut["counts"]["ops"] == 6
    assert "s3cret" not in str(whole)
    assert not Plan().changes and Plan().summary() == {}


def test_describe_lists_every_part() -> None:
    p = Plan(
        ops=[Op("account_del", "a@x.org", delete_mail_data=True, reason="pruned")],
        refused=[Op("account_del", "b@x.org")],
        refused_reason="why",
        blocked={"k1": "b1", "k2": "b2"},
        deferred=[Op("alias_add", "l@x.org", "t@y.org")],
        drift=["d1", "d2"],
        pending={"p1": "w1", "p2": "w2"},
        fatal="f",
    )
    out = p.describe(limit=1)
    assert out["ops"] == [
        {"kind": "account_del", "target": "a@x.org", "deleteMailData": True, "reason": "pruned"}
    ]
    assert out["refused"] == [{"kind": "account_del", "target": "b@x.org"}]
    assert out["blocked"] == {"k1": "b1"} and out["pending"] == {"p1": "w1"}
    assert out["deferred"] == ["alias_add:l@x.org:t@y.org"] and out["drift"] == ["d1"]
    assert (out["refusedReason"], out["fatal"]) == ("why", "f")
    assert out["counts"]["blocked"] == 2 and out["counts"]["drift"] == 2


# --- survivors of the first mutation run, one assertion each ------------------------------


def test_new_and_adopted_accounts_carry_their_digest() -> None:
    d = MailState(accounts=accounts("a@x.org", "b@x.org"), passwords={"a@x.org": pw("pa")})
    d.passwords["b@x.org"] = pw("pb")
    digests = intent_digests(KEY, d.passwords)
    a = Actual(MailState(accounts=accounts("b@x.org")), {"b@x.org": "{X}hb"})
    p = run(d, a)
    assert [(op.target, op.digest) for op in p.ops] == [("a@x.org", digests["a@x.org"])]
    assert [(x.address, x.digest, x.hash) for x in p.adopt] == [
        ("b@x.org", digests["b@x.org"], "{X}hb")
    ]


def test_enforced_drift_reapplies_the_declared_password_and_digest() -> None:
    d = MailState(accounts=accounts("a@x.org"), passwords={"a@x.org": pw("one")})
    digest = intent_digests(KEY, d.passwords)["a@x.org"]
    a = Actual(MailState(accounts=accounts("a@x.org")), {"a@x.org": "{X}outside"})
    ledger = LedgerData(accounts={"a@x.org": LedgerEntry(digest, "{X}applied")})
    (op,) = run(d, a, ledger, passwords="enforce").ops
    assert (op.password, op.digest, op.reason) == (d.passwords["a@x.org"], digest, "drift")


def test_every_account_is_considered_not_only_those_before_a_skipped_one() -> None:
    # the first in each loop takes the "nothing to do" branch; the later ones still count
    names = ("a@x.org", "b@x.org", "c@x.org")
    d = MailState(
        accounts={
            "a@x.org": Account("a@x.org", quota="1G", restrict=frozenset({"send"})),
            "b@x.org": Account("b@x.org", quota="2G", restrict=frozenset({"send"})),
            "c@x.org": Account("c@x.org", quota="3G", restrict=frozenset({"receive"})),
        },
        passwords={"c@x.org": pw("pc")},
        domains={
            "a.org": Domain("a.org", DkimSpec()),
            "b.org": Domain("b.org", DkimSpec()),
        },
    )
    a = Actual(
        MailState(
            accounts={
                "a@x.org": Account("a@x.org", quota="1G", restrict=frozenset({"send"})),
                "b@x.org": Account("b@x.org"),
            }
        ),
        {"a@x.org": "{X}a", "b@x.org": "{X}b"},
        dkim={"a.org": frozenset({"mail"})},
    )
    ledger = LedgerData(accounts={n: LedgerEntry(None, f"{{X}}{n[0]}") for n in names[:2]})
    p = run(d, a, ledger)
    assert ops(p) == [
        ("account_add", "c@x.org", ""),
        ("quota_set", "b@x.org", "2G"),
        ("quota_set", "c@x.org", "3G"),
        ("restrict_add", "b@x.org", "send"),
        ("restrict_add", "c@x.org", "receive"),
        ("dkim_add", "b.org", "mail"),
    ]
    # a pending account first: the one after it is still created
    d2 = MailState(accounts=accounts("a@x.org", "b@x.org"), passwords={"b@x.org": pw("pb")})
    assert ops(run(d2, Actual(MailState(), {}))) == [("account_add", "b@x.org", "")]


def test_an_undeclared_alias_is_skipped_and_the_next_one_still_pruned() -> None:
    d = MailState(accounts=accounts("k@x.org"), aliases={"a@x.org": ("k@x.org",)})
    a = Actual(
        MailState(
            accounts=accounts("k@x.org"),
            aliases={"a@x.org": ("k@x.org",), "b@x.org": ("k@x.org",), "c@x.org": ("k@x.org",)},
        ),
        {},
    )
    # b@x.org was never managed (not in the ledger at all); c@x.org was
    ledger = LedgerData(
        accounts={"k@x.org": LedgerEntry(None, None)},
        aliases={"a@x.org": frozenset({"k@x.org"}), "c@x.org": frozenset({"k@x.org"})},
    )
    assert ops(run(d, a, ledger, prune=True)) == [("alias_del", "c@x.org", "k@x.org")]


def test_messages_people_read() -> None:
    pending = run(MailState(accounts=accounts("a@x.org")), Actual(MailState(), {}))
    assert pending.pending == {"a@x.org": "new account without a password"}
    d = MailState(domains={"x.org": Domain("x.org", DkimSpec())})
    assert run(d, Actual(MailState(), {}, dkim=None)).warnings == [
        "DKIM keys cannot be checked here (no DMS config folder or backend)"
    ]
    assert run(d, Actual(MailState(), {}, dkim={}), via_commands=False).warnings == [
        "DKIM keys are made by DMS's `setup config dkim`: not without DMS"
    ]
    ldap = run(MailState(), Actual(MailState(), {}, info=DmsInfo(provisioner="ldap")))
    assert ldap.fatal == (
        "DMS uses ACCOUNT_PROVISIONER=LDAP: accounts live in LDAP, refusing to manage"
    )
    passed = plan(
        Desired(MailState(), warnings=["from the sources"], pending={"p@x.org": "skew"}),
        Actual(MailState(), {}),
        LedgerData(),
        PlanPolicy(),
        {},
    )
    assert passed.warnings == ["from the sources"] and passed.pending == {"p@x.org": "skew"}


def test_refusing_accounts_and_aliases_together_keeps_both_and_both_reasons() -> None:
    d = MailState(accounts=accounts("k@x.org"))
    a = Actual(
        MailState(
            accounts=accounts("k@x.org", "m1@x.org", "m2@x.org"),
            aliases={"l@x.org": ("r1@y.org", "r2@y.org")},
        ),
        {},
    )
    ledger = LedgerData(
        accounts={n: LedgerEntry(None, None) for n in ("k@x.org", "m1@x.org", "m2@x.org")},
        aliases={"l@x.org": frozenset({"r1@y.org", "r2@y.org"})},
    )
    p = run(d, a, ledger, prune=True, max_count=1, max_percent=0.0)
    assert p.ops == [] and len(p.refused) == 4
    assert p.refused_reason == (
        "2 account deletions refused: over maxDeletions (1); "
        "2 alias removals refused: over maxDeletions (1)"
        " (approve once: dms-agent apply --allow-deletions N)"
    )
    empty = run(
        MailState(), Actual(MailState(accounts=accounts("m1@x.org")), {}), ledger, prune=True
    )
    assert empty.refused_reason.startswith(
        "1 account deletions refused: the desired state is empty"
    )


def test_dms_prefix_messages_and_an_exact_match() -> None:
    d = MailState(accounts=accounts("bob@x.org"), passwords={"bob@x.org": pw("p")})
    a = Actual(MailState(aliases={"bob@x.org": ("t@y.org",)}), {})  # the same address
    assert run(d, a).blocked == {
        "account_add:bob@x.org:": "DMS refuses bob@x.org: alias bob@x.org starts with it (DMS "
        "matches aliases by prefix); remove that alias first or declare a pre-hashed password"
    }
    d2 = MailState(accounts=accounts("bob@x.org"), aliases={"bob@x.or": ("t@y.org",)})
    a2 = Actual(MailState(accounts=accounts("bob@x.org")), {})
    ledger = LedgerData(accounts={"bob@x.org": LedgerEntry(None, None)})
    assert run(d2, a2, ledger).blocked == {
        "alias_add:bob@x.or:t@y.org": "DMS refuses alias bob@x.or: account bob@x.org starts "
        "with it (DMS matches accounts by prefix)"
    }


def test_describe_names_the_adopted() -> None:
    d = MailState(accounts=accounts("a@x.org"))
    p = run(d, Actual(MailState(accounts=accounts("a@x.org")), {}))
    assert p.describe()["adopt"] == ["a@x.org"] and p.describe()["counts"]["adopt"] == 1


def test_loops_go_on_past_an_adoption_a_blocked_quota_and_a_pending_restriction() -> None:
    d = MailState(
        accounts={
            "adopt@x.org": Account("adopt@x.org"),
            "changed@x.org": Account("changed@x.org"),
            "pend@x.org": Account("pend@x.org", restrict=frozenset({"send"})),
            "new@x.org": Account("new@x.org", restrict=frozenset({"send"})),
        },
        passwords={"changed@x.org": pw("new"), "new@x.org": pw("n")},
    )
    a = Actual(MailState(accounts=accounts("adopt@x.org", "changed@x.org")), {})
    ledger = LedgerData(accounts={"changed@x.org": LedgerEntry("old", None)})
    assert ops(run(d, a, ledger)) == [
        ("account_add", "new@x.org", ""),
        ("password_update", "changed@x.org", ""),
        ("restrict_add", "new@x.org", "send"),
    ]
    # quotas off: a blocked quota, then another account's quota still removed
    q = MailState(
        accounts={"a@x.org": Account("a@x.org", quota="1G"), "b@x.org": Account("b@x.org")}
    )
    qa = Actual(
        MailState(accounts={"a@x.org": Account("a@x.org"), "b@x.org": Account("b@x.org", "2G")}),
        {},
        info=DmsInfo(quotas_enabled=False),
    )
    managed = LedgerData(accounts={n: LedgerEntry(None, None) for n in ("a@x.org", "b@x.org")})
    assert ops(run(q, qa, managed)) == [("quota_del", "b@x.org", "")]


# --- survivors of the second mutation run ----------------------------------------------------


def test_a_declared_hash_dms_already_holds_is_settled_not_applied() -> None:
    """An imported hash that DMS already has: the ledger learns the new digest, no command runs;
    the accounts after it are still planned."""
    held, other = "{SHA512-CRYPT}$6$held", "{SHA512-CRYPT}$6$other"
    d = MailState(
        accounts=accounts("held@x.org", "later@x.org"),
        passwords={"held@x.org": pw(held, "hash"), "later@x.org": pw("new")},
    )
    a = Actual(
        MailState(accounts=accounts("held@x.org", "later@x.org")),
        {"held@x.org": held, "later@x.org": other},
    )
    ledger = LedgerData(
        accounts={n: LedgerEntry("old", other) for n in ("held@x.org", "later@x.org")}
    )
    p = run(d, a, ledger)
    digest = intent_digests(KEY, d.passwords)["held@x.org"]
    assert p.settled == [Adoption("held@x.org", digest, held)]
    assert ops(p) == [("password_update", "later@x.org", "")]
    # a hash DMS does not hold, or a plain password that reads like the hash, is applied
    for intent in (pw("{SHA512-CRYPT}$6$else", "hash"), pw(held)):
        d.passwords["held@x.org"] = intent
        p = run(d, a, ledger)
        assert p.settled == [] and ("password_update", "held@x.org", "") in ops(p)


def test_a_quota_under_one_kib_is_reported_when_only_commands_can_see_it() -> None:
    """`setup email list` shows a quota under 1 KiB as no limit: the plan cannot tell whether
    DMS holds it and says so; a zero quota (no limit) or a visible one needs no word."""
    d = MailState(
        accounts={
            "tiny@x.org": Account("tiny@x.org", quota="512"),
            "free@x.org": Account("free@x.org"),
            "big@x.org": Account("big@x.org", quota="1536k"),
            **{f"z{q}@x.org": Account(f"z{q}@x.org", quota=q) for q in ("0", "0k", "0M")},
        }
    )
    have = {n: Account(n) for n in d.accounts}
    have["big@x.org"] = Account("big@x.org", quota="1.5M")
    a = Actual(MailState(accounts=have), None, source="commands")
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in d.accounts})
    p = run(d, a, ledger)
    assert p.ops == [] and p.warnings == [
        "tiny@x.org: quota 512 is under 1 KiB; `setup email list` shows it as no limit, so "
        "whether DMS holds it cannot be seen without dms.configDir"
    ]
    # read from DMS's files the quota is seen as it is: no guess, no word
    files = Actual(MailState(accounts={"free@x.org": Account("free@x.org")}), {})
    free = MailState(accounts=accounts("free@x.org"))
    assert run(free, files, ledger).warnings == []


def test_refusing_alias_removals_of_an_empty_state_says_why() -> None:
    a = Actual(MailState(aliases={"l@x.org": ("r@y.org",)}), {})
    ledger = LedgerData(aliases={"l@x.org": frozenset({"r@y.org"})})
    p = run(MailState(), a, ledger, prune=True)
    assert p.ops == [] and [op.key for op in p.refused] == ["alias_del:l@x.org:r@y.org"]
    assert p.refused_reason == (
        "1 alias removals refused: the desired state is empty"
        " (approve once: dms-agent apply --allow-deletions N)"
    )


def test_describe_lists_what_the_dkim_component_will_do() -> None:
    work = DkimWork("x.org", "generate", "mail", "no key")
    out = Plan(dkim=[work, DkimWork("y.org", "wait", "mail", "dns")]).describe(limit=1)
    assert out["dkim"] == [work.describe()] and out["counts"]["dkim"] == 2


def test_ops_on_addresses_dms_spells_with_upper_case_go_to_the_files() -> None:
    """DMS's sed edits match case-sensitively: an alias whose address or recipient its files
    spell with upper case is written by the agent (reason joined to the op's own), the rest
    stays with DMS's commands."""
    d = MailState(
        accounts=accounts("keep@x.org"),
        aliases={"cased@x.org": ("t@y.org",), "plain@x.org": ("t@y.org",)},
    )
    a = Actual(
        MailState(
            accounts=accounts("keep@x.org", "gone@x.org"),
            aliases={"plain@x.org": ("u@y.org",)},
        ),
        {},
        cased=frozenset({"cased@x.org", "u@y.org", "gone@x.org"}),
    )
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in ("keep@x.org", "gone@x.org")})
    p = run(d, a, ledger, prune=True)
    routed = {op.key: (op.direct, op.reason) for op in p.ops}
    assert routed == {
        "alias_add:cased@x.org:t@y.org": (
            True,
            "DMS cannot edit alias cased@x.org: its file spells it with upper case letters",
        ),
        "alias_add:plain@x.org:t@y.org": (False, ""),
        "alias_del:plain@x.org:u@y.org": (
            True,
            "not declared; DMS cannot edit alias plain@x.org: its file spells it with upper "
            "case letters",
        ),
        "account_del:gone@x.org:": (
            True,
            "pruned; DMS cannot edit gone@x.org: its files spell it with upper case letters",
        ),
    }


def test_a_blocked_restriction_is_not_counted_as_written() -> None:
    """Without the config folder a `restrict add` DMS would refuse is blocked; the next one is
    then judged against the file as it stays (without the blocked line)."""
    send = frozenset({"send"})
    d = MailState(
        accounts={
            "ab@x.org": Account("ab@x.org", restrict=send),
            "b@x.org": Account("b@x.org", restrict=send),
            "ab@x.org.au": Account("ab@x.org.au", restrict=send),
        }
    )
    have = accounts("ab@x.org", "b@x.org")
    have["ab@x.org.au"] = Account("ab@x.org.au", restrict=send)
    a = Actual(
        MailState(accounts=have),
        None,
        source="commands",
        access_lines={"send": ("ab@x.org.au \t\t REJECT",)},
    )
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in d.accounts})
    p = run(d, a, ledger)
    found = "DMS's restrict add finds {} inside 'ab@x.org.au'; mount DMS's config folder"
    assert p.ops == [] and p.blocked == {
        f"restrict_add:{n}:send": found.format(n) + " (dms.configDir) to converge"
        for n in ("ab@x.org", "b@x.org")
    }


def test_a_restrict_del_that_would_sweep_others_names_them_all() -> None:
    lines = ("b@x.org \t\t REJECT", "b@x.org.au \t\t REJECT", "b@x.org.uk \t\t REJECT")
    d = MailState(accounts=accounts("b@x.org"))
    a = Actual(
        MailState(accounts={"b@x.org": Account("b@x.org", restrict=frozenset({"send"}))}),
        None,
        source="commands",
        access_lines={"send": lines},
    )
    p = run(d, a, LedgerData(accounts={"b@x.org": LedgerEntry(None, None)}))
    assert p.blocked == {
        "restrict_del:b@x.org:send": "DMS's restrict del would also remove b@x.org.au, "
        "b@x.org.uk; mount DMS's config folder (dms.configDir) to converge"
    }
