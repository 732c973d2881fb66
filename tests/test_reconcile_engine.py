"""The reconcile engine's own decisions, in-process on the file executor (no DMS, no
subprocess) unless a test needs DMS's `setup`: what the plan is told (the operator's policy,
which ops wait for their retry), how failed ops back off, how password digests are computed
and reused, what the ledger learns without an op, when a pass takes the apply lock and checks
DMS again, and what a pass reports while and after it applies (progress, ETA, durations,
metrics, Events). Found by bench/mutation.py: each test pins a behaviour a mutant got past.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.app import AgentContext
from agent.dms.observe import AGENT_LOCK, SETTINGS_FILE, account_hash
from agent.executor import LocalExecutor, Result
from agent.mailstate.model import (
    Account,
    Desired,
    DkimSpec,
    Domain,
    MailState,
    PasswordIntent,
    Secret,
)
from agent.metrics import REGISTRY
from agent.reconcile import reconciler
from agent.reconcile.apply import ApplyLock, OpResult, OpStatus
from agent.reconcile.ledger import (
    LEDGER_NAME,
    Ledger,
    LedgerData,
    LedgerEntry,
    intent_digest,
    intent_digests,
)
from agent.reconcile.plan import Op, Plan, PlanPolicy
from agent.reconcile.reconciler import Engine, LedgerUnusable, PassReport, Reconciler, Retry
from agent.settings import Settings
from agent.status import State, StatusRegistry
from tests.reconcile_rig import DmsRig, RecordedEvents, doveadm_verify, fault_script

KEY = b"engine-test-key"


def key_file(tmp_path: Path, key: bytes = KEY) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    path = keys / "ledger.key"
    path.write_bytes(key + b"\n")
    path.chmod(0o600)
    return path


def file_settings(tmp_path: Path, **reconcile: Any) -> Settings:
    """The file executor: DMS's files in a local folder, written by the agent itself."""
    rec: dict[str, Any] = {"ledgerKeyFile": str(tmp_path / "keys" / "ledger.key")}
    rec.update(reconcile)
    return Settings.model_validate(
        {
            "dms": {"configDir": str(tmp_path / "dms"), "executor": {"kind": "file"}},
            "reconcile": rec,
            "dkim": {"enabled": False},
        }
    )


def desired(passwords: dict[str, str]) -> Desired:
    accounts = {a: Account(a) for a in passwords}
    intents = {a: PasswordIntent("plain", Secret(p)) for a, p in passwords.items()}
    return Desired(MailState(accounts=accounts, passwords=intents))


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- what the plan is told ---------------------------------------------------------------


def test_the_plan_gets_the_operators_settings(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "dms": {"configDir": str(tmp_path / "dms"), "executor": {"kind": "local"}},
            "reconcile": {
                "prune": True,
                "pruneUnmanaged": True,
                "deleteMailData": True,
                "maxDeletions": {"count": 7, "percent": 33.5},
                "passwords": "enforce",
            },
            "dkim": {"enabled": True},
        }
    )
    eng = Engine(settings, LocalExecutor(), clock=lambda: 100.0)
    assert eng.policy(allow_deletions=3) == PlanPolicy(
        prune=True,
        prune_unmanaged=True,
        delete_mail_data=True,
        max_count=7,
        max_percent=33.5,
        passwords="enforce",
        allow_deletions=3,
        via_commands=True,
        deferred=frozenset(),
        dkim_ops=False,  # the DKIM component owns the keys
    )
    # the file executor, no DKIM component, the defaults
    files = Engine(file_settings(tmp_path), None).policy()
    assert files == PlanPolicy(via_commands=False, dkim_ops=True, allow_deletions=0)


