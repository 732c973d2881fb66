"""The verdict file, the fail-open probe script, /healthz, and the checks' settings."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pydantic import TypeAdapter

from agent.checks.config import CheckSpec, ChecksSettings
from agent.checks.defaults import effective_checks
from agent.checks.probe import PROBE_SCRIPT, exec_command
from agent.checks.probes import Outcome
from agent.checks.state import CheckState
from agent.checks.verdict import Board, render, write_atomically
from agent.cli import main
from agent.errors import InvalidDocument
from agent.hub import Hub
from agent.server import make_app
from agent.settings import load_settings
from agent.status import StatusRegistry, Verdict


def run_probe(path: Path, max_age: str = "60") -> subprocess.CompletedProcess[str]:
    argv = ["sh", "-c", PROBE_SCRIPT, "probe", str(path), max_age]
    return subprocess.run(argv, capture_output=True, text=True, timeout=5)


def write(path: Path, verdict: str, age: float, reasons: tuple[str, ...] = ()) -> None:
    write_atomically(path, render(Verdict(verdict), list(reasons), time.time() - age))


def test_probe_fails_only_on_a_fresh_unhealthy(tmp_path: Path) -> None:
    f = tmp_path / "verdict"
    write(f, "unhealthy", 1, ("clamd: connect: Connection refused (failing)",))
    failed = run_probe(f)
    assert failed.returncode == 1
    assert "clamd: connect: Connection refused" in failed.stdout
    for verdict in ("healthy", "unknown"):
        write(f, verdict, 1)
        assert run_probe(f).returncode == 0, verdict


@pytest.mark.parametrize(
    "content",
    [
        None,  # agent never wrote it (absent agent, new pod)
        "",
        "garbage\n",
        "unhealthy\n",
        "unhealthy soon\n",
        f"unhealthy {int(time.time()) - 120}\n",  # stale: the agent died after saying so
        f"unhealthy {int(time.time()) + 3600}\n",  # from the future: clock trouble
    ],
)
def test_probe_passes_when_the_agent_is_absent_or_the_file_is_not_trustworthy(
    tmp_path: Path, content: str | None
) -> None:
    f = tmp_path / "verdict"
    if content is not None:
        f.write_text(content)
    assert run_probe(f).returncode == 0


def test_probe_max_age_argument_and_exec_form(tmp_path: Path) -> None:
    f = tmp_path / "verdict"
    write(f, "unhealthy", 30)
    assert run_probe(f, "10").returncode == 0
    assert run_probe(f, "60").returncode == 1
    argv = exec_command(f, 60)
    assert subprocess.run(argv, capture_output=True, timeout=5).returncode == 1


def test_verdict_file_is_replaced_atomically(tmp_path: Path) -> None:
    f = tmp_path / "dir" / "verdict"
    write(f, "healthy", 0)
    write(f, "unhealthy", 0)
    assert f.read_text().startswith("unhealthy ")
    assert [p.name for p in f.parent.iterdir()] == ["verdict"]  # no temp file left behind


def test_probe_script_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe-script"]) == 0
    assert capsys.readouterr().out == PROBE_SCRIPT
    assert main(["probe-script", "--exec", "--file", "/x/v", "--max-age", "90"]) == 0
    assert json.loads(capsys.readouterr().out)[-2:] == ["/x/v", "90"]


async def test_healthz_reports_failing_checks_in_text_and_json(
    aiohttp_client: type[TestClient],
) -> None:
    spec = TypeAdapter(CheckSpec).validate_python(
        {"name": "imap", "kind": "imap", "failureThreshold": 1}
    )
    state = CheckState(spec)
    status = StatusRegistry()
    board = Board([state], status, Hub())
    board.publish()
    client = await aiohttp_client(make_app(status))  # type: ignore[operator]
    unknown = await client.get("/healthz")
    assert (unknown.status, await unknown.text()) == (200, "unknown\n")
    state.feed(Outcome(True), 1.0)
    state.feed(Outcome(False, "banner", "IMAP greeting '* BYE'"), 2.0)
    board.publish()
    text = await client.get("/healthz")
    assert text.status == 503
    assert await text.text() == "unhealthy\n- imap: banner: IMAP greeting '* BYE' (failing)\n"
    js = await client.get("/healthz", headers={"Accept": "application/json"})
    body = await js.json()
    assert js.status == 503 and body["verdict"] == "unhealthy"
    assert body["checks"]["imap"]["phase"] == "failing"
    assert body["checks"]["imap"]["reason"] == "banner"


def test_dms_defaults_follow_the_environment() -> None:
    settings = ChecksSettings(enabled=True)
    names = [c.name for c in effective_checks(settings, {})]
    assert names == ["smtp", "submission", "imap"]
    env = {"ENABLE_CLAMAV": "1", "ENABLE_RSPAMD": "1", "SMTP_ONLY": "1"}
    checks = {c.name: c for c in effective_checks(settings, env)}
    assert list(checks) == ["smtp", "submission", "clamd", "rspamd"]
    clamd = checks["clamd"]
    assert clamd.remediation is not None
    assert clamd.remediation.command == ["supervisorctl", "restart", "clamav"]
    assert str(getattr(clamd, "socket", "")) == "/var/run/clamav/clamd.ctl"
    assert getattr(checks["submission"], "port", None) == 587
    own = ChecksSettings.model_validate(
        {
            "dmsDefaults": {"disable": ["submission"], "clamdPort": 3310},
            "checks": [{"name": "smtp", "kind": "tcp", "port": 2525}],
        }
    )
    mine = {c.name: c for c in effective_checks(own, {"ENABLE_CLAMAV": "1"})}
    assert list(mine) == ["imap", "clamd", "smtp"]
    assert mine["smtp"].kind == "tcp" and getattr(mine["clamd"], "port", None) == 3310


def test_bad_check_settings_give_located_errors(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "checks:\n"
        "  enabled: true\n"
        "  checks:\n"
        "    - {name: ok, kind: tcp, port: 25}\n"
        "    - name: clam\n"
        "      kind: clamd\n"
        "      port: 99999\n"
    )
    with pytest.raises(InvalidDocument) as caught:
        load_settings(path, environ={})
    text = "\n".join(str(e) for e in caught.value.errors)
    assert f"{path}:5: checks.checks[1].clamd.port" in text


def test_summary_times_are_unix_times() -> None:
    spec = TypeAdapter(CheckSpec).validate_python({"name": "t", "kind": "tcp", "port": 1})
    state = CheckState(spec)
    state.feed(Outcome(True), now=12.5, wall=1_700_000_000.0)
    board = Board([state], StatusRegistry(), Hub())
    board.publish()
    summary = board.hub.check_results.value["t"]
    assert summary["lastChecked"] == summary["lastSuccess"] == 1_700_000_000.0
    assert summary["ok"] is True and summary["phase"] == "passing"
