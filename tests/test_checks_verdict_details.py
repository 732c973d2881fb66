"""The verdict, branch by branch: each check summary field, each reason, the board's status
and log line, and the verdict file writer (found by bench/mutation.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from agent.checks.config import CheckSpec
from agent.checks.probes import Outcome
from agent.checks.state import CheckState
from agent.checks.verdict import Board, VerdictWriter, check_summary, judge, render
from agent.hub import Hub
from agent.metrics import REGISTRY
from agent.status import State, StatusRegistry, Verdict

SPEC = TypeAdapter(CheckSpec)


def state(name: str = "imap", **fields: object) -> CheckState:
    spec = SPEC.validate_python({"name": name, "kind": "imap", "failureThreshold": 2, **fields})
    return CheckState(spec)


def failing(s: CheckState, reason: str = "banner", message: str = "no greeting") -> CheckState:
    s.feed(Outcome(True), 1.0, 100.0)
    s.feed(Outcome(False, reason, message), 2.0, 200.0)
    s.feed(Outcome(False, reason, message), 3.0, 300.0)
    return s


def test_summary_of_a_check_never_run() -> None:
    assert check_summary(state()) == {
        "kind": "imap",
        "phase": "unknown",
        "ok": False,
        "lastOk": None,
        "reason": None,
        "message": None,
        "consecutiveFailures": 0,
        "consecutiveSuccesses": 0,
        "affectsVerdict": True,
        "lastChecked": None,
        "lastSuccess": None,
    }


def test_summary_of_a_failing_check_with_a_certificate_and_warnings() -> None:
    s = failing(state(affectsVerdict=False))
    s.feed(Outcome(False, "tls", "bad cert", cert_not_after=2e9, warnings=("w1", "w2")), 4, 400)
    summary = check_summary(s)
    assert (summary["phase"], summary["ok"], summary["lastOk"]) == ("failing", False, False)
    assert (summary["reason"], summary["message"]) == ("tls", "bad cert")
    assert (summary["consecutiveFailures"], summary["consecutiveSuccesses"]) == (3, 0)
    assert (summary["lastChecked"], summary["lastSuccess"]) == (400, 100.0)
    assert summary["affectsVerdict"] is False and summary["warnings"] == ["w1", "w2"]
    assert summary["certificateNotAfter"].startswith("2033-05-18")
    passing = state()
    passing.feed(Outcome(True), 1.0)
    assert "warnings" not in check_summary(passing)
    assert "certificateNotAfter" not in check_summary(passing)


def test_reasons_say_where_each_check_stands() -> None:
    first = state("a")
    first.feed(Outcome(False, "connect", "refused"), 1.0)
    counting = state("b")
    counting.feed(Outcome(True), 1.0)
    counting.feed(Outcome(False, "timeout", "slow"), 2.0)
    remediating = state("c")
    remediating.feed(Outcome(True), 1.0)
    remediating.feed(Outcome(False, "banner", "x"), 2.0)
    remediating.remediating(2.0, 5.0, "ran 'restart'")
    quiet = failing(state("d", affectsVerdict=False))
    paused = failing(state("e"))
    paused.release(4.0, "unhealthy held 60s; pausing")
    fine = state("f")
    fine.feed(Outcome(True, warnings=("expires soon",)), 1.0)
    verdict, reasons = judge([first, counting, remediating, quiet, paused, fine])
    assert reasons == [
        "a: connect: refused (1 consecutive failures; not judged before it has passed once)",
        "b: timeout: slow (1/2 consecutive failures)",
        "c: banner: x (remediating: ran 'restart')",
        "d: banner: no greeting (failing (does not affect the verdict))",
        "e: unhealthy held 60s; pausing",
        "f: expires soon",
    ]
    assert verdict is Verdict.UNKNOWN  # a and e are not judged yet
    assert judge([failing(state("x"))])[0] is Verdict.UNHEALTHY
    assert judge([quiet])[0] is Verdict.UNKNOWN  # nothing deciding: never healthy by default


def test_remediation_counts_as_healthy_only_after_a_pass() -> None:
    passed = state()
    passed.feed(Outcome(True), 1.0)
    passed.feed(Outcome(False, "banner", "x"), 2.0)
    passed.remediating(2.0, 5.0, "note")
    assert judge([passed])[0] is Verdict.HEALTHY
    never = state()
    never.remediating(2.0, 5.0, "note")
    assert judge([never])[0] is Verdict.UNKNOWN


def test_board_sets_status_gauge_hub_and_logs_only_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = state()
    status, hub = StatusRegistry(), Hub()
    board = Board([s], status, hub)
    caplog.set_level(logging.INFO, "dms_agent.checks.verdict")
    board.publish()
    assert board.verdict is Verdict.UNKNOWN and not board.changed.is_set()  # nothing new
    s.feed(Outcome(True), 1.0)
    board.publish()
    entry = status.component("checks")
    assert (entry.state, entry.message) == (State.OK, "verdict healthy; 1 checks, 0 failing")
    assert REGISTRY.get_sample_value("dms_agent_mailserver_healthy") == 1
    assert hub.check_results.value["imap"]["phase"] == "passing"
    assert board.changed.is_set() and board.reasons == []
    assert caplog.records[-1].getMessage() == (
        "mailserver verdict unknown -> healthy: all checks pass"
    )
    assert caplog.records[-1].levelno == logging.INFO
    board.changed.clear()
    failing(s)
    board.publish()
    assert (entry.state, entry.message) == (
        State.DEGRADED,
        "verdict unhealthy; 1 checks, 1 failing",
    )
    assert REGISTRY.get_sample_value("dms_agent_mailserver_healthy") == 0
    assert caplog.records[-1].levelno == logging.WARNING
    assert "healthy -> unhealthy: imap: banner" in caplog.records[-1].getMessage()
    logged = len(caplog.records)
    board.changed.clear()
    s.feed(Outcome(False, "connect", "refused"), 5.0)  # same verdict, new reason
    board.publish()
    assert board.changed.is_set() and len(caplog.records) == logged  # no verdict change logged
    assert board.reasons == ["imap: connect: refused (failing)"]
    s.release(6.0, "paused")
    board.publish()
    assert REGISTRY.get_sample_value("dms_agent_mailserver_healthy") == -1


def test_render_flattens_reasons_to_one_line_each() -> None:
    text = render(Verdict.UNHEALTHY, ["a: x\ny", "b"], 1700000000.9)
    lines = text.splitlines()
    assert lines[0] == "unhealthy 1700000000"
    assert lines[1:3] == [
        "# dms-agent mailserver verdict. Line 1: <verdict> <unix time>; the probe fails only",
        "# on a fresh 'unhealthy'. Reasons:",
    ]
    assert lines[3:] == ["a: x y", "b"] and text.endswith("b\n")


async def test_verdict_writer_keeps_the_file_fresh_and_says_unknown_when_stopping(
    tmp_path: Path,
) -> None:
    s = state()
    board = Board([s], StatusRegistry(), Hub())
    path = tmp_path / "run" / "verdict"
    writer = VerdictWriter(board, path, refresh=0.05)
    assert writer.name == "checks-verdict-file"
    task = asyncio.create_task(writer.run())

    async def until(predicate: object) -> None:
        async with asyncio.timeout(10):
            while not (path.exists() and predicate(path.read_text())):  # type: ignore[operator]
                await asyncio.sleep(0.01)

    try:
        await until(lambda t: t.startswith("unknown "))
        assert oct(path.stat().st_mode & 0o777) == "0o644"  # the probe may run as another user
        first = path.read_text().split()[1]
        s.feed(Outcome(True), 1.0)
        board.publish()  # a change is written at once
        await until(lambda t: t.startswith("healthy "))
        stamp = int(path.read_text().split()[1])
        assert stamp >= int(first)
        # the refresh rewrites the same verdict: the mtime moves on
        mtime = path.stat().st_mtime_ns
        async with asyncio.timeout(10):
            while path.stat().st_mtime_ns == mtime:
                await asyncio.sleep(0.01)
        assert path.read_text().startswith("healthy ")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert path.read_text().splitlines()[3] == "agent stopped"
    assert path.read_text().startswith("unknown ")
    assert [p.name for p in path.parent.iterdir()] == ["verdict"]  # no temp file left


async def test_verdict_writer_survives_an_unwritable_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    board = Board([state()], StatusRegistry(), Hub())
    writer = VerdictWriter(board, blocker / "verdict", refresh=0.02)
    task = asyncio.create_task(writer.run())
    try:
        async with asyncio.timeout(10):
            while not any(
                "cannot write the verdict file" in r.getMessage() for r in caplog.records
            ):
                await asyncio.sleep(0.01)
        assert not task.done()  # logged and retried, not crashed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()  # the "agent stopped" write failed too, quietly
    message = next(r.getMessage() for r in caplog.records if "cannot write" in r.getMessage())
    where = blocker / "verdict"
    assert message.startswith(f"cannot write the verdict file {where}: [Errno 17] File exists")


def test_write_atomically_makes_folders_and_cleans_up_after_a_failure(tmp_path: Path) -> None:
    from agent.checks.verdict import write_atomically

    deep = tmp_path / "a" / "b" / "verdict"
    write_atomically(deep, "healthy 1\n")
    assert deep.read_text() == "healthy 1\n"
    taken = tmp_path / "c" / "verdict"
    taken.mkdir(parents=True)  # a folder where the file should go: the rename fails
    with pytest.raises(IsADirectoryError):
        write_atomically(taken, "x")
    assert [p.name for p in taken.parent.iterdir()] == ["verdict"]  # no temp file left


def test_the_verdict_change_log_joins_reasons(caplog: pytest.LogCaptureFixture) -> None:
    a, b = failing(state("a")), failing(state("b"))
    caplog.set_level(logging.INFO, "dms_agent.checks.verdict")
    Board([a, b], StatusRegistry(), Hub()).publish()
    assert caplog.records[-1].getMessage() == (
        "mailserver verdict unknown -> unhealthy: a: banner: no greeting (failing); "
        "b: banner: no greeting (failing)"
    )


def test_probe_exec_form_is_indented_json_of_the_command() -> None:
    import json

    from agent.checks.probe import exec_command, exec_command_json

    text = exec_command_json(Path("/v/verdict"), 30)
    assert json.loads(text) == exec_command(Path("/v/verdict"), 30)
    assert text.startswith('[\n  "sh",\n  "-c",\n')  # pasted into a manifest as it is
    assert exec_command()[3:] == ["dms-agent-probe", "/var/run/dms-agent/verdict", "60"]
