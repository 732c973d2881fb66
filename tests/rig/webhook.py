"""adnanh/webhook (Debian ``webhook``) on a free loopback port, serving a hooks.json the test
gives, with ``-verbose`` (its log is how tests see whether a hook was executed).

    def test_x(webhook):
        hook = webhook.start(hooks, env={"SECRET": "k"}, template=True)
        url = hook.url("my-hook")

``start`` waits until the port answers AND the hooks loaded (webhook keeps serving with no
hooks when its file is invalid, which would turn every request into a 404). Logs go into the
report of a failing test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.logs import keep_logs
from tests.rig.proc import Daemon, free_port, require_binary


class Webhook:
    def __init__(self, daemon: Daemon, port: int, scheme: str) -> None:
        self.daemon = daemon
        self.port = port
        self.scheme = scheme

    def url(self, hook_id: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/hooks/{hook_id}"

    def logs(self) -> str:
        return self.daemon.logs()

    def triggered(self, hook_id: str) -> int:
        """How many requests matched the hook's trigger rule (from the verbose log)."""
        return self.logs().count(f"] {hook_id} hook triggered successfully")

    def stop(self) -> None:
        self.daemon.stop()


class WebhookFactory:
    def __init__(self, request: pytest.FixtureRequest | None, workdir: Path, binary: str) -> None:
        self.request = request
        self.workdir = workdir
        self.binary = binary
        self.started: list[Webhook] = []

    def start(
        self,
        hooks: list[dict[str, Any]] | Path,
        env: dict[str, str] | None = None,
        template: bool = False,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> Webhook:
        """Start webhook; ``tls`` = (cert, key) serves HTTPS. ``port`` lets a test restart
        a receiver on the port its client already knows."""
        n = len(self.started)
        if isinstance(hooks, Path):
            hooks_path = hooks
        else:
            hooks_path = self.workdir / f"hooks-{n}.json"
            hooks_path.write_text(json.dumps(hooks, indent=1))
        port = port or free_port()
        argv = [self.binary, "-hooks", str(hooks_path), "-ip", "127.0.0.1"]
        argv += ["-port", str(port), "-verbose"]
        if template:
            argv.append("-template")
        if tls is not None:
            argv += ["-secure", "-cert", str(tls[0]), "-key", str(tls[1])]
        daemon = Daemon(f"webhook-{n}", argv, self.workdir, env=env)
        if self.request is not None:  # None outside pytest (bench/)
            keep_logs(self.request, daemon)
        hook = Webhook(daemon, port, "https" if tls else "http")
        self.started.append(hook)
        daemon.wait_tcp("127.0.0.1", port)
        # webhook listens before it has read its hooks: wait for its "serving" line.
        deadline = time.monotonic() + 10
        while "serving hooks on" not in (log := daemon.logs()):
            if time.monotonic() > deadline or daemon.proc.poll() is not None:
                break
            time.sleep(0.01)
        if "couldn't load hooks" in log or "loaded:" not in log:
            raise RuntimeError(f"webhook did not load {hooks_path}:\n{log}")
        return hook

    def stop_all(self) -> None:
        for hook in self.started:
            hook.stop()


@pytest.fixture
def webhook(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebhookFactory]:
    binary = require_binary("webhook", "webhook")
    workdir = tmp_path / "webhook"
    workdir.mkdir()
    factory = WebhookFactory(request, workdir, binary)
    yield factory
    factory.stop_all()