def test_an_op_waits_for_its_retry_time_and_not_a_moment_longer(tmp_path: Path) -> None:
    now = [100.0]
    eng = Engine(file_settings(tmp_path), None, clock=lambda: now[0])
    eng.retries = {
        "due:past": Retry(0, 99.0),
        "due:now": Retry(1, 100.0),
        "waiting": Retry(2, 100.5),
    }
    assert eng.policy().deferred == frozenset({"waiting"})
    now[0] = 100.5
    assert eng.policy().deferred == frozenset()
    assert eng.next_retry() == 99.0


# --- backoff of failed ops ---------------------------------------------------------------


def op(target: str) -> Op:
    return Op("account_add", target)


def settle(
    eng: Engine, planned: list[Op], results: list[tuple[Op, OpStatus]], deferred: list[Op]
) -> None:
    report = PassReport(results=[OpResult(o, status) for o, status in results])
    eng._settle_retries(Plan(ops=planned, deferred=deferred), report)


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_a_failed_op_backs_off_doubling_with_jitter_up_to_the_ceiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jitter: float
) -> None:
    # the jitter draws from [0, 1): the wait is between half and all of the step
    monkeypatch.setattr(reconciler, "random", SimpleNamespace(random=lambda: jitter))
    now = [1000.0]
    settings = file_settings(tmp_path, retryInitial=2, retryMax=10)
    eng = Engine(settings, None, clock=lambda: now[0])
    a, b = op("a@x.org"), op("b@x.org")
    waits: list[tuple[int, Any]] = []
    for _ in range(5):  # a fails five passes in a row (each retried when due)
        settle(eng, [a, b], [(a, "failed"), (b, "ok")], [])
        retry = eng.retries[a.key]
        waits.append((retry.attempt, retry.not_before - now[0]))
        now[0] = retry.not_before
    factor = 0.5 + jitter / 2
    steps = [2, 4, 8, 10, 10]  # retryInitial doubling, capped at retryMax
    assert waits == [(n, pytest.approx(s * factor)) for n, s in enumerate(steps)]
    assert b.key not in eng.retries  # never failed: never waits
    # an unknown outcome backs off the same way (the next pass observes before retrying it)
    c = op("c@x.org")
    settle(eng, [c], [(c, "unknown")], [a])
    assert eng.retries[c.key].attempt == 0
    assert eng.retries[c.key].not_before == pytest.approx(now[0] + 2 * factor)


def test_a_retry_ends_when_its_op_succeeds_or_is_no_longer_planned(tmp_path: Path) -> None:
    eng = Engine(file_settings(tmp_path), None, clock=lambda: 50.0)
    a, b, c, d = (op(f"{n}@x.org") for n in "abcd")
    settle(eng, [a, b, c, d], [(a, "failed"), (b, "failed"), (c, "failed"), (d, "failed")], [])
    assert set(eng.retries) == {a.key, b.key, c.key, d.key}
    # a: done now; b: still waiting out its backoff (deferred); c: failed again;
    # d: not planned any more (undeclared, or done from outside)
    settle(eng, [a, c], [(a, "ok"), (c, "failed")], [b])
    assert set(eng.retries) == {b.key, c.key}
    assert eng.retries[b.key].attempt == 0 and eng.retries[c.key].attempt == 1


# --- password digests --------------------------------------------------------------------


