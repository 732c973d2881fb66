"""`dms-agent validate` and `dms-agent schema`: exit codes and output lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from agent.cli import main
from agent.yamlloc import load_yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "state"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().out.splitlines()


def test_validate_examples_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "validate", str(EXAMPLES))
    assert code == 0
    assert out[-1].startswith("valid: 2 document(s), 1 domain(s), 2 account(s)")


def test_validate_broken_file_prints_located_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "mailserver.yaml"
    state.write_text(
        "apiVersion: dms-agent/v1\naccounts:\n  a@: {}\n  ok@x.com: {quota: 5}\n", "utf-8"
    )
    code, out = run(capsys, "validate", str(state))
    assert code == 1
    assert out == [
        f"{state}:3: accounts.a@: empty domain",
        f"{state}:4: accounts.ok@x.com.quota: quota '5' must match ^([0-9]+(B|k|M|G|T)|0)$ "
        "(e.g. 500M, 2G, 0)",
    ]


def test_validate_merge_conflict_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: dms-agent/v1\naccounts:\n  a@x.com:\n", "utf-8")
    (tmp_path / "b.yaml").write_text("apiVersion: dms-agent/v1\naccounts:\n  A@x.com:\n", "utf-8")
    code, out = run(capsys, "validate", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert code == 1
    assert out == [
        f"{tmp_path / 'b.yaml'}:3: a@x.com: account declared twice: here and at "
        f"{tmp_path / 'a.yaml'}:3"
    ]
    pw = tmp_path / "passwords.yaml"
    pw.write_text("ghost@x.com: {password: sesame}\n", "utf-8")
    code, out = run(capsys, "validate", str(tmp_path / "a.yaml"), str(pw))
    assert code == 0
    assert out[0] == f"warning: {pw}:1: ghost@x.com: password for an account no document " + (
        "declares; unused"
    )
    assert out[1] == "pending: a@x.com: no password in any passwords document"
    assert not any("sesame" in line for line in out)


def test_validate_missing_file_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "validate", str(EXAMPLES), str(tmp_path / "nope.yaml"))
    assert code == 1
    assert out[0] == f"{tmp_path / 'nope.yaml'}: cannot read: no such file or folder"


def test_validate_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate"])
    assert exc.value.code == 2


def test_schema_is_json_schema_and_accepts_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "schema")
    assert code == 0
    both = json.loads("\n".join(out))
    state_schema, pw_schema = both["state"], both["passwords"]
    jsonschema.Draft202012Validator.check_schema(state_schema)
    jsonschema.Draft202012Validator.check_schema(pw_schema)
    state = load_yaml((EXAMPLES / "mailserver.yaml").read_text("utf-8"), "s").value
    jsonschema.validate(state, state_schema)
    passwords = load_yaml((EXAMPLES / "passwords.yaml").read_text("utf-8"), "p").value
    jsonschema.validate(passwords, pw_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"a@x.com": "bare"}, pw_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**state, "colour": 1}, state_schema)
    code, out = run(capsys, "schema", "passwords")
    assert json.loads("\n".join(out)) == pw_schema


def test_console_entry_point_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "postfix-virtual.cf"
    bad.write_text("lonely@x.com\n", "utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{bad}:1: ")
    help_text = subprocess.run(
        [sys.executable, "-m", "agent", "validate", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    assert "postfix-accounts.cf" in help_text and "Exit: 0 valid" in help_text
