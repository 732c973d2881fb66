"""The checks as the agent runs them: concurrent, published, remediated, escalated."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from agent.checks.metrics import REMEDIATIONS
from agent.checks.probe import PROBE_SCRIPT
from tests.checks_support import RunningChecks
from tests.rig.clamd import Clamd
from tests.rig.dovecot import Dovecot, DovecotFactory
from tests.rig.postfix import Postfix

FAST = {"interval": 0.1, "timeout": 1}


def remediations(check: str, result: str) -> float:
    return REMEDIATIONS.labels(check, result)._value.get()


def probe(verdict_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", PROBE_SCRIPT, "probe", str(verdict_file), "60"],
        capture_output=True,
        text=True,
        timeout=5,
    )


async def test_all_kinds_run_together_and_publish_a_healthy_verdict(
    postfix: Postfix, dovecot: Dovecot, clamd: Clamd, tmp_path: Path
) -> None:
    verdict_file = tmp_path / "verdict"
    checks = [
        {"name": "smtp", "kind": "smtp", "port": postfix.smtp, **FAST},
        {"name": "submission", "kind": "smtp", "port": postfix.submission, **FAST},
        {"name": "imap", "kind": "imap", "port": dovecot.imap, **FAST},
        {"name": "pop3s", "kind": "pop3", "port": dovecot.pop3s, "tls": "implicit", **FAST},
        {"name": "clamd", "kind": "clamd", "socket": str(clamd.socket_path), **FAST},
        {"name": "legacy", "kind": "exec", "commands": ["true", "test -d /"], **FAST},
    ]
    config = {"dmsDefaults": {"enabled": False}, "checks": checks}
    config["verdictFile"] = str(verdict_file)
    async with RunningChecks(config) as run:
        await run.wait_for(lambda: run.ctx.status.health.verdict.value == "healthy")
        assert run.verdicts == ["unknown", "healthy"]  # nothing else on the way
        assert {name: r["ok"] for name, r in run.results.items()} == dict.fromkeys(
            ["smtp", "submission", "imap", "pop3s", "clamd", "legacy"], True
        )
        assert "certificateNotAfter" in run.results["submission"]
        await run.wait_for(lambda: verdict_file.read_text().startswith("healthy "))
        assert probe(verdict_file).returncode == 0


async def test_a_hanging_check_does_not_delay_the_others() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        checks = [
            {"name": "hang", "kind": "exec", "commands": ["sleep 30"], "timeout": 5},
            {"name": "tcp", "kind": "tcp", "port": port, "interval": 0.05, "timeout": 1},
        ]
        async with RunningChecks({"dmsDefaults": {"enabled": False}, "checks": checks}) as run:
            await run.wait_for(lambda: run.results["tcp"]["consecutiveSuccesses"] >= 10)
            tcp = run.results["tcp"]
            hang = run.results["hang"]
    assert tcp["ok"]
    assert hang["lastOk"] is None  # still waiting for its first answer
    assert run.ctx.status.health.verdict.value == "unknown"  # not yet known: not unhealthy


async def test_remediation_restarts_killed_clamd_and_verdict_stays_healthy(
    clamd: Clamd, tmp_path: Path
) -> None:
    before = remediations("clamd", "fixed")
    remediation = {"command": clamd.restart_command(), "grace": 15, "maxActions": 2}
    check = {
        "name": "clamd", "kind": "clamd", "socket": str(clamd.socket_path),
        "failureThreshold": 2, "remediation": remediation, **FAST,
    }  # fmt: skip
    verdict_file = tmp_path / "verdict"
    config = {
        "dmsDefaults": {"enabled": False},
        "checks": [check],
        "verdictFile": str(verdict_file),
    }
    async with RunningChecks(config) as run:
        await run.wait_for(lambda: run.results.get("clamd", {}).get("ok") is True)
        clamd.kill()  # what the OOM killer does
        await run.wait_for(lambda: "remediating" in run.phases["clamd"], 30)
        await run.wait_for(lambda: run.phases["clamd"][-1] == "passing", 30)
        assert probe(verdict_file).returncode == 0
    # the threshold crossed with a remediation set goes straight to remediating (never
    # failing), and the restart brought it back: passing again
    assert run.phases["clamd"] == ["unknown", "passing", "remediating", "passing"]
    assert run.verdicts == ["unknown", "healthy"]  # never unhealthy
    assert run.executor.calls == [clamd.restart_command()]
    assert remediations("clamd", "fixed") == before + 1
    reasons = [e[0] for e in run.events.events]
    assert reasons == ["Remediation", "Remediated"]


async def test_remediation_that_does_not_help_escalates_and_the_probe_fails(
    dovecot_factory: DovecotFactory, tmp_path: Path
) -> None:
    dovecot = dovecot_factory(shared=False)
    verdict_file = tmp_path / "shared" / "verdict"
    check = {
        "name": "imap", "kind": "imap", "port": dovecot.imap, "failureThreshold": 2,
        "remediation": {"command": "true", "grace": 0.3}, **FAST,
    }  # fmt: skip
    config = {"dmsDefaults": {"enabled": False}, "checks": [check]}
    config["verdictFile"] = str(verdict_file)
    async with RunningChecks(config) as run:
        await run.wait_for(lambda: run.ctx.status.health.verdict.value == "healthy")
        dovecot.stop()
        await run.wait_for(lambda: run.ctx.status.health.verdict.value == "unhealthy")
        await run.wait_for(lambda: verdict_file.read_text().startswith("unhealthy "))
        failed = probe(verdict_file)
        assert failed.returncode == 1
        # a stopping Dovecot may still accept for a moment: refused or timed out, both fail
        assert "imap: connect" in failed.stdout or "imap: timeout" in failed.stdout
    assert run.verdicts == ["unknown", "healthy", "unhealthy"]
    assert run.executor.calls == [["sh", "-c", "true"]]
    assert [e[0] for e in run.events.events] == ["Remediation", "RemediationDidNotHelp"]
    # the agent stopped: it says so, and the mailserver's probe passes (fail-open)
    assert verdict_file.read_text().startswith("unknown ")
    assert probe(verdict_file).returncode == 0


async def test_remediation_is_rate_limited_then_escalates_at_once() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    check = {
        "name": "flaky", "kind": "tcp", "port": port, "failureThreshold": 1,
        "remediation": {"command": ["true"], "grace": 0.2, "maxActions": 1}, **FAST,
    }  # fmt: skip
    async with RunningChecks({"dmsDefaults": {"enabled": False}, "checks": [check]}) as run:
        for episode in range(2):
            listener.listen(8)
            await run.wait_for(lambda: run.results.get("flaky", {}).get("phase") == "passing")
            listener.close()
            await run.wait_for(lambda: run.results["flaky"]["phase"] == "failing")
            if episode == 0:
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", port))
    assert len(run.executor.calls) == 1  # the second episode was not remediated
    reasons = [e[0] for e in run.events.events]
    assert reasons == ["Remediation", "RemediationDidNotHelp", "RemediationFailed"]
    assert "not run: 1 runs in 3600s already" in run.events.events[-1][1]


async def test_unhealthy_is_held_then_released_so_a_restarting_mailserver_can_start() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    check = {"name": "smtp", "kind": "tcp", "port": port, "failureThreshold": 1, **FAST}
    config = {
        "dmsDefaults": {"enabled": False},
        "checks": [check],
        "escalation": {"hold": 0.3, "restartGrace": 0.3},
    }
    async with RunningChecks(config) as run:
        await run.wait_for(lambda: run.verdicts[-1] == "healthy")
        listener.close()  # the server dies and stays dead
        await run.wait_for(lambda: run.verdicts[-1] == "unhealthy")
        await run.wait_for(lambda: run.verdicts[-1] == "unknown")
        assert "pausing 0.3s for a restart" in run.ctx.status.health.reasons[0]
        # after the grace: failing again, but not judged again
        judged = "not judged before it has passed once"
        await run.wait_for(lambda: any(judged in r for r in run.ctx.status.health.reasons))
        assert run.verdicts == ["unknown", "healthy", "unhealthy", "unknown"]
        listener = socket.socket()  # the restarted server comes up
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(8)
        await run.wait_for(lambda: run.verdicts[-1] == "healthy")
    listener.close()
