"""The webhook and haproxy fixtures themselves: start, answer, reload, stop."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

from tests.rig.haproxy import HAProxy
from tests.rig.proc import free_port
from tests.rig.webhook import WebhookFactory


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_webhook_runs_the_hook_and_logs_it(webhook: WebhookFactory, tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    script.write_text('#!/bin/sh\necho "ran with $1"\n')
    script.chmod(0o755)
    hooks = [
        {
            "id": "t",
            "execute-command": str(script),
            "include-command-output-in-response": True,
            "trigger-rule-mismatch-http-response-code": 403,
            "pass-arguments-to-command": [{"source": "payload", "name": "x"}],
            "trigger-rule": {
                "match": {
                    "type": "value",
                    "value": "{{ getenv `TOKEN` | js }}",
                    "parameter": {"source": "header", "name": "X-Token"},
                }
            },
        }
    ]
    hook = webhook.start(hooks, env={"TOKEN": "abc"}, template=True)
    headers = {"Content-Type": "application/json", "X-Token": "abc"}
    ok = _post(hook.url("t"), b'{"x": "42"}', headers)
    assert ok == (200, "ran with 42\n")
    denied = _post(hook.url("t"), b'{"x": "1"}', {"Content-Type": "application/json"})
    assert denied[0] == 403
    assert hook.triggered("t") == 1
    hook.stop()
    assert hook.daemon.proc.poll() is not None


def test_webhook_refuses_to_pretend_with_broken_hooks(webhook: WebhookFactory) -> None:
    try:
        webhook.start([{"id": "x", "execute-command": "/bin/true", "trigger-rule": "{{"}])
    except RuntimeError as exc:
        assert "did not load" in str(exc)
    else:
        raise AssertionError("a hooks file that does not load must fail the fixture")


def test_haproxy_forwards_and_reloads(haproxy: HAProxy, tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    backend_port = server.getsockname()[1]
    front = free_port()
    extra = tmp_path / "extra.cfg"
    extra.write_text("")
    haproxy.start(haproxy.base_config(), extra)
    extra.write_text(
        f"frontend f\n    bind 127.0.0.1:{front}\n    default_backend b\n"
        f"backend b\n    server s 127.0.0.1:{backend_port}\n"
    )
    haproxy.reload()
    assert haproxy.loads() == 2
    with socket.create_connection(("127.0.0.1", front), timeout=5) as client:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"hello\n")
            assert client.recv(16) == b"hello\n"
    server.close()
    haproxy.stop()
    assert haproxy.daemon is not None and haproxy.daemon.proc.poll() is not None
