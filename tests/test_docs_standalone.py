"""The project stands alone: no file points outside the repository, every relative link in the
docs reaches a file in it, and the licence pyproject names is there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.cli_support import ROOT

# spelled in pieces, so this file does not hold what it looks for
OUTSIDE = ["../" + "shared", "/" + "work/", "shared/" + "dms-facts", "shared/" + "design"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path in tracked_files():
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            continue  # binary
        found += [f"{path.relative_to(ROOT)}: {m}" for m in OUTSIDE if m in text]
    assert found == []


def test_every_relative_link_in_the_docs_reaches_a_file_here() -> None:
    broken = []
    for doc in (p for p in tracked_files() if p.suffix == ".md"):
        for target in LINK.findall(doc.read_text("utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


def test_licence_is_the_mit_licence_pyproject_names() -> None:
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