def test_digests_are_computed_once_per_state_and_only_for_changed_intents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digested: list[list[str]] = []

    def counting(key: bytes, passwords: Any) -> dict[str, str]:
        digested.append(sorted(passwords))
        return intent_digests(key, passwords)

    monkeypatch.setattr(reconciler, "intent_digests", counting)
    keys = key_file(tmp_path)
    eng = Engine(file_settings(tmp_path), None)
    first = desired({"a@x.org": "pa", "b@x.org": "pb", "c@x.org": "pc"})
    assert eng.digests(first) == intent_digests(KEY, first.state.passwords)
    assert digested == [["a@x.org", "b@x.org", "c@x.org"]]
    # the same state again: the key is not even read
    keys.unlink()
    assert eng.digests(first) == intent_digests(KEY, first.state.passwords)
    # a new state with one password changed costs one digest
    key_file(tmp_path)
    second = desired({"a@x.org": "pa", "b@x.org": "changed", "c@x.org": "pc"})
    assert eng.digests(second) == intent_digests(KEY, second.state.passwords)
    assert digested[1:] == [["b@x.org"]]
    # a new key (rotated): every digest is made again, with it
    key_file(tmp_path, b"another-key")
    third = desired({"a@x.org": "pa", "b@x.org": "changed", "c@x.org": "pc"})
    assert eng.digests(third) == intent_digests(b"another-key", third.state.passwords)
    assert digested[2:] == [["a@x.org", "b@x.org", "c@x.org"]]
    # no passwords: nothing to digest, no key needed
    (tmp_path / "keys" / "ledger.key").unlink()
    assert eng.digests(Desired(MailState(accounts={"a@x.org": Account("a@x.org")}))) == {}


def test_a_missing_digest_key_fails_the_pass_closed_naming_it(tmp_path: Path) -> None:
    eng = Engine(file_settings(tmp_path), None)
    with pytest.raises(LedgerUnusable, match=str(tmp_path / "keys" / "ledger.key")):
        eng.digests(desired({"a@x.org": "pa"}))


async def test_create_ledger_key_makes_the_missing_key(tmp_path: Path) -> None:
    eng = Engine(file_settings(tmp_path, createLedgerKey=True), None)
    report = await eng.run_pass(desired({"a@x.org": "pa"}))
    assert report.outcome == "applied", report.describe()
    key = (tmp_path / "keys" / "ledger.key").read_bytes().strip()
    assert len(key) == 64  # 32 random bytes, hex
    assert eng.digests(desired({"a@x.org": "pa"})) == intent_digests(
        key, {"a@x.org": PasswordIntent("plain", Secret("pa"))}
    )


# --- what a pass reports while and after it applies --------------------------------------


async def test_progress_eta_and_log_lines_follow_the_ops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # the reconciler's clock reads 0, 2, 4, …: each op takes 2 s of it
    ticks = itertools.count(0.0, 2.0)
    monkeypatch.setattr(
        reconciler, "time", SimpleNamespace(monotonic=lambda: next(ticks), time=time.time)
    )
    key_file(tmp_path)
    eng = Engine(file_settings(tmp_path, progressInterval=4), None)
    seen: list[tuple[int, int, float | None]] = []
    caplog.set_level(logging.INFO, "dms_agent.reconcile")
    names = {f"u{i}@x.org": f"p{i}" for i in range(4)}
    report = await eng.run_pass(desired(names), progress=lambda *a: seen.append(a))
    assert report.outcome == "applied", report.describe()
    # before the first op no ETA; then (time so far / ops done) x ops left
    assert seen == [(0, 4, None), (1, 4, 6.0), (2, 4, 4.0), (3, 4, 2.0), (4, 4, 0.0)]
    # the log says it every progressInterval (4 s: after the 2nd op), never after the last
    lines = [r.getMessage() for r in caplog.records if "progress" in r.getMessage()]
    assert lines == ["reconcile progress: 2/4 ops done, ETA 4s"]


async def test_a_pass_counts_its_ops_their_time_and_says_nothing_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file(tmp_path)
    events = RecordedEvents()
    eng = Engine(file_settings(tmp_path), None, events)
    ok = {"kind": "account_add", "result": "ok"}
    ops_before = counter("dms_agent_reconcile_ops_total", **ok)
    timed = "dms_agent_reconcile_op_duration_seconds_count"
    timed_before = counter(timed, kind="account_add")
    caplog.set_level(logging.WARNING, "dms_agent.reconcile")
    report = await eng.run_pass(desired({"a@x.org": "pa", "b@x.org": "pb", "c@x.org": "pc"}))
    assert report.outcome == "applied", report.describe()
    durations = [r.duration for r in report.results]
    assert len(durations) == 3 and all(d > 0 for d in durations)
    assert report.commands_time == pytest.approx(sum(durations))
    assert counter("dms_agent_reconcile_ops_total", **ok) == ops_before + 3
    assert counter(timed, kind="account_add") == timed_before + 3
    assert [e[0] for e in events.emitted] == ["Reconciled"]  # no OpFailed
    assert caplog.records == []


