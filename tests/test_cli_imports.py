"""The command line answers without loading what only a sub-command's work needs (issue: a
`--help` that imported aiohttp, pydantic, dkimpy ... took a second)."""

from __future__ import annotations

import argparse

import pytest

from agent.cli import COMMANDS, build_parser, handler
from tests.cli_support import imported_modules

# the libraries a sub-command's work may load, never its --help
HEAVY = {"aiohttp", "pydantic", "cryptography", "dns", "dkim", "prometheus_client", "spf"}


def help_invocations() -> list[tuple[str, ...]]:
    """`--help`, and `SUB --help` for every sub-command the parser has (nested ones too)."""
    found: list[tuple[str, ...]] = [()]

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append((*prefix, name))
                    walk(sub, (*prefix, name))

    walk(build_parser(), ())
    return found


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("words", help_invocations(), ids=lambda w: " ".join(w) or "top")
def test_help_imports_no_heavy_library(words: tuple[str, ...]) -> None:
    modules = imported_modules(*words, "--help")
    assert "agent.cli" in modules  # the report was read: the CLI itself shows in it
    assert top_level(modules) & HEAVY == set()


def test_the_import_report_sees_a_heavy_import() -> None:
    # `schema` builds pydantic models: the same reading must see pydantic there
    assert "pydantic" in top_level(imported_modules("schema", "state"))


def test_every_handler_key_names_a_command_function() -> None:
    keys: set[str] = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        if parser.get_default("handler"):
            keys.add(parser.get_default("handler"))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    assert keys == set(COMMANDS)
    for key in keys:
        assert callable(handler(key))
