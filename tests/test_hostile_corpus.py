"""The hostile-input corpus (tests/hostile/): each input gives its located error, no traceback,
and a password in it never reaches the error, whatever the source's ``secret`` flag says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import InvalidDocument
from agent.mailstate.load import desired_from_documents
from agent.sources.document import read_path

CORPUS = Path(__file__).parent / "hostile"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())


def test_every_input_has_its_expected_error_and_back() -> None:
    inputs = {p.name for p in (CORPUS / "inputs").iterdir()}
    assert inputs == set(CASES)


# A case holding a password is read both from a plain source and from one flagged `secret`.
RUNS = [(c, False) for c in sorted(CASES)] + [
    (c, True) for c in sorted(CASES) if "withheld" in CASES[c]
]


@pytest.mark.parametrize(("case", "secret"), RUNS)
def test_hostile_input_gives_its_located_error(case: str, secret: bool) -> None:
    folder = CORPUS / "inputs" / case
    docs = read_path(folder, secret)
    assert docs is not None
    with pytest.raises(InvalidDocument) as info:
        desired_from_documents(docs)
    errors = [str(e).removeprefix(f"{folder}/") for e in info.value.errors]
    expected = CASES[case]["error"]
    assert any(e.startswith(expected) for e in errors), errors
    withheld = CASES[case].get("withheld")
    if withheld:
        assert not any(withheld in e for e in errors), errors
