#!/usr/bin/env python3
"""Receiver for dms-agent's poor-man's-LB webhook, run by adnanh/webhook on the HAProxy host.

    dms-lb-hook.py v2 '<json document>'            (hook "dms-lb", HMAC-signed)
    dms-lb-hook.py funkypenguin '<json document>'  (hook "update-haproxy", token)

It keeps the registrations in a state file, writes one HAProxy frontend and backend per port
into its own config file, checks the result with `haproxy -c`, and reloads HAProxy only when
the file changed. Python 3 standard library only.

The last line of output is a JSON result that dms-agent checks (webhook returns a bare 200 for
a hook that never ran, so the agent does not trust the status code alone):
  {"result": "applied" | "unchanged" | "deleted" | "kept" | "rejected" | "error", ...}
Exit status: 0 done, 2 bad input, 3 rejected (replay, too old, port taken), 4 `haproxy -c`
refused the config, 5 reload failed (the previous config is restored).

Environment (set it in webhook's service or in hooks.json):
  LB_STATE_DIR       state and lock file            (default /var/lib/dms-lb)
  LB_HAPROXY_CONFIG  the file this script owns      (default /etc/haproxy/dms-lb.cfg)
  LB_HAPROXY_CHECK   check command; `-f <candidate>` is appended
                     (default "haproxy -c -f /etc/haproxy/haproxy.cfg")
  LB_RELOAD          reload command                 (default "systemctl reload haproxy")
  LB_BIND            address frontends bind to      (default "*")
  LB_MAX_AGE         v2: refuse documents older than this many seconds; 0: off (default 900)
  LB_ALLOWED_PORTS   comma-separated frontend ports a sender may claim (default: any)
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
POD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")  # a pod name may be 253 long
HEADER = "# Written by dms-lb-hook from webhook requests. Do not edit: it is rewritten.\n"


class Refused(Exception):
    """The request is refused; ``code`` is the exit status, ``result`` the JSON result."""

    def __init__(self, code: int, result: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.result, self.reason = code, result, reason


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


# ---- input ------------------------------------------------------------------------------


def bad(reason: str) -> Refused:
    return Refused(2, "error", reason)


def get_name(value: Any, what: str, pattern: re.Pattern[str] = NAME) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise bad(f"{what} must match {pattern.pattern}")
    return value


def get_port(value: Any, what: str) -> int:
    text = str(value).strip() if isinstance(value, (int, str)) else ""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise bad(f"{what} must be a port number 1-65535")
    port = int(text)
    allowed = env("LB_ALLOWED_PORTS", "").strip()
    if what.endswith("frontend") and allowed:
        if port not in {int(p) for p in allowed.split(",") if p.strip()}:
            raise Refused(3, "rejected", f"frontend port {port} is not in LB_ALLOWED_PORTS")
    return port


def get_address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise bad("address must be an IP address") from None


def get_bool(value: Any) -> bool:
    """JSON true, "true"/"yes"/"1"/"on", or the original sender's "send-proxy" (its "no" is "")."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "yes", "1", "on", "send-proxy")


def get_action(value: Any) -> str:
    if value not in ("add", "delete"):
        raise bad("action must be add or delete")
    return str(value)


