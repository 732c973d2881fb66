"""Wiring: the builder, initialDelay, and the metrics' exposition (checked by promtool)."""

from __future__ import annotations

import socket
import subprocess
import time

from prometheus_client import generate_latest

from agent.app import BUILDERS, AgentContext
from agent.checks import build
from agent.metrics import REGISTRY
from agent.settings import Settings
from agent.status import StatusRegistry
from tests.checks_support import RunningChecks
from tests.rig.proc import require_binary


def context(checks: dict[str, object], environment: dict[str, str] | None = None) -> AgentContext:
    settings = Settings.model_validate(
        {"checks": checks, "dms": {"environment": environment or {}}}
    )
    return AgentContext(settings=settings, status=StatusRegistry())


def test_builder_is_registered_and_follows_the_settings() -> None:
    assert "agent.checks:build" in BUILDERS
    assert build(context({"enabled": False})) == []
    names = [c.name for c in build(context({"enabled": True}, {"ENABLE_CLAMAV": "1"}))]
    assert names == ["check-smtp", "check-submission", "check-imap", "check-clamd"]
    with_file = build(context({"enabled": True, "verdictFile": "/tmp/x/verdict"}))
    assert with_file[-1].name == "checks-verdict-file"


async def test_initial_delay_is_honoured() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        check = {"name": "t", "kind": "tcp", "port": port, "initialDelay": 0.5, "interval": 0.05}
        async with RunningChecks({"dmsDefaults": {"enabled": False}, "checks": [check]}) as run:
            started = time.monotonic()
            await run.wait_for(lambda: run.results["t"]["lastOk"] is True, 3)
            assert time.monotonic() - started >= 0.45


def test_metrics_pass_promtool_lint() -> None:
    promtool = require_binary("promtool", "prometheus")
    from agent.checks.metrics import CHECK_CERT_NOT_AFTER, CHECK_DURATION, REMEDIATIONS

    CHECK_DURATION.labels("lint").observe(0.01)
    CHECK_CERT_NOT_AFTER.labels("lint").set(1.0)
    REMEDIATIONS.labels("lint", "ran").inc()
    done = subprocess.run(
        [promtool, "check", "metrics"], input=generate_latest(REGISTRY), capture_output=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"dms_agent_check_duration_seconds_bucket" in generate_latest(REGISTRY)
