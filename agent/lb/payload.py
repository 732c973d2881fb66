"""The two wire formats, their signatures and the receiver's proof that the hook ran. No I/O.

- ``funkypenguin``: what the original phone-home container sent — one POST per port, every
  value a JSON string, the token in ``X-Funkypenguin-Token``.
- ``v2``: one document for all ports, a per-sender increasing ``sequence`` and a
  ``timestamp``, signed with HMAC-SHA256 over the raw body in
  ``X-Hub-Signature-256: sha256=<hex>`` (adnanh/webhook's ``payload-hmac-sha256`` rule).

The receiver example (examples/poor-mans-lb) prints one JSON result line; ``check_proof``
confirms a delivery only when that line matches what was sent. A 2xx with an empty body (the
original receiver's only answer) is a delivery nobody confirmed; a 2xx with anything else that
is not a result line (webhook's ``response-message`` for a hook that may never have run) is
not mistaken for success.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agent.lb.config import FunkypenguinStyle, LbPort

Action = Literal["add", "delete"]
V2_API = "dms-agent.lb/v2"
PROOF_RESULTS = frozenset({"applied", "unchanged", "deleted", "kept"})


@dataclass(frozen=True, slots=True)
class Registration:
    """What the receiver should know: this sender's address and ports for ``name``."""

    name: str
    pod: str
    node: str | None
    address: str
    ports: tuple[LbPort, ...]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to send. ``expect`` is what the proof line must carry."""

    body: bytes
    headers: dict[str, str]
    expect: dict[str, Any]
    port: str | None = None  # funkypenguin: the one port this request registers


def v2_document(reg: Registration, action: Action, sequence: int, now: float) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    return {
        "apiVersion": V2_API,
        "action": action,
        "name": reg.name,
        "pod": reg.pod,
        "node": reg.node,
        "address": reg.address,
        "ports": [
            {
                "name": p.name,
                "frontend": p.frontend,
                "backend": p.backend_port,
                "proxyProtocol": p.proxy_protocol,
            }
            for p in reg.ports
        ],
        "sequence": sequence,
        "timestamp": stamp.replace("+00:00", "Z"),
    }


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def v2_request(reg: Registration, action: Action, sequence: int, now: float, key: bytes) -> Request:
    body = json.dumps(v2_document(reg, action, sequence, now), separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(key, body)}
    return Request(body, headers, {"sequence": sequence, "name": reg.name})


def port_name(reg: Registration, port: LbPort, style: FunkypenguinStyle) -> str:
    """The ``name`` a funkypenguin request carries for ``port``."""
    return f"{style.name_prefix}{port.name}" if style.names == "perPort" else reg.name


def send_proxy_value(enabled: bool, style: FunkypenguinStyle) -> str:
    if style.send_proxy == "keyword":  # the original: the HAProxy keyword, or nothing
        return "send-proxy" if enabled else ""
    return "true" if enabled else "false"


def funkypenguin_requests(
    reg: Registration, action: Action, token: str, style: FunkypenguinStyle
) -> list[Request]:
    """One request per port; values are strings, as the original shell sender wrote them."""
    out = []
    for port in reg.ports:
        name = port_name(reg, port, style)
        doc = {
            "dst-ip": reg.address,
            "frontend-port": str(port.frontend),
            "backend-port": str(port.backend_port),
            "action": action,
            "name": name,
            "send-proxy": send_proxy_value(port.proxy_protocol, style),
        }
        body = json.dumps(doc, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Funkypenguin-Token": token}
        expect = {"name": name, "frontend-port": port.frontend, "action": action}
        out.append(Request(body, headers, expect, port.name))
    return out


def proof_line(text: str) -> dict[str, Any] | None:
    """The receiver's result: the last line of the output that is a JSON object with
    ``result`` (webhook mixes the script's stderr into the response)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "result" in doc:
            return doc
    return None


def unconfirmed(text: str, pattern: str | None) -> bool:
    """A 2xx with nothing in it: adnanh/webhook's answer before a hook without
    ``include-command-output-in-response`` runs. Delivered; whether it applied is unknown."""
    return pattern is None and not text.strip()


def check_proof(text: str, expect: dict[str, Any], pattern: str | None) -> str | None:
    """None when the response proves the hook ran for this request, else the reason."""
    if pattern is not None:
        return None if re.search(pattern, text) else "response does not match expectResponse"
    doc = proof_line(text)
    if doc is None:
        return "no result line from the hook (did it run?)"
    if doc.get("result") not in PROOF_RESULTS:
        return f"hook answered result={str(doc.get('result'))[:40]!r}"
    for key, want in expect.items():
        if str(doc.get(key)) != str(want):
            return f"hook's result is for another request ({key} differs)"
    return None


def rejection(text: str) -> str | None:
    """The receiver's reason when it ran and refused (e.g. a sequence already seen)."""
    doc = proof_line(text)
    if doc is not None and doc.get("result") == "rejected":
        return str(doc.get("reason", "rejected"))[:200]
    return None
