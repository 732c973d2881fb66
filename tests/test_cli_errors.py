"""The first hour's rough edges, each as a user meets it: the installed `dms-agent` in a
subprocess, one clear line and the exit code the README's table gives."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.cli_support import run_cli, start_agent, wait_for_log
from tests.rig.proc import free_port

STATE = "apiVersion: dms-agent/v1\naccounts:\n  alice@example.com: {}\n"


def settings_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(body, "utf-8")
    return path


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_run_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = settings_file(tmp_path, f"server: {{port: {port}}}\ndms: {{configDir: null}}\n")
        proc = run_cli("run", "--config", str(config), "--log-level", "error")
    assert proc.returncode == 69
    line = one_line(proc.stderr)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line


def test_run_without_settings_says_what_it_waits_for(tmp_path: Path) -> None:
    port = free_port()
    env = {"DMS_AGENT_SERVER__PORT": str(port), "DMS_AGENT_DMS__CONFIG_DIR": str(tmp_path)}
    agent = start_agent(tmp_path, env=env)
    try:
        log = wait_for_log(agent, "no sources")
    finally:
        agent.stop()
    assert f"serving http://127.0.0.1:{port}" in log
    assert "--config FILE with `sources:`" in log
    assert agent.proc.returncode == 0


def test_start_up_names_url_sources_executor_folder_and_metrics_label(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "mailserver.yaml").write_text(STATE, "utf-8")
    config_dir = tmp_path / "dms-config"
    config_dir.mkdir()
    port = free_port()
    config = settings_file(
        tmp_path,
        f"server: {{port: {port}}}\nsources: [{{kind: path, path: {state}}}]\n"
        f"dms: {{configDir: {config_dir}, executor: {{kind: file}}}}\n"
        "reconcile: {mode: observe}\n",
    )
    agent = start_agent(tmp_path, "--config", str(config))
    try:
        log = wait_for_log(agent, "executor: file")
        # the start-up line comes before the source's first read: wait for its series
        deadline, metrics = time.monotonic() + 20, ""
        while f'source="path:{state}"' not in metrics and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            time.sleep(0.05)
    finally:
        agent.stop()
    assert f"serving http://127.0.0.1:{port}" in log
    assert f"sources: path {state}" in log
    assert f"DMS config folder: {config_dir}" in log
    assert f'source="path:{state}"' in metrics and "path//" not in metrics


def test_import_from_a_missing_config_folder_is_an_error(tmp_path: Path) -> None:
    missing, out = tmp_path / "no-such-config", tmp_path / "out"
    config = settings_file(tmp_path, f"dms: {{configDir: {missing}}}\n")
    proc = run_cli("import", "--config", str(config), "-o", str(out))
    assert proc.returncode == 1
    assert f"dms.configDir {missing}: no such folder" in one_line(proc.stderr)
    assert not missing.exists() and not out.exists()


def test_apply_never_creates_a_mistyped_config_folder(tmp_path: Path) -> None:
    (tmp_path / "mailserver.yaml").write_text(STATE, "utf-8")
    (tmp_path / "ledger.key").write_text("a test ledger key, long enough\n", "utf-8")
    typo = tmp_path / "dms-confg"
    config = settings_file(
        tmp_path,
        f"dms: {{configDir: {typo}, executor: {{kind: file}}}}\n"
        f"reconcile: {{ledgerKeyFile: {tmp_path / 'ledger.key'}}}\n",
    )
    for command in ("apply", "plan"):
        proc = run_cli(command, "--config", str(config), "--source", str(tmp_path))
        assert proc.returncode == 1, command
        assert f"dms.configDir {typo}: no such folder" in one_line(proc.stderr)
    assert not typo.exists()


def test_plan_detailed_exitcode_keeps_2_for_changes_only(tmp_path: Path) -> None:
    config = settings_file(tmp_path, "server: {port: not-a-port}\n")
    assert run_cli("plan", "--config", str(config)).returncode == 2
    assert run_cli("plan", "--config", str(config), "--detailed-exitcode").returncode == 1


def test_dkim_records_without_keys_says_where_it_looked(tmp_path: Path) -> None:
    config = settings_file(tmp_path, f"dms: {{configDir: {tmp_path}}}\n")
    proc = run_cli("dkim", "records", "--config", str(config))
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"no opendkim DKIM key in {tmp_path}" in one_line(proc.stderr)
    proc = run_cli("dkim", "records", "--config", str(config), "example.com")
    assert "key for example.com in" in one_line(proc.stderr)


def run_probe(script: str, *args: str) -> int:
    return subprocess.run(["sh", "-c", script, "probe", *args], timeout=10).returncode


def test_probe_script_flags_become_its_defaults(tmp_path: Path) -> None:
    verdict = tmp_path / "a verdict"
    verdict.write_text(f"unhealthy {int(time.time()) - 40}\n", "utf-8")  # 40 s old
    flagged = run_cli("probe-script", "--file", str(verdict), "--max-age", "30").stdout
    assert run_probe(flagged) == 0  # 40 s is stale for a 30 s max age
    assert run_probe(flagged, str(verdict), "60") == 1  # arguments still override
    roomy = run_cli("probe-script", "--file", str(verdict), "--max-age", "120").stdout
    assert run_probe(roomy) == 1
    assert run_probe(run_cli("probe-script").stdout, "", "30") == 0  # no file: fail-open
