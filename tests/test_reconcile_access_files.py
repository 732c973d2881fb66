"""The file route's edits of DMS's access files (restrictions): an added line never glues onto
a last line that lacks its newline, and a removal keeps every other line byte for byte (found
by bench/mutation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.dms import files
from agent.dms.fileapply import FileApplier
from agent.reconcile.plan import Op

KEPT = "x@x.org \t\t REJECT\n" + "weird@x.org\tREJECT\n"  # DMS's spelling, and a hand-made one


@pytest.mark.parametrize("ending", ["\n", ""])
def test_a_restriction_is_appended_on_a_line_of_its_own(tmp_path: Path, ending: str) -> None:
    access = tmp_path / files.SEND_ACCESS_FILE
    before = KEPT.removesuffix("\n") + ending
    access.write_text(before)
    FileApplier(tmp_path).apply(Op("restrict_add", "a@x.org", "send"))
    assert access.read_text() == KEPT + files.access_line("a@x.org")


def test_lifting_a_restriction_leaves_every_other_line_as_it_was(tmp_path: Path) -> None:
    access = tmp_path / files.RECEIVE_ACCESS_FILE
    access.write_text(KEPT + files.access_line("a@x.org") + "last@x.org \t\t REJECT\n")
    FileApplier(tmp_path).apply(Op("restrict_del", "a@x.org", "receive"))
    assert access.read_text() == KEPT + "last@x.org \t\t REJECT\n"