async def test_a_failed_op_is_an_event_and_a_log_line_naming_the_op_and_its_message(
    dms_rig: DmsRig, caplog: pytest.LogCaptureFixture
) -> None:
    bad = fault_script(dms_rig, "failing", 'echo "no space left" >&2; exit 1')
    settings = dms_rig.settings()
    settings = settings.model_copy(
        update={"dms": settings.dms.model_copy(update={"setup_command": [str(bad)]})}
    )
    labels = {"kind": "quota_set", "result": "failed"}
    timed = "dms_agent_reconcile_op_duration_seconds_count"
    before = counter("dms_agent_reconcile_ops_total", **labels), counter(timed, kind="quota_set")
    assert dms_rig.run_setup("email", "add", "a@x.org", stdin="p\np\n").returncode == 0
    events = RecordedEvents()
    eng = Engine(settings, LocalExecutor(), events)
    state = MailState(accounts={"a@x.org": Account("a@x.org", quota="1G")})
    caplog.set_level(logging.WARNING, "dms_agent.reconcile")
    report = await eng.run_pass(Desired(state))
    assert report.outcome == "failed"
    key = report.results[0].op.key
    assert events.emitted == [("OpFailed", f"{key}: no space left", "Warning")]
    warned = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "dms_agent.reconcile"
    ]
    assert warned == [(logging.WARNING, "op quota_set a@x.org: no space left")]
    after = counter("dms_agent_reconcile_ops_total", **labels), counter(timed, kind="quota_set")
    assert after == (before[0] + 1, before[1] + 1)


async def test_deleting_mail_in_the_mailserver_looks_in_its_mail_folder(dms_rig: DmsRig) -> None:
    """Not mounted: whether an account has mail is asked in the mailserver, under the
    container's mail folder; an account with mail gets `email del -y` and loses it."""
    settings = dms_rig.unmounted_settings(prune=True, deleteMailData=True)
    eng = Engine(settings, LocalExecutor())
    assert (await eng.run_pass(desired({"a@x.org": "pa", "b@x.org": "pb"}))).outcome == "applied"
    maildir = dms_rig.mail_dir / "x.org" / "b"
    maildir.mkdir(parents=True)
    (maildir / "mail").write_text("x")
    report = await eng.run_pass(desired({"a@x.org": "pa"}))
    assert report.outcome == "applied", report.describe()
    deletes = [c["argv"] for c in dms_rig.mutating_calls() if c["argv"][:2] == ["email", "del"]]
    assert deletes == [["email", "del", "-y", "b@x.org"]]
    assert not maildir.exists()


async def test_while_a_pass_plans_status_says_so(tmp_path: Path) -> None:
    key_file(tmp_path)
    seen: list[tuple[State, str, Any]] = []

    class Watched(Engine):
        async def run_pass(self, *args: Any, **kwargs: Any) -> PassReport:
            entry = ctx.status.component("reconcile")
            seen.append((entry.state, entry.message, entry.details.get("progress")))
            return await super().run_pass(*args, **kwargs)

    settings = file_settings(tmp_path)
    ctx = AgentContext(settings=settings, status=StatusRegistry())
    rec = Reconciler(ctx, Watched(settings, None))
    first = ctx.status.component("reconcile").state
    await rec.reconcile(desired({"a@x.org": "pa"}))
    await rec.reconcile(desired({"a@x.org": "pa"}))
    assert rec.passes == 2
    assert seen == [
        (first, "pass 1: observing DMS and planning", {"phase": "planning"}),
        (State.OK, "pass 2: observing DMS and planning", {"phase": "planning"}),
    ]


