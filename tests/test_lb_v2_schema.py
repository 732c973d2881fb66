"""The v2 protocol as published (docs/lb-v2.schema.json): the agent's documents and the example
receiver's answers both follow it, and its version is one a receiver refuses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from agent.lb.config import LbPort
from agent.lb.payload import V2_API, Registration, v2_request
from tests.lbkit import run_example_hook

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "docs" / "lb-v2.schema.json").read_text()
)


def validator(part: str | None = None) -> Draft202012Validator:
    schema = SCHEMA if part is None else {"$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{part}"}
    return Draft202012Validator(schema, format_checker=FormatChecker())


def errors(doc: Any, part: str | None = None) -> list[str]:
    return [e.message for e in validator(part).iter_errors(doc)]


PORTS = (
    LbPort(name="smtp", frontend=25, proxy_protocol=True),
    LbPort(name="submissions", frontend=465, backend=30465),
)


def test_the_schema_is_valid_and_carries_the_agents_version() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$defs"]["document"]["properties"]["apiVersion"]["const"] == V2_API
    assert SCHEMA["$id"].endswith(V2_API.rsplit("/", 1)[1])  # urn:dms-agent:lb:v2


@pytest.mark.parametrize("action", ["add", "delete"])
@pytest.mark.parametrize(("node", "address"), [("node-a", "192.0.2.10"), (None, "2001:db8::25")])
def test_the_agents_documents_follow_the_schema(
    action: Any, node: str | None, address: str
) -> None:
    reg = Registration("mailserver", "mailserver-0", node, address, PORTS)
    doc = json.loads(v2_request(reg, action, 1_764_770_000_123, time.time(), b"k").body)
    assert errors(doc) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"apiVersion": "dms-agent.lb/v3"}, "dms-agent.lb/v2"),  # the version: refused
        ({"address": "mail.example.com"}, "is not valid under any of the given schemas"),
        ({"sequence": 0}, "less than the minimum"),
        ({"ports": []}, "should be non-empty"),
        ({"extra": 1}, "Additional properties"),
        ({"timestamp": "yesterday"}, "does not match"),
    ],
)
def test_the_schema_refuses_what_a_receiver_must_refuse(change: dict[str, Any], words: str) -> None:
    reg = Registration("mailserver", "mailserver-0", None, "192.0.2.10", PORTS)
    doc = {**json.loads(v2_request(reg, "add", 7, time.time(), b"k").body), **change}
    found = errors(doc)
    assert any(words in e for e in found), found


def test_the_example_receivers_answers_follow_the_schema(tmp_path: Path) -> None:
    reg = Registration("mailserver", "mailserver-0", None, "192.0.2.10", PORTS)

    def doc(action: Any, sequence: int, **change: Any) -> dict[str, Any]:
        sent = json.loads(v2_request(reg, action, sequence, time.time(), b"k").body)
        return {**sent, **change}

    answers = {
        "applied": run_example_hook(tmp_path, "v2", doc("add", 10)),
        "unchanged": run_example_hook(tmp_path, "v2", doc("add", 11)),
        "kept": run_example_hook(tmp_path, "v2", doc("delete", 12, address="192.0.2.99")),
        "deleted": run_example_hook(tmp_path, "v2", doc("delete", 13)),
        "replay": run_example_hook(tmp_path, "v2", doc("add", 13)),
        "version": run_example_hook(tmp_path, "v2", doc("add", 14, apiVersion="x/v3")),
    }
    for result in ("applied", "unchanged", "kept", "deleted"):
        code, answer = answers[result]
        assert code == 0 and answer["result"] == result, answer
        assert errors(answer, "success") == []
    code, answer = answers["replay"]
    assert code == 3 and answer["result"] == "rejected" and errors(answer, "error") == []
    code, answer = answers["version"]  # the receiver refuses another version
    assert code == 2 and answer["result"] == "error" and errors(answer, "error") == []
    assert "apiVersion" in answer["reason"]
