"""The plain shape check never accepts what pydantic's models refuse: a document it accepts
skips pydantic, so an acceptance pydantic would have refused would lose an error."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import InvalidDocument
from agent.mailstate.shape import well_formed_passwords, well_formed_state
from agent.mailstate.structure import structure_errors
from agent.yamlloc import load_yaml
from tests.cli_support import imported_modules

VALID: dict[str, Any] = {
    "apiVersion": "dms-agent/v1",
    "domains": {
        "x.org": {"dkim": {"selector": "mail", "keyType": "rsa", "keySize": 2048}},
        "y.org": None,
        "z.org": {},
        "w.org": {"dkim": None},
    },
    "accounts": {
        "a@x.org": {"quota": "2G", "restrict": ["send", "receive"]},
        "b@x.org": None,
        "c@x.org": {},
        "d@x.org": {"quota": 0},
    },
    "aliases": {"l@x.org": ["a@x.org", "b@x.org"]},
    "policy": {"prune": False, "deleteMailData": None},
}

# (path to a mapping, key, value to put there): each makes a document pydantic judges
EDITS: list[tuple[tuple[str, ...], str, Any]] = [
    ((), "apiVersion", "dms-agent/v2"),
    ((), "apiVersion", None),
    ((), "api_version", "dms-agent/v1"),  # pydantic takes field names too: its call
    ((), "extra", 1),
    ((), "domains", None),
    ((), "domains", []),
    ((), "accounts", "x"),
    ((), "aliases", {"l@x.org": "a@x.org"}),
    ((), "aliases", {"l@x.org": [1]}),
    ((), "aliases", {"l@x.org": None}),
    ((), "policy", {"prune": "yes"}),
    ((), "policy", {"prune": 1}),
    ((), "policy", {"delete_mail_data": True}),
    ((), "policy", {"other": True}),
    ((), "policy", []),
    (("domains",), "x.org", {"dkim": {"keyType": "dsa"}}),
    (("domains",), "x.org", {"dkim": {"keySize": "2048"}}),
    (("domains",), "x.org", {"dkim": {"keySize": True}}),
    (("domains",), "x.org", {"dkim": {"key_type": "rsa"}}),
    (("domains",), "x.org", {"dkim": {"selector": 1}}),
    (("domains",), "x.org", {"dkim": []}),
    (("domains",), "x.org", {"other": 1}),
    (("domains",), "x.org", "x"),
    (("accounts",), "a@x.org", {"restrict": ["send", "both"]}),
    (("accounts",), "a@x.org", {"restrict": "send"}),
    (("accounts",), "a@x.org", {"restrict": None}),
    (("accounts",), "a@x.org", {"restrict": [1]}),
    (("accounts",), "a@x.org", {"other": 1}),
    (("accounts",), "a@x.org", []),
    (("accounts",), "a@x.org", ""),
    (("accounts",), "a@x.org", 0),
    (("accounts",), "a@x.org", False),
    (("accounts",), "a@x.org", "2G"),
]


def edited(path: tuple[str, ...], key: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    at = doc
    for part in path:
        at = at[part]
    at[key] = value
    return doc


def corpus_values() -> Iterator[Any]:
    """Every YAML document of the hostile corpus that loads."""
    for path in sorted((Path(__file__).parent / "hostile" / "inputs").rglob("*.y*ml")):
        try:
            yield path.name, load_yaml(path.read_text(encoding="utf-8"), path.name).value
        except (InvalidDocument, UnicodeDecodeError):
            continue


def test_the_valid_document_takes_the_plain_path_and_pydantic_agrees() -> None:
    assert well_formed_state(VALID)
    assert structure_errors("state", VALID) == []
    entries = {"a@x.org": {"password": "pw"}, "b@x.org": {"hash": "{PLAIN}b"}}
    assert well_formed_passwords(entries) and structure_errors("passwords", entries) == []


@pytest.mark.parametrize("edit", EDITS, ids=lambda e: f"{'.'.join(e[0])}.{e[1]}={e[2]!r}")
def test_what_pydantic_refuses_is_never_taken_as_well_formed(
    edit: tuple[tuple[str, ...], str, Any],
) -> None:
    doc = edited(*edit)
    snake_case = "_" in repr(edit)  # pydantic also takes field names: its call, not ours
    assert snake_case or structure_errors("state", doc) != []
    assert not well_formed_state(doc)  # either way pydantic decides


@pytest.mark.parametrize("entry", [{"password": 1}, {"hash": b"h"}, {"other": "x"}, "pw", None])
def test_a_refused_password_entry_is_never_well_formed(entry: Any) -> None:
    entries = {"a@x.org": entry}
    assert structure_errors("passwords", entries) != []
    assert not well_formed_passwords(entries)


@pytest.mark.parametrize("entry", [{"hash": None}, {}, {"password": "p", "hash": "h"}])
def test_an_odd_password_entry_goes_to_the_full_checks(entry: Any) -> None:
    """pydantic takes these; the semantic pass names what is wrong (none, both)."""
    assert not well_formed_passwords({"a@x.org": entry})


def test_the_hostile_corpus_never_passes_the_plain_check_where_pydantic_refuses() -> None:
    seen = 0
    for name, value in corpus_values():
        seen += 1
        if "password" in name and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "apiVersion"}
            if well_formed_passwords(value):
                assert structure_errors("passwords", value) == [], name
        elif well_formed_state(value):
            assert structure_errors("state", value) == [], name
    assert seen > 5


def test_validating_a_well_formed_folder_loads_no_pydantic(tmp_path: Path) -> None:
    (tmp_path / "mailserver.yaml").write_text(
        "apiVersion: dms-agent/v1\naccounts:\n  a@x.org: {quota: 1G}\n"
    )
    (tmp_path / "passwords.yaml").write_text('a@x.org: {password: "correct horse"}\n')
    modules = imported_modules("validate", str(tmp_path))
    assert "agent.mailstate.parse" in modules  # the document was parsed
    assert not {m for m in modules if m.split(".")[0] == "pydantic"}