async def test_dkim_keys_are_made_for_the_backend_dms_runs(dms_rig: DmsRig) -> None:
    """Without the DKIM component the plan's key is made by DMS's `setup config dkim`, with
    the arguments of the backend DMS runs (Rspamd here: it can make an ed25519 key)."""
    dms_rig.dms.use_rspamd()
    eng = Engine(dms_rig.settings(dkim_component=False), LocalExecutor())
    spec = DkimSpec("s1", "ed25519")
    state = MailState(
        accounts={"a@x.org": Account("a@x.org")},
        passwords={"a@x.org": PasswordIntent("plain", Secret("pa"))},
        domains={"x.org": Domain("x.org", spec)},
    )
    report = await eng.run_pass(Desired(state))
    assert report.outcome == "applied", report.describe()
    made = [c["argv"] for c in dms_rig.mutating_calls() if c["argv"][:2] == ["config", "dkim"]]
    assert made == [["config", "dkim", "keytype", "ed25519", "selector", "s1", "domain", "x.org"]]


# --- what the ledger learns without an op ------------------------------------------------


def ledger_entry(tmp_path: Path, address: str) -> LedgerEntry:
    ledger = Ledger(tmp_path / "dms" / LEDGER_NAME)
    return ledger.load().accounts[address]


async def test_a_declared_hash_dms_holds_already_is_learned_not_applied(tmp_path: Path) -> None:
    """A document imported from an old server declares the hash DMS was given by hand: no
    command, and the ledger takes the new intent's digest and that hash, so the next pass has
    nothing to do."""
    key_file(tmp_path)
    eng = Engine(file_settings(tmp_path), None)
    assert (await eng.run_pass(desired({"a@x.org": "pa"}))).outcome == "applied"
    accounts = tmp_path / "dms" / "postfix-accounts.cf"
    written = account_hash(tmp_path / "dms", "a@x.org")
    assert written is not None
    held = "{PLAIN}from-the-old-server"
    accounts.write_text(accounts.read_text().replace(written, held))
    intent = PasswordIntent("hash", Secret(held))
    imported = Desired(
        MailState(accounts={"a@x.org": Account("a@x.org")}, passwords={"a@x.org": intent})
    )
    report = await eng.run_pass(imported)
    assert report.plan is not None and [a.address for a in report.plan.settled] == ["a@x.org"]
    assert report.results == []
    entry = ledger_entry(tmp_path, "a@x.org")
    assert (entry.digest, entry.hash, entry.origin) == (intent_digest(KEY, intent), held, "created")
    again = await Engine(file_settings(tmp_path), None).run_pass(imported)
    assert again.outcome == "noop", again.describe()


async def test_a_password_changed_outside_is_never_learned_as_the_agents(tmp_path: Path) -> None:
    """passwords: initial leaves a changed password alone, but the ledger keeps the hash the
    agent wrote: switched to onChange, the change outside is drift."""
    key_file(tmp_path)
    accounts = tmp_path / "dms" / "postfix-accounts.cf"
    assert (
        await Engine(file_settings(tmp_path), None).run_pass(desired({"a@x.org": "pa"}))
    ).outcome == "applied"
    applied = account_hash(tmp_path / "dms", "a@x.org")
    assert applied is not None
    accounts.write_text(accounts.read_text().replace(applied, "{PLAIN}set-by-hand"))
    # another change makes this pass write (b@x.org), so the ledger's facts are recorded too
    initial = Engine(file_settings(tmp_path, passwords="initial"), None)
    both = desired({"a@x.org": "pa", "b@x.org": "pb"})
    assert (await initial.run_pass(both)).outcome == "applied"
    assert ledger_entry(tmp_path, "a@x.org").hash == applied
    report = await Engine(file_settings(tmp_path), None).plan_only(both)
    assert report.plan is not None and report.plan.drift == ["a@x.org"]


