"""Shell completion generated from the parser: bash's and zsh's scripts, from the installed
`dms-agent completion`, complete sub-commands, options and choices as the parser has them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_support import run_cli
from tests.rig.proc import require_binary

CASES = [
    (["dms-agent", "p"], {"plan", "probe-script"}),
    (["dms-agent", "dkim", ""], {"records", "switch"}),
    (["dms-agent", "plan", "--output", ""], {"table", "json"}),
    (["dms-agent", "schema", ""], {"state", "passwords"}),
    (["dms-agent", "check-dns", "--color", "a"], {"auto", "always"}),
    (["dms-agent", "apply", "--allow"], {"--allow-deletions"}),
]


def script(shell: str, tmp_path: Path) -> Path:
    proc = run_cli("completion", shell)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / f"dms-agent.{shell}"
    path.write_text(proc.stdout)
    return path


@pytest.mark.parametrize(("words", "expected"), CASES, ids=lambda c: str(c))
def test_bash_completes_from_the_parser(
    tmp_path: Path, words: list[str], expected: set[str]
) -> None:
    path = script("bash", tmp_path)
    program = (
        f"source {path}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; _dms_agent; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) == expected


def test_bash_offers_files_for_a_path_option(tmp_path: Path) -> None:
    path = script("bash", tmp_path)
    (tmp_path / "settings.yaml").write_text("{}\n")
    program = (
        f"cd {tmp_path}; source {path}; COMP_WORDS=(dms-agent plan --config sett); "
        "COMP_CWORD=3; _dms_agent; echo ${COMPREPLY[@]}"
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["settings.yaml"]


# zsh's completion widgets only run inside its line editor: stand-ins for the three it calls
ZSH_STUBS = """
compadd() { print -rl -- "${@:2}"; }
_files() { print -r -- FILES; }
_describe() { local item; for item in "${(@P)4}"; do print -r -- "${item%%:*}"; done; }
"""


@pytest.mark.parametrize(("words", "expected"), CASES, ids=lambda c: str(c))
def test_zsh_completes_from_the_parser(
    tmp_path: Path, words: list[str], expected: set[str]
) -> None:
    zsh = require_binary("zsh", "zsh")
    path = script("zsh", tmp_path)
    body = path.read_text().replace('_dms_agent "$@"\n', "")  # define, don't run
    (tmp_path / "defs.zsh").write_text(ZSH_STUBS + body)
    program = (
        f"source {tmp_path / 'defs.zsh'}; words=({' '.join(repr(w) for w in words)}); "
        f"CURRENT={len(words)}; _dms_agent"
    )
    out = subprocess.run([zsh, "-f", "-c", program], capture_output=True, text=True, check=True)
    # _describe offers every item; the shell filters by the prefix typed
    offered = {w for w in out.stdout.split() if w.startswith(words[-1])}
    assert offered == expected


def test_install_commands_are_documented() -> None:
    text = run_cli("completion", "--help").stdout
    assert "dms-agent completion bash >" in " ".join(text.split())
    assert "dms-agent completion zsh >" in " ".join(text.split())
