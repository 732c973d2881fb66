"""The mail-log follower on real files: appends, partial lines, rotation by rename, truncation
in place, and a restart that resumes where the last run stopped (no line twice, none missed)."""

from __future__ import annotations

import os
from pathlib import Path

from agent.mailflow.follower import LogFollower, PositionStore


class Seen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.behind = -1
        self.up = False

    def line(self, text: str) -> None:
        self.lines.append(text)

    def read(self, lines: int, behind: int, up: bool) -> None:
        self.behind, self.up = behind, up


def follower(path: Path, state: Path | None, seen: Seen) -> LogFollower:
    return LogFollower(path, PositionStore(state), seen.line, seen.read)


def append(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)


async def test_history_is_skipped_appends_and_partial_lines_are_read(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("old 1\nold 2\n")
    seen = Seen()
    f = follower(log, tmp_path / "pos.json", seen)
    assert await f.poll() == 0 and seen.up  # a file seen the first time: from its end
    append(log, "new 1\nnew 2\nhalf")
    assert await f.poll() == 2
    assert seen.lines == ["new 1", "new 2"] and seen.behind == 0  # "half" waits for its end
    append(log, " done\n")
    await f.poll()
    assert seen.lines[-1] == "half done"
    f.close()


async def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    seen = Seen()
    f = follower(log, None, seen)
    await f.poll()
    append(log, "before rotation\n")
    os.rename(log, tmp_path / "mail.log.1")
    append(tmp_path / "mail.log.1", "late write to the old file\n")
    log.write_text("first of the new file\n")
    await f.poll()
    assert seen.lines == ["before rotation", "late write to the old file", "first of the new file"]
    f.close()


async def test_truncation_in_place_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    seen = Seen()
    f = follower(log, None, seen)
    await f.poll()
    append(log, "a long line before copytruncate\n")
    await f.poll()
    log.write_text("")  # copytruncate
    append(log, "after\n")
    await f.poll()
    assert seen.lines == ["a long line before copytruncate", "after"]
    f.close()


async def test_restart_resumes_without_counting_twice_or_missing(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "pos.json"
    log.write_text("")
    first = Seen()
    f = follower(log, state, first)
    await f.poll()
    append(log, "one\ntwo\n")
    await f.poll()
    f.close()  # the agent stops; mail goes on
    append(log, "three\n")
    second = Seen()
    g = follower(log, state, second)
    await g.poll()
    assert first.lines == ["one", "two"] and second.lines == ["three"]
    g.close()


async def test_rotated_while_away_reads_the_new_file_from_its_start(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "pos.json"
    log.write_text("")
    seen = Seen()
    f = follower(log, state, seen)
    await f.poll()
    f.close()
    os.rename(log, tmp_path / "mail.log.1")
    log.write_text("written after rotation\n")
    g = follower(log, state, seen)
    await g.poll()
    assert seen.lines == ["written after rotation"]
    g.close()


async def test_a_missing_file_is_down_and_a_bad_state_file_is_not_fatal(tmp_path: Path) -> None:
    state = tmp_path / "pos.json"
    state.write_text("{not json")
    seen = Seen()
    f = follower(tmp_path / "absent.log", state, seen)
    assert await f.poll() == 0 and not seen.up
    (tmp_path / "absent.log").write_text("x\n")
    await f.poll()
    assert seen.up
    f.close()
