"""The lb client's pure parts: payloads, signatures, proofs, sequence numbers, settings, and
the receiver script's refusals (run as a process, as webhook runs it)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from agent.errors import InvalidDocument
from agent.lb.client import Outcome, SecretError, combined, read_secret
from agent.lb.component import check_passed, endpoint
from agent.lb.config import FunkypenguinStyle, LbPort
from agent.lb.payload import (
    Registration,
    check_proof,
    funkypenguin_requests,
    rejection,
    unconfirmed,
    v2_request,
)
from agent.lb.sequence import SequenceSource
from agent.settings import load_settings
from tests.lbkit import run_example_hook

PORTS = (
    LbPort(name="smtp", frontend=25, proxy_protocol=True),
    LbPort(name="submissions", frontend=465, backend=30465),
)
REG = Registration("mailserver", "dms-0", "node-1", "192.0.2.10", PORTS)


def test_v2_document_is_signed_over_the_raw_body() -> None:
    req = v2_request(REG, "add", 17, 1_700_000_000.5, b"key")
    doc = json.loads(req.body)
    assert doc == {
        "apiVersion": "dms-agent.lb/v2",
        "action": "add",
        "name": "mailserver",
        "pod": "dms-0",
        "node": "node-1",
        "address": "192.0.2.10",
        "ports": [
            {"name": "smtp", "frontend": 25, "backend": 25, "proxyProtocol": True},
            {"name": "submissions", "frontend": 465, "backend": 30465, "proxyProtocol": False},
        ],
        "sequence": 17,
        "timestamp": "2023-11-14T22:13:20.500Z",
    }
    want = "sha256=" + hmac.new(b"key", req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Hub-Signature-256"] == want
    assert req.headers["Content-Type"] == "application/json"


def test_funkypenguin_defaults_are_the_original_senders_values() -> None:
    """The original phone-home container: every value a string, send-proxy the HAProxy
    keyword or empty, one name per port (docker-mailserver-smtp, ...)."""
    reqs = funkypenguin_requests(REG, "delete", "tok", FunkypenguinStyle())
    assert [json.loads(r.body) for r in reqs] == [
        {
            "dst-ip": "192.0.2.10",
            "frontend-port": "25",
            "backend-port": "25",
            "action": "delete",
            "name": "docker-mailserver-smtp",
            "send-proxy": "send-proxy",
        },
        {
            "dst-ip": "192.0.2.10",
            "frontend-port": "465",
            "backend-port": "30465",
            "action": "delete",
            "name": "docker-mailserver-submissions",
            "send-proxy": "",
        },
    ]
    assert [r.port for r in reqs] == ["smtp", "submissions"]
    assert reqs[0].headers["X-Funkypenguin-Token"] == "tok"


def test_funkypenguin_booleans_and_one_shared_name_stay_selectable() -> None:
    style = FunkypenguinStyle.model_validate({"sendProxy": "boolean", "names": "shared"})
    docs = [json.loads(r.body) for r in funkypenguin_requests(REG, "add", "tok", style)]
    assert [(d["name"], d["send-proxy"]) for d in docs] == [
        ("mailserver", "true"),
        ("mailserver", "false"),
    ]
    prefixed = FunkypenguinStyle.model_validate({"namePrefix": "dms-"})
    docs = [json.loads(r.body) for r in funkypenguin_requests(REG, "add", "t", prefixed)]
    assert [d["name"] for d in docs] == ["dms-smtp", "dms-submissions"]


def test_proof_must_match_the_request() -> None:
    expect = {"sequence": 17, "name": "mailserver"}
    good = 'stderr noise\n{"result": "applied", "name": "mailserver", "sequence": 17}\n'
    assert check_proof(good, expect, None) is None
    assert "another request" in str(check_proof(good.replace("17", "16"), expect, None))
    assert "did it run" in str(check_proof("", expect, None))  # webhook's bare 200
    assert "did it run" in str(check_proof("I got the payload!", expect, None))
    bad_result = '{"result": "error", "name": "mailserver", "sequence": 17}'
    assert check_proof(bad_result, expect, None) is not None
    assert check_proof("Configuration file is valid", expect, r"is valid") is None
    assert check_proof("nope", expect, r"is valid") is not None
    assert rejection('x\n{"result": "rejected", "reason": "sequence 3 already seen"}') == (
        "sequence 3 already seen"
    )
    assert rejection(good) is None


def test_an_empty_2xx_is_delivered_unconfirmed_and_one_port_never_hides_another() -> None:
    assert unconfirmed("", None) and unconfirmed(" \n", None)
    assert not unconfirmed("I got the payload!", None)  # a message: not the original's answer
    assert not unconfirmed("", r"^$")  # expectResponse decides alone
    ok, bare = Outcome(True, "ok", "HTTP 200"), Outcome(True, "unconfirmed", "HTTP 200")
    refused = Outcome(False, "http_error", "HTTP 500: boom")
    assert combined([("smtp", ok), ("imap", ok)], "add", None).result == "ok"
    both = combined([("smtp", ok), ("imap", bare)], "add", None)
    assert both.ok and not both.confirmed and both.result == "unconfirmed"
    failed = combined([("smtp", bare), ("imap", refused), ("pop3", refused)], "add", 7)
    assert not failed.ok and failed.result == "http_error" and failed.sequence == 7
    assert failed.detail == "port imap: HTTP 500: boom (and 1 more port(s))"


async def test_sequence_increases_and_survives_restarts_and_clock_jumps(tmp_path: Path) -> None:
    state = tmp_path / "lb-state.json"
    clock = [1000.0]
    first = SequenceSource(state, clock=lambda: clock[0])
    a, b = await first.next(), await first.next()
    assert a == 1_000_000 and b == a + 1  # clock floor, then strictly increasing
    clock[0] = 10.0  # the clock went back; a restarted agent still continues above
    again = SequenceSource(state, clock=lambda: clock[0])
    assert await again.next() == b + 1
    fresh = SequenceSource(None, clock=lambda: 2000.0)  # no state file: the clock alone
    assert await fresh.next() == 2_000_000
    await again.set_legacy_ports("lb:9000", [{"frontend": 25}])
    reread = SequenceSource(state, clock=lambda: clock[0])
    assert await reread.legacy_ports("lb:9000") == [{"frontend": 25}]
    assert await reread.next() == b + 2
    state.write_text("not json")
    broken = SequenceSource(state, clock=lambda: 5.0)
    assert await broken.next() == 5000  # unreadable state is reported, not fatal


def test_secret_files(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_bytes(b"s3cret\r\n")
    assert read_secret(path) == b"s3cret"
    path.write_text("\n")
    with pytest.raises(SecretError, match="empty"):
        read_secret(path)
    with pytest.raises(SecretError, match="unreadable"):
        read_secret(tmp_path / "missing")


def test_endpoint_hides_credentials_and_query() -> None:
    url = "https://user:pw@lb.example.net:9000/hooks/dms-lb?token=abc"
    assert endpoint(url) == "https://lb.example.net:9000/hooks/dms-lb"
    assert endpoint("http://[::1]:9000/h") == "http://[::1]:9000/h"


def test_check_results_shapes() -> None:
    class Result:
        ok = True

    assert check_passed({"smtp": {"ok": True}}, "smtp")
    assert check_passed({"smtp": Result()}, "smtp")
    assert not check_passed({"smtp": {"ok": "yes"}}, "smtp")
    assert not check_passed({}, "smtp")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("lb:\n  enabled: true\n", "at least one entry in `ports`"),
        (
            "lb:\n  ports:\n    - {name: a, frontend: 25}\n    - {name: b, frontend: 25}\n",
            "duplicate frontend port: 25",
        ),
        ("lb:\n  address: {source: fixed}\n", "needs `value`"),
        ("lb:\n  address: {source: fixed, value: example.com}\n", "does not appear to be an IP"),
        (
            "lb:\n  targets:\n    - {url: ftp://x/, secretFile: /s}\n",
            "must be an http:// or https:// URL",
        ),
        ("lb:\n  ports:\n    - {name: smtp, frontend: 70000}\n", "less than or equal to 65535"),
    ],
)
def test_bad_settings_are_located(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(body)
    with pytest.raises(InvalidDocument) as exc:
        load_settings(path, environ={})
    text = str(exc.value)
    assert message in text and f"{path}:" in text and "lb" in text


# ---- the receiver script's refusals -------------------------------------------------------


_hook = run_example_hook


def _v2(**over: object) -> dict[str, object]:
    doc = json.loads(v2_request(REG, "add", 5, time.time(), b"k").body)
    doc.update(over)
    return doc


def test_receiver_script_refuses_bad_input(tmp_path: Path) -> None:
    assert _hook(tmp_path, "v2", "{not json")[0] == 2
    code, out = _hook(tmp_path, "v2", _v2(address="$(reboot)"))
    assert code == 2 and out["result"] == "error" and "IP address" in str(out["reason"])
    code, out = _hook(tmp_path, "v2", _v2(name="a b\nfrontend evil"))
    assert code == 2
    twice = {"name": "smtp", "frontend": 25, "backend": 25}
    code, out = _hook(tmp_path, "v2", _v2(ports=[twice, {**twice, "name": "again"}]))
    assert code == 2 and "twice" in str(out["reason"])
    code, out = _hook(tmp_path, "v2", _v2(timestamp="2001-01-01T00:00:00Z"))
    assert code == 3 and "old" in str(out["reason"])
    code, out = _hook(tmp_path, "v2", _v2(), LB_ALLOWED_PORTS="587")
    assert code == 3 and "LB_ALLOWED_PORTS" in str(out["reason"])
    assert not (tmp_path / "dms-lb.cfg").exists()
    code, out = _hook(tmp_path, "v2", _v2(pod="p" * 200))  # long pod names are fine
    assert code == 0 and out["result"] == "applied"


def test_receiver_script_keeps_old_config_when_check_or_reload_fails(tmp_path: Path) -> None:
    code, out = _hook(tmp_path, "v2", _v2(sequence=1))
    assert (code, out["result"]) == (0, "applied")
    before = (tmp_path / "dms-lb.cfg").read_text()
    code, out = _hook(
        tmp_path, "v2", _v2(sequence=2, address="192.0.2.99"), LB_HAPROXY_CHECK="false"
    )
    assert code == 4 and (tmp_path / "dms-lb.cfg").read_text() == before
    code, out = _hook(tmp_path, "v2", _v2(sequence=3, address="192.0.2.99"), LB_RELOAD="false")
    assert code == 5 and (tmp_path / "dms-lb.cfg").read_text() == before
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["services"]["mailserver"]["address"] == "192.0.2.10"


def test_receiver_script_refuses_a_port_taken_by_another_name(tmp_path: Path) -> None:
    assert _hook(tmp_path, "v2", _v2(sequence=1))[0] == 0
    legacy = {
        "dst-ip": "192.0.2.20",
        "frontend-port": "25",
        "backend-port": "25",
        "action": "add",
        "name": "other",
        "send-proxy": "false",
    }
    code, out = _hook(tmp_path, "funkypenguin", legacy)
    assert code == 3 and "belongs to mailserver" in str(out["reason"])


def test_backoff_grows_with_jitter_and_heartbeat_jitters() -> None:
    from agent.lb.sender import backoff_delay, heartbeat_delay
    from tests.lbkit import lb_settings

    lb = lb_settings(
        ports=[{"name": "smtp", "frontend": 25}],
        targets=[{"url": "https://lb.example/h", "secretFile": "/s"}],
        retry={"initial": 1, "maximum": 8},
        heartbeatInterval=100,
        heartbeatJitter=0.2,
    ).lb
    for attempt, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8), (4, 8)]):
        delays = {backoff_delay(lb, attempt) for _ in range(50)}
        assert all(low <= d <= high for d in delays) and len(delays) > 1
    beats = {heartbeat_delay(lb) for _ in range(50)}
    assert all(80 <= b <= 120 for b in beats) and len(beats) > 1
