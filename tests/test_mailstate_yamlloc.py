"""The line-keeping YAML loader the state documents rely on."""

from __future__ import annotations

import datetime
import gc

import pytest
import yaml

from agent.errors import InvalidDocument
from agent.yamlloc import load_yaml

TEXT = """\
# comment
apiVersion: dms-agent/v1
accounts:
  alice@example.com:
    quota: 2G
  bob@example.com: {restrict: [send, receive]}
list:
  - 1
  - "2"
  -
    nested: true
scalars: {n: null, t: yes, f: 1.5, d: 2024-01-02, o: 0o17, s: '0', e: ""}
"""


def test_values_equal_pyyaml_safe_load() -> None:
    assert load_yaml(TEXT, "x").value == yaml.safe_load(TEXT)


def test_lines_of_keys_items_and_nearest_ancestor() -> None:
    doc = load_yaml(TEXT, "x")
    assert doc.line_of(("apiVersion",)) == 2
    assert doc.line_of(("accounts", "alice@example.com")) == 4
    assert doc.line_of(("accounts", "alice@example.com", "quota")) == 5
    assert doc.line_of(("accounts", "bob@example.com", "restrict", 1)) == 6
    assert doc.line_of(("list", 1)) == 9
    assert doc.line_of(("list", 2, "nested")) == 11
    assert doc.line_of(("accounts", "nobody", "deeper")) == 3
    assert doc.value["scalars"]["d"] == datetime.date(2024, 1, 2)


def test_anchors_and_aliases_are_shared_not_expanded() -> None:
    doc = load_yaml("a: &x {q: 1}\nb: *x\nc: &s str\nd: *s\n", "x")
    assert doc.value == {"a": {"q": 1}, "b": {"q": 1}, "c": "str", "d": "str"}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a: 1\nb: [1,\n", 2, "YAML syntax error"),
        ("a: 1\na: 2\n", 2, "twice"),
        ("x:\n  a: 1\n  b: 2\n  a: {c: 3}\n", 4, "twice"),
        ("a: 1\n---\nb: 2\n", 2, "one YAML document"),
        ("a: !!python/object:os.system x\n", 1, "unsupported tag"),
        ("a: 1\nb: !!int abc\n", 2, "unsupported tag !!int"),
        ("a: 1\nb: 2001-02-30\n", 2, "not a valid !!timestamp value"),
        ("a: 1\n? [k]\n: v\n", 2, "complex key"),
        ("a: 1\nb: \x07\n", 2, "YAML error"),
        ("a: *nope\n", 1, "unknown alias"),
    ],
)
def test_errors_are_located(text: str, line: int, fragment: str) -> None:
    with pytest.raises(InvalidDocument) as exc:
        load_yaml(text, "doc.yaml")
    err = exc.value.errors[0]
    assert (err.file, err.line) == ("doc.yaml", line)
    assert fragment in err.message


def test_empty_document() -> None:
    assert load_yaml("", "x").value is None
    assert load_yaml("# nothing\n", "x").value is None


def test_a_parsed_document_is_freed_without_the_cyclic_collector() -> None:
    """The loader leaves no reference cycle behind: a document's values go as soon as nobody
    holds them (a cycle kept 100,000 accounts' values until the next full collection)."""
    gc.collect()
    gc.disable()
    try:
        load_yaml("a:\n  b: [1, 2]\n  c: {d: e}\n", "x.yaml")
        assert gc.collect() == 0  # nothing unreachable was waiting for the collector
    finally:
        gc.enable()
