"""plan() is pure: these tests build desired/actual/ledger values and check the ops."""

from __future__ import annotations

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
from agent.reconcile.ledger import LedgerData, LedgerEntry, intent_digests
from agent.reconcile.plan import Plan, PlanPolicy, plan

KEY = b"test-key"


def pw(value: str) -> PasswordIntent:
    return PasswordIntent("plain", Secret(value))


def desired(accounts: dict[str, Account], passwords: dict[str, str], **kw: object) -> Desired:
    state = MailState(accounts=accounts, passwords={a: pw(p) for a, p in passwords.items()}, **kw)  # type: ignore[arg-type]
    return Desired(state)


def actual(accounts: list[str], hashes: dict[str, str] | None = None, **kw: object) -> Actual:
    state = MailState(accounts={a: Account(a) for a in accounts}, **kw)  # type: ignore[arg-type]
    return Actual(state, hashes if hashes is not None else {a: "{X}h" + a for a in accounts})


def run(d: Desired, a: Actual, ledger: LedgerData | None = None, **pol: object) -> Plan:
    policy = PlanPolicy(**pol)  # type: ignore[arg-type]
    return plan(d, a, ledger or LedgerData(), policy, intent_digests(KEY, d.state.passwords))


def managed(a: Actual, d: Desired) -> LedgerData:
    """A ledger as after a successful sync of ``d`` onto ``a``."""
    digests = intent_digests(KEY, d.state.passwords)
    assert a.hashes is not None
    return LedgerData(
        accounts={x: LedgerEntry(digests.get(x), a.hashes.get(x)) for x in a.state.accounts}
    )


def kinds(p: Plan) -> list[tuple[str, str, str]]:
    return [(op.kind, op.target, op.value) for op in p.ops]


def test_first_sync_orders_ops() -> None:
    d = desired(
        {
            "a@x.org": Account("a@x.org", quota="1G", restrict=frozenset({"send"})),
            "b@x.org": Account("b@x.org"),
        },
        {"a@x.org": "s3cret-a", "b@x.org": "s3cret-b"},
        aliases={"p@x.org": ("a@x.org",)},
    )
    p = run(d, actual([]))
    assert kinds(p) == [
        ("account_add", "a@x.org", ""),
        ("account_add", "b@x.org", ""),
        ("quota_set", "a@x.org", "1G"),
        ("restrict_add", "a@x.org", "send"),
        ("alias_add", "p@x.org", "a@x.org"),
    ]
    assert "s3cret" not in repr(p.ops) and "s3cret" not in str(p.describe())


def test_noop_and_adoption() -> None:
    d = desired({"a@x.org": Account("a@x.org")}, {"a@x.org": "pa"})
    a = actual(["a@x.org"])
    first = run(d, a)
    assert first.ops == [] and [x.address for x in first.adopt] == ["a@x.org"]
    assert run(d, a, managed(a, d)).ops == [] and run(d, a, managed(a, d)).adopt == []


def test_password_change_and_drift_modes() -> None:
    d = desired({"a@x.org": Account("a@x.org")}, {"a@x.org": "pa"})
    a = actual(["a@x.org"])
    ledger = managed(a, d)
    changed = desired({"a@x.org": Account("a@x.org")}, {"a@x.org": "new"})
    assert kinds(run(changed, a, ledger)) == [("password_update", "a@x.org", "")]
    assert run(changed, a, ledger, passwords="initial").ops == []
    outside = actual(["a@x.org"], {"a@x.org": "{X}changed-by-webmail"})
    kept = run(d, outside, ledger)
    assert kept.ops == [] and kept.drift == ["a@x.org"]
    reverted = run(d, outside, ledger, passwords="enforce")
    assert kinds(reverted) == [("password_update", "a@x.org", "")]
    assert reverted.ops[0].reason == "drift"


