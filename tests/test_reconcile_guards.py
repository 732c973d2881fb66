"""The deletion ceiling (``maxDeletions``) to the exact op: one more than allowed is refused.

plan() is pure, so these tests build the ledger and the actual state by hand. The ceiling is the
larger of a count and a percentage of what the agent manages, the percentage rounded DOWN (10 %
of 29 managed accounts allows 2, never 3); accounts and alias recipients are counted apart.
"""

from __future__ import annotations

import pytest

from agent.dms.actual import Actual
from agent.mailstate.model import Account, Desired, MailState
from agent.reconcile.ledger import LedgerData, LedgerEntry
from agent.reconcile.plan import Plan, PlanPolicy, ceiling, plan


def managed_accounts(n: int) -> list[str]:
    return [f"u{i:02d}@x.org" for i in range(n)]


def prune_plan(managed: int, deleting: int, **policy: object) -> Plan:
    """``managed`` accounts in DMS and in the ledger; the desired state drops ``deleting``."""
    names = managed_accounts(managed)
    keep = names[deleting:]
    desired = Desired(MailState(accounts={n: Account(n) for n in keep}))
    actual = Actual(MailState(accounts={n: Account(n) for n in names}), {})
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in names})
    return plan(desired, actual, ledger, PlanPolicy(prune=True, **policy), {})  # type: ignore[arg-type]


def deleted(p: Plan) -> int:
    return sum(op.kind == "account_del" for op in p.ops)


@pytest.mark.parametrize(
    ("managed", "count", "percent", "allowed"),
    [
        (30, 0, 10.0, 3),  # 10 % of 30
        (29, 0, 10.0, 2),  # 2.9 rounds down
        (39, 0, 10.0, 3),  # 3.9 rounds down
        (40, 0, 10.0, 4),  # exactly 4.0
        (30, 5, 10.0, 5),  # the count is larger
        (100, 5, 10.0, 10),  # the percentage is larger
        (10, 0, 0.0, 0),  # both zero: nothing may be deleted
        (7, 1, 33.4, 2),  # 2.338 -> 2
    ],
)
def test_ceiling_is_exact_and_rounds_down(
    managed: int, count: int, percent: float, allowed: int
) -> None:
    policy = PlanPolicy(max_count=count, max_percent=percent)
    assert ceiling(policy, managed) == allowed
    at = prune_plan(managed, allowed, max_count=count, max_percent=percent)
    assert deleted(at) == allowed and at.refused == [] and at.refused_reason == ""
    over = prune_plan(managed, allowed + 1, max_count=count, max_percent=percent)
    assert deleted(over) == 0  # all refused, not the first `allowed` of them
    assert len(over.refused) == allowed + 1
    assert f"over maxDeletions ({allowed})" in over.refused_reason


def test_approval_adds_exactly_its_number() -> None:
    # ceiling 2 (count); 5 deletions: approving 2 more is not enough, 3 more is
    short = prune_plan(20, 5, max_count=2, max_percent=0.0, allow_deletions=2)
    assert deleted(short) == 0 and len(short.refused) == 5
    assert "over maxDeletions (4)" in short.refused_reason
    enough = prune_plan(20, 5, max_count=2, max_percent=0.0, allow_deletions=3)
    assert deleted(enough) == 5 and enough.refused == []


def test_refusal_keeps_the_rest_of_the_plan() -> None:
    names = managed_accounts(10)
    desired = Desired(MailState(accounts={names[0]: Account(names[0], quota="1G")}))
    actual = Actual(MailState(accounts={n: Account(n) for n in names}), {})
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in names})
    p = plan(desired, actual, ledger, PlanPolicy(prune=True, max_count=8, max_percent=0.0), {})
    assert [(op.kind, op.target) for op in p.ops] == [("quota_set", names[0])]
    assert sorted(op.target for op in p.refused) == names[1:]


def test_empty_desired_state_needs_an_approval_for_every_deletion() -> None:
    names = managed_accounts(3)
    actual = Actual(MailState(accounts={n: Account(n) for n in names}), {})
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in names})
    empty = Desired(MailState())

    def run(approve: int) -> Plan:
        policy = PlanPolicy(prune=True, max_count=5, allow_deletions=approve)
        return plan(empty, actual, ledger, policy, {})

    # 3 deletions are within maxDeletions (5), but an empty state is refused regardless
    refused = run(0)
    assert deleted(refused) == 0 and "the desired state is empty" in refused.refused_reason
    assert deleted(run(2)) == 0  # one short
    assert deleted(run(3)) == 3


def alias_plan(managed: int, removing: int, **policy: object) -> Plan:
    """``managed`` recipients of one alias, all in the ledger; the desired state drops some."""
    recipients = tuple(f"r{i:02d}@x.org" for i in range(managed))
    desired = Desired(
        MailState(
            accounts={"k@x.org": Account("k@x.org")},
            aliases={"list@x.org": recipients[removing:]} if removing < managed else {},
        )
    )
    actual = Actual(
        MailState(accounts={"k@x.org": Account("k@x.org")}, aliases={"list@x.org": recipients}),
        {},
    )
    ledger = LedgerData(
        accounts={"k@x.org": LedgerEntry(None, None)},
        aliases={"list@x.org": frozenset(recipients)},
    )
    return plan(desired, actual, ledger, PlanPolicy(prune=True, **policy), {})  # type: ignore[arg-type]


def test_alias_removals_have_their_own_exact_ceiling() -> None:
    # 25 managed recipients at 20 %: 5 may go, 6 may not; the one managed account does not count
    at = alias_plan(25, 5, max_count=0, max_percent=20.0)
    assert [op.kind for op in at.ops] == ["alias_del"] * 5 and at.refused == []
    over = alias_plan(25, 6, max_count=0, max_percent=20.0)
    assert over.ops == [] and len(over.refused) == 6
    assert "6 alias removals refused" in over.refused_reason
    # 24 recipients at 20 % is 4.8: rounds down to 4
    assert len(alias_plan(24, 5, max_count=0, max_percent=20.0).refused) == 5
    assert len(alias_plan(24, 4, max_count=0, max_percent=20.0).refused) == 0
    approved = alias_plan(25, 6, max_count=0, max_percent=20.0, allow_deletions=1)
    assert len(approved.ops) == 6


def test_ceiling_counts_what_the_agent_manages_not_what_dms_holds() -> None:
    # 40 accounts in DMS, only 10 managed: 10 % of 10 is 1, so 2 managed deletions are refused
    names = managed_accounts(40)
    desired = Desired(MailState(accounts={n: Account(n) for n in names[2:10]}))
    actual = Actual(MailState(accounts={n: Account(n) for n in names}), {})
    ledger = LedgerData(accounts={n: LedgerEntry(None, None) for n in names[:10]})
    p = plan(desired, actual, ledger, PlanPolicy(prune=True, max_count=0, max_percent=10.0), {})
    assert deleted(p) == 0 and len(p.refused) == 2
    assert "over maxDeletions (1)" in p.refused_reason