async def test_an_alias_dms_has_already_is_claimed_by_the_ledger(tmp_path: Path) -> None:
    """An alias made by hand and then declared: no command, but the ledger records the claim
    (the recipients the agent now manages for it)."""
    key_file(tmp_path)
    (tmp_path / "dms").mkdir()
    (tmp_path / "dms" / "postfix-virtual.cf").write_text("l@x.org a@x.org\n")
    state = desired({"a@x.org": "pa"}).state
    state.aliases["l@x.org"] = ("a@x.org",)
    report = await Engine(file_settings(tmp_path), None).run_pass(Desired(state))
    assert [op.kind for op in report.plan.ops] == ["account_add"]  # type: ignore[union-attr]
    claimed = Ledger(tmp_path / "dms" / LEDGER_NAME).load().aliases
    assert claimed == {"l@x.org": frozenset({"a@x.org"})}


# --- when a pass takes the apply lock, and DMS's readiness before commands ----------------


async def test_an_idle_pass_never_waits_for_the_apply_lock(tmp_path: Path) -> None:
    """Another agent is applying (it holds the lock): a pass with nothing to write does not
    need the lock, so it neither waits for it nor fails; a pass with work does."""
    key_file(tmp_path)
    state = desired({"a@x.org": "pa"}).state
    state.aliases["l@x.org"] = ("a@x.org",)
    eng = Engine(file_settings(tmp_path, lockWait=0), None)
    assert (await eng.run_pass(Desired(state))).outcome == "applied"
    other = ApplyLock(tmp_path / "dms" / AGENT_LOCK)
    assert other.try_acquire()
    try:
        idle = await eng.run_pass(Desired(state))
        assert idle.outcome == "noop", idle.describe()
        more = desired({"a@x.org": "pa", "b@x.org": "pb"})
        busy = await eng.run_pass(more)
        assert busy.outcome == "failed" and busy.results == []
    finally:
        other.release()


async def test_an_idle_pass_through_setup_lists_never_waits_for_the_apply_lock(
    dms_rig: DmsRig,
) -> None:
    """Not mounted, DMS's hashes are unknown (no `setup` lists them): that alone is no reason
    to write."""
    settings = dms_rig.unmounted_settings(lockWait=0)
    eng = Engine(settings, LocalExecutor())
    state = desired({"a@x.org": "pa"})
    assert (await eng.run_pass(state)).outcome == "applied"
    assert settings.reconcile.ledger_path is not None
    other = ApplyLock(settings.reconcile.ledger_path.parent / AGENT_LOCK)
    assert other.try_acquire()
    try:
        idle = await eng.run_pass(state)
        assert idle.outcome == "noop", idle.describe()
    finally:
        other.release()


async def test_a_claim_on_an_existing_alias_is_written_on_its_own(tmp_path: Path) -> None:
    """The only change is an alias claim (the alias was made by hand, then declared): the
    pass writes it to the ledger although no command runs."""
    key_file(tmp_path)
    eng = Engine(file_settings(tmp_path), None)
    assert (await eng.run_pass(desired({"a@x.org": "pa"}))).outcome == "applied"
    virtual = tmp_path / "dms" / "postfix-virtual.cf"
    virtual.write_text("l@x.org a@x.org\n")
    state = desired({"a@x.org": "pa"}).state
    state.aliases["l@x.org"] = ("a@x.org",)
    report = await eng.run_pass(Desired(state))
    assert report.outcome == "noop" and report.plan is not None and report.plan.ops == []
    claimed = Ledger(tmp_path / "dms" / LEDGER_NAME).load().aliases
    assert claimed == {"l@x.org": frozenset({"a@x.org"})}