def test_prune_only_managed_unless_named_field() -> None:
    d = desired({}, {}, aliases={"p@x.org": ("k@x.org",)})
    a = actual(["m@x.org", "u@x.org"], aliases={"p@x.org": ("k@x.org",)})
    ledger = LedgerData(accounts={"m@x.org": LedgerEntry(None, None)})
    assert run(d, a, ledger).ops == []  # prune off
    p = run(d, a, ledger, prune=True)
    assert kinds(p)[-1] == ("account_del", "m@x.org", "")
    assert all(op.target != "u@x.org" for op in p.ops)
    p = run(d, a, ledger, prune=True, prune_unmanaged=True)
    assert {op.target for op in p.ops if op.kind == "account_del"} == {"m@x.org", "u@x.org"}


def test_undeclared_accounts_left_alone_are_reported_as_kept() -> None:
    d = desired({"a@x.org": Account("a@x.org")}, {"a@x.org": "pw-a"})
    a = actual(["a@x.org", "m@x.org", "u@x.org"])
    ledger = LedgerData(accounts={"m@x.org": LedgerEntry(None, None)})
    assert run(d, a, ledger).kept == ["m@x.org", "u@x.org"]  # prune off: both stay
    pruned = run(d, a, ledger, prune=True)
    assert pruned.kept == ["u@x.org"]  # not managed by the agent: kept
    assert pruned.describe()["kept"] == ["u@x.org"]
    assert pruned.describe()["counts"]["kept"] == 1


def test_document_policy_only_tightens() -> None:
    d = desired({"k@x.org": Account("k@x.org")}, {}, policy=Policy(prune=False))
    a = actual(["k@x.org", "m@x.org"])
    ledger = LedgerData(accounts={"m@x.org": LedgerEntry(None, None)})
    assert run(d, a, ledger, prune=True).ops == []
    loosen = desired({"k@x.org": Account("k@x.org")}, {}, policy=Policy(prune=True))
    assert run(loosen, a, ledger, prune=False).ops == []


def test_max_deletions_refuses_deletions_but_applies_the_rest() -> None:
    names = [f"u{i}@x.org" for i in range(30)]
    keep = names[:20]
    d = desired({n: Account(n) for n in [*keep, "new@x.org"]}, {"new@x.org": "p"})
    a = actual(names)
    ledger = LedgerData(accounts={n: LedgerEntry(None, a.hashes[n]) for n in names})  # type: ignore[index]
    p = run(d, a, ledger, prune=True, max_count=5, max_percent=10.0)
    assert kinds(p) == [("account_add", "new@x.org", "")]
    assert len(p.refused) == 10 and "maxDeletions" in p.refused_reason
    # percent wins when larger: 40 % of 30 = 12 >= 10
    assert len(run(d, a, ledger, prune=True, max_percent=40.0).refused) == 0
    approved = run(d, a, ledger, prune=True, allow_deletions=5)
    assert [op.kind for op in approved.ops].count("account_del") == 10


def test_aliases_counted_apart() -> None:
    d = desired({"k@x.org": Account("k@x.org")}, {})
    aliases = {f"a{i}@x.org": ("k@x.org",) for i in range(8)}
    a = actual(["k@x.org"], aliases=aliases)
    ledger = LedgerData(
        accounts={"k@x.org": LedgerEntry(None, None)},
        aliases={k: frozenset(v) for k, v in aliases.items()},
    )
    p = run(d, a, ledger, prune=True, max_count=5, max_percent=0.0)
    assert p.ops == [] and len(p.refused) == 8  # 8 alias removals > 5; no account deletion
    p = run(d, a, ledger, prune=True, max_count=8, max_percent=0.0)
    assert [op.kind for op in p.ops] == ["alias_del"] * 8


def test_empty_desired_state_never_deletes() -> None:
    a = actual(["m@x.org"])
    ledger = LedgerData(accounts={"m@x.org": LedgerEntry(None, None)})
    p = run(desired({}, {}), a, ledger, prune=True, max_count=5)
    assert p.ops == [] and p.refused and "empty" in p.refused_reason