def parse_v2(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("apiVersion") != "dms-agent.lb/v2":
        raise bad("apiVersion must be dms-agent.lb/v2")
    sequence = doc.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence <= 0:
        raise bad("sequence must be a positive integer")
    ports = doc.get("ports")
    if not isinstance(ports, list) or not ports:
        raise bad("ports must be a non-empty list")
    parsed = []
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            raise bad(f"ports[{i}] must be an object")
        parsed.append(
            {
                "name": get_name(p.get("name"), f"ports[{i}].name"),
                "frontend": get_port(p.get("frontend"), f"ports[{i}].frontend"),
                "backend": get_port(p.get("backend"), f"ports[{i}].backend"),
                "proxy": get_bool(p.get("proxyProtocol", False)),
            }
        )
    fronts = [p["frontend"] for p in parsed]
    if len(set(fronts)) != len(fronts):
        raise bad("ports: a frontend port appears twice")
    return {
        "action": get_action(doc.get("action")),
        "name": get_name(doc.get("name"), "name"),
        "pod": get_name(doc.get("pod"), "pod", POD),
        "node": str(doc.get("node") or "")[:253],
        "address": get_address(doc.get("address")),
        "ports": parsed,
        "sequence": sequence,
        "timestamp": parse_time(doc.get("timestamp")),
    }


def parse_time(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise bad("timestamp must be an ISO 8601 time") from None


def parse_legacy(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": get_action(doc.get("action")),
        "name": get_name(doc.get("name"), "name"),
        "address": get_address(doc.get("dst-ip")),
        "frontend": get_port(doc.get("frontend-port"), "frontend-port frontend"),
        "backend": get_port(doc.get("backend-port"), "backend-port"),
        "proxy": get_bool(doc.get("send-proxy", False)),
    }


# ---- state ------------------------------------------------------------------------------


def load_state(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        state = {}
    for key in ("services", "senders", "legacy"):
        state.setdefault(key, {})
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, path)


def apply_v2(state: dict[str, Any], req: dict[str, Any]) -> str:
    max_age = float(env("LB_MAX_AGE", "900"))
    age = datetime.now(UTC).timestamp() - req["timestamp"]
    if max_age > 0 and age > max_age:
        raise Refused(3, "rejected", f"document is {age:.0f}s old (LB_MAX_AGE {max_age:g})")
    last = state["senders"].get(req["pod"], 0)
    if req["sequence"] <= last:
        raise Refused(3, "rejected", f"sequence {req['sequence']} already seen (last {last})")
    state["senders"][req["pod"]] = req["sequence"]
    current = state["services"].get(req["name"])
    if req["action"] == "delete":
        # Only the registration it names: a pod that moved away must not cut its successor.
        if current is None or current["address"] != req["address"]:
            return "kept"
        del state["services"][req["name"]]
        return "deleted"
    state["services"][req["name"]] = {
        k: req[k] for k in ("address", "ports", "pod", "node", "sequence")
    }
    return "applied"


def apply_legacy(state: dict[str, Any], req: dict[str, Any]) -> str:
    key = f"{req['name']}/{req['frontend']}"
    current = state["legacy"].get(key)
    if req["action"] == "delete":
        if current is None or current["address"] != req["address"]:
            return "kept"
        del state["legacy"][key]
        return "deleted"
    state["legacy"][key] = {k: req[k] for k in ("name", "address", "frontend", "backend", "proxy")}
    return "applied"


# ---- HAProxy ----------------------------------------------------------------------------


def endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def entries(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every forwarded port; a frontend port belongs to one registration only."""
    out: list[dict[str, Any]] = []
    for name, svc in sorted(state["services"].items()):
        for p in svc["ports"]:
            entry = {**p, "service": name, "port": p["name"], "address": svc["address"]}
            out.append({**entry, "owner": f"{name} (v2)"})
    for item in state["legacy"].values():
        entry = {**item, "service": item["name"], "port": str(item["frontend"])}
        out.append({**entry, "owner": f"{item['name']} (funkypenguin)"})
    owners: dict[int, str] = {}
    for e in out:
        owner = owners.setdefault(e["frontend"], e["owner"])
        if owner != e["owner"]:
            raise Refused(3, "rejected", f"frontend port {e['frontend']} belongs to {owner}")
    return sorted(out, key=lambda e: e["frontend"])


def render(state: dict[str, Any]) -> str:
    bind = env("LB_BIND", "*")
    parts = [HEADER]
    for e in entries(state):
        label = f"dmslb_{e['service']}_{e['frontend']}"
        proxy = " send-proxy" if e["proxy"] else ""
        parts.append(
            f"\n# {e['service']} {e['port']}\n"
            f"frontend {label}\n"
            f"    mode tcp\n"
            f"    bind {endpoint(bind, e['frontend'])}\n"
            f"    default_backend {label}\n"
            f"\nbackend {label}\n"
            f"    mode tcp\n"
            f"    server {e['service']}_{e['port']} {endpoint(e['address'], e['backend'])}{proxy}\n"
        )
    return "".join(parts)


def run(command: list[str]) -> tuple[int, str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return done.returncode, (done.stdout + done.stderr).strip()


def install(text: str) -> bool:
    """Check, write and reload; False when the file already says exactly this."""
    target = Path(env("LB_HAPROXY_CONFIG", "/etc/haproxy/dms-lb.cfg"))
    old = target.read_text() if target.exists() else None
    if old == text:
        return False
    fd, name = tempfile.mkstemp(prefix=".dms-lb-", suffix=".cfg", dir=target.parent)
    candidate = Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        check = env("LB_HAPROXY_CHECK", "haproxy -c -f /etc/haproxy/haproxy.cfg")
        code, output = run([*shlex.split(check), "-f", str(candidate)])
        if code != 0:
            raise Refused(4, "error", f"haproxy -c refused the new config: {output[-500:]}")
        os.chmod(candidate, 0o644)
        os.replace(candidate, target)
    finally:
        candidate.unlink(missing_ok=True)
    code, output = run(shlex.split(env("LB_RELOAD", "systemctl reload haproxy")))
    if code != 0:
        if old is None:
            target.unlink()
        else:
            target.write_text(old)
        raise Refused(5, "error", f"reload failed, previous config restored: {output[-500:]}")
    return True


# ---- main -------------------------------------------------------------------------------


def handle(fmt: str, payload: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except ValueError:
        raise bad("payload is not JSON") from None
    if not isinstance(doc, dict):
        raise bad("payload must be a JSON object")
    if fmt == "v2":
        req = parse_v2(doc)
    elif fmt == "funkypenguin":
        req = parse_legacy(doc)
    else:
        raise bad(f"unknown format {fmt!r}")
    state_dir = Path(env("LB_STATE_DIR", "/var/lib/dms-lb"))
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # webhook runs concurrent requests in parallel
        state = load_state(state_dir / "state.json")
        result = apply_v2(state, req) if fmt == "v2" else apply_legacy(state, req)
        changed = install(render(state))
        save_state(state_dir / "state.json", state)
    if result == "applied" and not changed:
        result = "unchanged"
    out = {"result": result, "name": req["name"], "action": req["action"]}
    if fmt == "v2":
        out["sequence"] = req["sequence"]
    else:
        out["frontend-port"] = req["frontend"]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(json.dumps({"result": "error", "reason": "usage: dms-lb-hook.py FORMAT PAYLOAD"}))
        return 2
    try:
        out = handle(argv[1], argv[2])
    except Refused as exc:
        print(exc.reason, file=sys.stderr)
        sys.stderr.flush()
        print(json.dumps({"result": exc.result, "reason": exc.reason}))
        return exc.code
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