def ready_once(rig: DmsRig) -> Path:
    """A readiness probe that says "started" once, then "still starting" (a restart)."""
    count = rig.root / "probes"
    probe = rig.root / "ready-once"
    probe.write_text(
        f'#!/bin/sh\nn=$(cat "{count}" 2>/dev/null || echo 0)\n'
        f'echo $((n + 1)) > "{count}"\n[ "$n" -eq 0 ]\n'
    )
    probe.chmod(0o755)
    return probe


async def test_dms_readiness_is_checked_again_right_before_commands(dms_rig: DmsRig) -> None:
    settings = dms_rig.settings()
    ready = settings.dms.model_copy(update={"ready_command": [str(ready_once(dms_rig))]})
    eng = Engine(settings.model_copy(update={"dms": ready}), LocalExecutor())
    report = await eng.run_pass(desired({"a@x.org": "pa"}))
    assert report.outcome == "failed" and "DMS is still starting" in (report.error or "")
    assert dms_rig.mutating_calls() == []


async def test_a_pass_without_commands_needs_no_second_readiness_check(dms_rig: DmsRig) -> None:
    """Only ledger facts to record (an account made by hand, adopted): no command runs, so
    DMS restarting meanwhile does not fail the pass."""
    assert dms_rig.run_setup("email", "add", "a@x.org", stdin="p\np\n").returncode == 0
    settings = dms_rig.settings()
    ready = settings.dms.model_copy(update={"ready_command": [str(ready_once(dms_rig))]})
    eng = Engine(settings.model_copy(update={"dms": ready}), LocalExecutor())
    report = await eng.run_pass(Desired(MailState(accounts={"a@x.org": Account("a@x.org")})))
    assert report.outcome == "noop", report.describe()
    assert report.plan is not None and [a.address for a in report.plan.adopt] == ["a@x.org"]
    entry = Ledger(dms_rig.config_dir / LEDGER_NAME).load().accounts["a@x.org"]
    assert entry.origin == "adopted"


class RestartsWith:
    """The agent's LocalExecutor, except that DMS's environment (read with `env`) changes
    after the first read, as when DMS restarted with other settings."""

    def __init__(self, first: str, then: str) -> None:
        self.inner = LocalExecutor()
        self.answers = [first, then]
        self.env_reads = 0

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        if list(argv) == ["cat", SETTINGS_FILE]:
            return Result(1, "", "No such file or directory", 0.0)
        if list(argv) == ["env"]:
            self.env_reads += 1
            return Result(0, self.answers[min(self.env_reads, 2) - 1], "", 0.0)
        return await self.inner.run(argv, stdin, timeout)


def reading_env(rig: DmsRig, executor: RestartsWith) -> Engine:
    settings = rig.settings()
    unset = settings.dms.model_copy(update={"environment": {}})  # read from DMS itself
    return Engine(settings.model_copy(update={"dms": unset}), executor)


async def test_dms_settings_changed_before_the_commands_are_planned_for_again(
    dms_rig: DmsRig,
) -> None:
    """DMS's settings are read again right before the commands; when they changed (here DMS
    came back with LDAP accounts), the pass observes and plans again with them."""
    executor = RestartsWith("ACCOUNT_PROVISIONER=FILE\n", "ACCOUNT_PROVISIONER=LDAP\n")
    report = await reading_env(dms_rig, executor).run_pass(desired({"a@x.org": "pa"}))
    assert executor.env_reads == 2
    assert report.plan is not None and "LDAP" in (report.plan.fatal or "")
    assert report.outcome == "failed" and report.results == []
    assert dms_rig.mutating_calls() == []
    # quotas switched off meanwhile: the account is made, with its password, the quota is not
    executor = RestartsWith("ENABLE_QUOTAS=1\n", "ENABLE_QUOTAS=0\n")
    eng = reading_env(dms_rig, executor)
    state = desired({"b@x.org": "pb"})
    state.state.accounts["b@x.org"] = Account("b@x.org", quota="1G")
    report = await eng.run_pass(state)
    assert [(r.op.kind, r.status) for r in report.results] == [("account_add", "ok")]
    entry = Ledger(dms_rig.config_dir / LEDGER_NAME).load().accounts["b@x.org"]
    assert entry.digest == eng.digests(state)["b@x.org"]
    assert doveadm_verify(dms_rig.hash_of("b@x.org"), "pb")


