"""Health safety: the probe passes on every verdict it cannot parse, and escalations and
remediations stay capped across agent restarts (the counts are kept beside the verdict)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent.checks.config import Remediation
from agent.checks.probe import PROBE_SCRIPT
from agent.checks.ratelog import RateLog, beside
from agent.checks.remediation import Remediator, Result
from agent.checks.verdict import Board, VerdictWriter, write_atomically
from agent.events import EventType
from agent.executor import LocalExecutor
from agent.hub import Hub
from agent.status import StatusRegistry, Verdict

SHELLS = [s for s in ("dash", "bash", "busybox") if shutil.which(s)]


def probe(shell: str, path: Path) -> subprocess.CompletedProcess[str]:
    argv = [shell, "-c", PROBE_SCRIPT, "probe", str(path), "60"]
    if shell == "busybox":
        argv.insert(1, "sh")
    return subprocess.run(argv, capture_output=True, text=True, timeout=5)


def test_dash_is_there() -> None:
    assert "dash" in SHELLS  # DMS's image runs probes with dash: test with the real one


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "stamp",
    [
        "99999999999999999999",  # was: dash "Illegal number", exit 2: the probe FAILED
        "9" * 400,
        "-5",
        "-99999999999999999999",
        "+1700000000",
        "0999999999",  # dash reads a leading zero as octal
        "08",
        "1e10",
        "0x10",
        "$((1/0))",
        "`reboot`",
        "1700000000.5",
        "\x00\x01",
        "\uff11\uff17\uff10\uff10",  # full-width digits
    ],
)
def test_every_unparsable_verdict_is_stale_and_passes(
    tmp_path: Path, shell: str, stamp: str
) -> None:
    f = tmp_path / "verdict"
    f.write_text(f"unhealthy {stamp}\n# reasons\n")
    result = probe(shell, f)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("shell", SHELLS)
def test_a_fresh_unhealthy_still_fails_in_every_shell(tmp_path: Path, shell: str) -> None:
    f = tmp_path / "verdict"
    f.write_text(f"unhealthy {int(time.time())}\n")
    assert probe(shell, f).returncode == 1


# --- escalations -----------------------------------------------------------------------------


def first_line(path: Path) -> str:
    return path.read_text().split()[0]


async def unhealthy_spells(path: Path, spells: int, clock: list[float]) -> list[str]:
    """A fresh agent (as after a restart) writing ``spells`` unhealthy spells; what each wrote."""
    board = Board([], StatusRegistry(), Hub())
    written = []
    writer = VerdictWriter(
        board, path, 60.0, RateLog(beside(path, "escalations"), lambda: clock[0])
    )
    for _ in range(spells):
        board.verdict = Verdict.UNHEALTHY
        writer._episode = None  # a new spell (the writer's loop resets it on a non-unhealthy)
        await writer._write(board.verdict, ["smtp: refused"])
        written.append(first_line(path))
        clock[0] += 60
    return written


async def test_escalations_are_capped_per_hour_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "verdict"
    clock = [1_000_000.0]
    assert await unhealthy_spells(path, 2, clock) == ["unhealthy", "unhealthy"]
    # the agent restarts (crash loop): a new writer, same files
    assert await unhealthy_spells(path, 2, clock) == ["unhealthy", "unknown"]
    assert "escalation cap" in path.read_text()
    clock[0] += 3600  # an hour later the allowance is back
    assert await unhealthy_spells(path, 1, clock) == ["unhealthy"]


async def test_one_spell_is_one_escalation(tmp_path: Path) -> None:
    path = tmp_path / "verdict"
    board = Board([], StatusRegistry(), Hub())
    writer = VerdictWriter(board, path, 60.0, RateLog(beside(path, "escalations")), 1)
    for _ in range(5):  # the periodic refresh rewrites the same spell
        await writer._write(Verdict.UNHEALTHY, ["x"])
        assert first_line(path) == "unhealthy"
    assert await RateLog(beside(path, "escalations")).count("unhealthy", 3600) == 1


async def test_the_writer_counts_each_spell_once_and_says_when_it_caps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Driven through the writer's own loop: a spell whose reasons change is still one
    escalation; a healthy verdict ends the spell; the spell over the cap is written unknown and
    logged at ERROR with the cap."""
    path = tmp_path / "verdict"
    board = Board([], StatusRegistry(), Hub())
    writer = VerdictWriter(board, path, 3600.0, RateLog(beside(path, "escalations")), 2)
    task = asyncio.create_task(writer.run())

    async def show(verdict: Verdict, *reasons: str) -> str:
        board.verdict, board.reasons = verdict, list(reasons)
        board.changed.set()
        async with asyncio.timeout(10):  # until this very write is on disk
            while not (path.exists() and all(r in path.read_text() for r in reasons)):
                await asyncio.sleep(0.01)
        return first_line(path)

    try:
        with caplog.at_level(logging.ERROR, logger="dms_agent.checks.verdict"):
            assert await show(Verdict.UNHEALTHY, "smtp: refused") == "unhealthy"
            assert await show(Verdict.UNHEALTHY, "smtp: refused", "imap: down") == "unhealthy"
            assert await show(Verdict.HEALTHY, "spell 1 over") == "healthy"
            assert await show(Verdict.UNHEALTHY, "smtp: refused again") == "unhealthy"
            assert await show(Verdict.HEALTHY, "spell 2 over") == "healthy"
            assert caplog.messages == []
            assert await show(Verdict.UNHEALTHY, "smtp: refused a third time") == "unknown"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await RateLog(beside(path, "escalations")).count("unhealthy", 3600) == 2
    assert caplog.messages == [
        "mailserver unhealthy, but 2 restarts were asked in the last hour: the verdict file "
        "says unknown until the next hour"
    ]


def test_a_verdict_file_left_private_is_made_readable_again(tmp_path: Path) -> None:
    """The probe may run as another user: whatever mode the file had, it is written 0644."""
    path = tmp_path / "verdict"
    path.write_text("unknown 1\n")
    path.chmod(0o600)
    write_atomically(path, "healthy 2\n")
    assert path.stat().st_mode & 0o777 == 0o644


# --- remediations ----------------------------------------------------------------------------


class Events:
    def emit(self, reason: str, message: str, type: EventType = "Normal") -> None:
        pass


async def test_the_remediation_limit_holds_across_restarts(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    spec = Remediation(command=["sh", "-c", f"echo x >> {ran}"], maxActions=2, grace=0)
    state = beside(tmp_path / "verdict", "remediations")
    results = []
    for _ in range(3):  # three agent starts, each asked once... then once more
        remediator = Remediator(LocalExecutor(), Events(), RateLog(state))
        results.append((await remediator.run("smtp", spec))[0])
        await asyncio.sleep(0)
    assert results == [Result.RAN, Result.RAN, Result.RATE_LIMITED]
    assert ran.read_text().count("x") == 2
