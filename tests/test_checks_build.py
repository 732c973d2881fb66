"""Wiring: the builder, initialDelay, and the metrics' exposition (checked by promtool)."""

from __future__ import annotations

import socket
import subprocess

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
    """A delayed check has not run while an undelayed one beside it has run many times; the
    delay's figure is in bench/deadlines.py."""
    from agent.metrics import REGISTRY

    def attempts(name: str) -> float:
        count = REGISTRY.get_sample_value("dms_agent_check_duration_seconds_count", {"check": name})
        return count or 0.0

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        now = {"name": "delay-now", "kind": "tcp", "port": port, "interval": 0.02}
        later = {**now, "name": "delay-later", "initialDelay": 3600}
        before = attempts("delay-later")
        async with RunningChecks(
            {"dmsDefaults": {"enabled": False}, "checks": [now, later]}
        ) as run:
            start = attempts("delay-now")
            await run.wait_for(lambda: attempts("delay-now") >= start + 5, 10)
            assert attempts("delay-later") == before
            assert run.results["delay-now"]["lastOk"] is True
            assert run.results.get("delay-later", {}).get("lastOk") is None
        soon = {**now, "name": "delay-soon", "initialDelay": 0.2}
        async with RunningChecks({"dmsDefaults": {"enabled": False}, "checks": [soon]}) as run:
            await run.wait_for(lambda: run.results["delay-soon"]["lastOk"] is True, 10)


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