# --- the pass itself ---------------------------------------------------------------------


async def test_a_pass_deletes_nothing_over_the_ceiling_unless_approved(tmp_path: Path) -> None:
    """Approval is only ever explicit: a pass asked for nothing approves no deletion, not
    even one over maxDeletions."""
    key_file(tmp_path)
    settings = file_settings(tmp_path, prune=True, maxDeletions={"count": 1, "percent": 0})
    eng = Engine(settings, None)
    three = {"a@x.org": "pa", "b@x.org": "pb", "c@x.org": "pc"}
    assert (await eng.run_pass(desired(three))).outcome == "applied"
    report = await eng.run_pass(desired({"a@x.org": "pa"}))  # two deletions, one allowed
    assert report.plan is not None and len(report.plan.refused) == 2 and report.results == []
    approved = await eng.run_pass(desired({"a@x.org": "pa"}), allow_deletions=1)
    assert [(r.op.kind, r.op.target) for r in approved.results] == [
        ("account_del", "b@x.org"),
        ("account_del", "c@x.org"),
    ]


async def test_the_ledger_is_read_again_only_when_its_files_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between passes the ledger in memory is the one on disk (this agent wrote it); it is
    read again when another writer (a second agent, a restore) changed the files."""
    key_file(tmp_path)
    eng = Engine(file_settings(tmp_path), None)
    assert eng.ledger is not None
    loads: list[int] = []
    real_load = eng.ledger.load

    def counted() -> LedgerData:
        loads.append(1)
        return real_load()

    monkeypatch.setattr(eng.ledger, "load", counted)
    state = desired({"a@x.org": "pa"})
    assert (await eng.run_pass(state)).outcome == "applied"
    assert len(loads) == 1  # the first pass
    assert (await eng.run_pass(state)).outcome == "noop"
    assert (await eng.plan_only(state)).outcome == "observed"
    assert len(loads) == 1  # unchanged on disk: not read again
    snapshot = tmp_path / "dms" / LEDGER_NAME
    rewritten = tmp_path / "dms" / "ledger.restored"
    rewritten.write_text(snapshot.read_text())
    rewritten.replace(snapshot)  # another writer: same content, a new file
    assert (await eng.run_pass(state)).outcome == "noop"
    assert len(loads) == 2


async def test_without_a_place_for_the_ledger_the_pass_says_where_to_put_it(
    dms_rig: DmsRig,
) -> None:
    settings = dms_rig.unmounted_settings()
    nowhere = settings.reconcile.model_copy(update={"ledger_path": None})
    eng = Engine(settings.model_copy(update={"reconcile": nowhere}), LocalExecutor())
    report = await eng.run_pass(desired({"a@x.org": "pa"}))
    assert report.outcome == "failed" and dms_rig.mutating_calls() == []
    assert report.error == (
        "no place for the ledger: set dms.configDir (mounted) or reconcile.ledgerPath"
    )


async def test_a_pass_observes_twice_and_reports_its_own_duration(dms_rig: DmsRig) -> None:
    """Through `setup … list` (not mounted) each observe costs four commands: a pass with
    work observes to plan, then once more under the apply lock; a third time only when DMS's
    settings changed in between (tested above)."""
    eng = Engine(dms_rig.unmounted_settings(), LocalExecutor())
    started = time.monotonic()
    report = await eng.run_pass(desired({"a@x.org": "pa"}))
    took = time.monotonic() - started
    assert report.outcome == "applied", report.describe()
    lists = [c["argv"] for c in dms_rig.calls() if "list" in c["argv"]]
    assert len(lists) == 2 * 4, lists
    assert 0.0 < report.duration <= took  # measured from its start, not an absolute clock