def test_skew_new_account_without_password_is_pending() -> None:
    d = desired(
        {"a@x.org": Account("a@x.org", quota="1G"), "b@x.org": Account("b@x.org")},
        {"b@x.org": "pb"},
    )
    p = run(d, actual([]))
    assert kinds(p) == [("account_add", "b@x.org", "")]
    assert "a@x.org" in p.pending


def test_ldap_is_refused() -> None:
    a = actual([])
    a.info = DmsInfo(provisioner="LDAP")
    p = run(desired({"a@x.org": Account("a@x.org")}, {"a@x.org": "p"}), a)
    assert p.ops == [] and p.fatal and "LDAP" in p.fatal


def test_quota_with_quotas_off_is_blocked() -> None:
    a = actual(["a@x.org"])
    a.info = DmsInfo(quotas_enabled=False)
    d = desired({"a@x.org": Account("a@x.org", quota="1G")}, {})
    p = run(d, a, managed(a, d))
    assert p.ops == [] and "ENABLE_QUOTAS" in next(iter(p.blocked.values()))


def test_dms_prefix_quirk_is_a_clear_error() -> None:
    d = desired({"bob@example.co": Account("bob@example.co")}, {"bob@example.co": "p"})
    a = actual([], aliases={"bob@example.com": ("x@y.org",)})
    p = run(d, a)
    assert p.ops == []
    assert "prefix" in p.blocked["account_add:bob@example.co:"]
    assert run(d, a, via_commands=False).ops  # the file applier has no such quirk


def test_rename_is_add_then_delete() -> None:
    d = desired({"new@x.org": Account("new@x.org")}, {"new@x.org": "p"})
    a = actual(["old@x.org"])
    ledger = LedgerData(accounts={"old@x.org": LedgerEntry(None, None)})
    p = run(d, a, ledger, prune=True)
    assert kinds(p) == [("account_add", "new@x.org", ""), ("account_del", "old@x.org", "")]


def test_restrictions_and_quota_removal() -> None:
    d = desired({"a@x.org": Account("a@x.org", restrict=frozenset({"receive"}))}, {})
    a = Actual(MailState(accounts={"a@x.org": Account("a@x.org", "2G", frozenset({"send"}))}), {})
    p = run(d, a, LedgerData(accounts={"a@x.org": LedgerEntry(None, None)}))
    assert kinds(p) == [
        ("quota_del", "a@x.org", ""),
        ("restrict_add", "a@x.org", "receive"),
        ("restrict_del", "a@x.org", "send"),
    ]


def test_dkim_new_domain_gets_a_key() -> None:
    dom = Domain("x.org", DkimSpec())
    d = desired({}, {}, domains={"x.org": dom})
    a = actual([])
    a.dkim = {}
    assert kinds(run(d, a)) == [("dkim_add", "x.org", "mail")]
    assert run(d, a, dkim_ops=False).ops == []  # the DKIM component owns it
    a.dkim = {"x.org": frozenset({"mail"})}
    assert run(d, a).ops == []


def test_deferred_ops_wait_for_their_retry() -> None:
    d = desired(
        {"a@x.org": Account("a@x.org"), "b@x.org": Account("b@x.org")},
        {"a@x.org": "p", "b@x.org": "p"},
    )
    p = run(d, actual([]), deferred=frozenset({"account_add:a@x.org:"}))
    assert kinds(p) == [("account_add", "b@x.org", "")]
    assert [op.key for op in p.deferred] == ["account_add:a@x.org:"]


def test_dms_alias_prefix_quirk_is_a_clear_error() -> None:
    d = desired({"bob@example.com": Account("bob@example.com")}, {})
    d.state.aliases["bob@example.co"] = ("x@y.org",)
    a = actual(["bob@example.com"])
    p = run(d, a, LedgerData(accounts={"bob@example.com": LedgerEntry(None, None)}))
    assert p.ops == [] and "prefix" in p.blocked["alias_add:bob@example.co:x@y.org"]
