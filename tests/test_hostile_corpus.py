"""The hostile-input corpus (tests/hostile/): each input gives its located error, no traceback,
and a password in it never reaches the error, whatever the source's ``secret`` flag says."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.checks.probe import PROBE_SCRIPT
from agent.dkim.byo import load_byo_keys
from agent.errors import InvalidDocument
from agent.mailstate.load import desired_from_documents
from agent.mailstate.model import DkimSpec
from agent.reconcile.ledger import LEDGER_NAME, Ledger, LedgerError
from agent.sources.document import read_path

CORPUS = Path(__file__).parent / "hostile"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())


def test_every_input_has_its_expected_error_and_back() -> None:
    inputs = {p.name for p in (CORPUS / "inputs").iterdir()}
    assert inputs == set(CASES)


def source_errors(folder: Path, secret: bool) -> list[str]:
    docs = read_path(folder, secret)
    assert docs is not None
    with pytest.raises(InvalidDocument) as info:
        desired_from_documents(docs)
    return [str(e) for e in info.value.errors]


def ledger_errors(folder: Path, _secret: bool) -> list[str]:
    with pytest.raises(LedgerError) as info:
        Ledger(folder / LEDGER_NAME).load()
    return [str(info.value)]


def byo_dkim_errors(folder: Path, _secret: bool) -> list[str]:
    keys, errors = load_byo_keys(folder, {"example.com": DkimSpec()})
    assert keys == []
    return [str(e) for e in errors]


def verdict_outcome(folder: Path, _secret: bool) -> list[str]:
    argv = ["dash", "-c", PROBE_SCRIPT, "probe", str(folder / "verdict"), "60"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    return ["probe passes" if (result.returncode, result.stderr) == (0, "") else str(result)]


READERS = {
    "source": source_errors,
    "ledger": ledger_errors,
    "byo-dkim": byo_dkim_errors,
    "verdict": verdict_outcome,
}

# A case holding a password is read both from a plain source and from one flagged `secret`.
RUNS = [(c, False) for c in sorted(CASES)] + [
    (c, True) for c in sorted(CASES) if "withheld" in CASES[c]
]


@pytest.mark.parametrize(("case", "secret"), RUNS)
def test_hostile_input_gives_its_located_error(case: str, secret: bool) -> None:
    folder = CORPUS / "inputs" / case
    read = READERS[CASES[case].get("kind", "source")]
    errors = [e.removeprefix(f"{folder}/") for e in read(folder, secret)]
    expected = CASES[case]["error"]
    assert any(e.startswith(expected) for e in errors), errors
    withheld = CASES[case].get("withheld")
    if withheld:
        assert not any(withheld in e for e in errors), errors
