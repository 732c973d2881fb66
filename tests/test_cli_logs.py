"""Logs a person reads: the embedded demo starts without pod-only warnings and with lines of a
readable length; a fixed document says it was accepted after the rejected one."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from agent.logs import MAX_MESSAGE
from tests.cli_support import ROOT, start_agent, wait_for_log
from tests.rig.proc import free_port


def test_the_embedded_demo_starts_quietly(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "state", tmp_path / "examples" / "state")
    # the ledger key is made on the first run (createLedgerKey), as for a new user
    shutil.copy(ROOT / "examples" / "local.yaml", tmp_path / "examples" / "local.yaml")
    port = free_port()
    agent = start_agent(
        tmp_path, "--config", "examples/local.yaml", env={"DMS_AGENT_SERVER__PORT": str(port)}
    )
    try:
        wait_for_log(agent, "event Reconciled")
        log = wait_for_log(agent, "event DkimRecord")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
            status = json.load(resp)["components"]
    finally:
        agent.stop()
    lines = log.splitlines()
    assert [line for line in lines if " WARNING " in line or " ERROR " in line] == []
    assert status["dkim"]["state"] == "ok", status["dkim"]
    assert all(len(line) < MAX_MESSAGE + 80 for line in lines), max(lines, key=len)
    record = next(line for line in lines if "DkimRecord" in line)
    assert "`dms-agent dkim records` prints it" in record and record.endswith(" chars)")


def test_a_fixed_document_is_logged_as_accepted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    doc = state / "mailserver.yaml"
    doc.write_text("apiVersion: dms-agent/v1\naccounts:\n  alice@example.com: {}\n")
    port = free_port()
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"server: {{port: {port}}}\nsources: [{{kind: path, path: {state}}}]\n"
        "dms: {configDir: null}\nreconcile: {mode: observe}\ndkim: {enabled: false}\n"
    )
    agent = start_agent(tmp_path, "--config", str(settings))
    try:
        wait_for_log(agent, "desired state accepted: 1 document(s), generation 1")
        doc.write_text("apiVersion: dms-agent/v1\naccounts:\n  alice@example.com: {quta: 1G}\n")
        wait_for_log(agent, "desired state rejected")
        doc.write_text("apiVersion: dms-agent/v1\naccounts:\n  alice@example.com: {quota: 1G}\n")
        log = wait_for_log(agent, "accepted after the rejected version")
    finally:
        agent.stop()
    assert "accepted after the rejected version: 1 document(s), generation 2" in log
