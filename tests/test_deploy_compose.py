"""examples/docker-compose/: valid against the compose specification's JSON schema (the copy
check-jsonschema ships), wired the way the agent needs (one network namespace, one config
folder, one env file, the ledger key as a secret, health on the host's loopback), its agent
settings loaded by the agent's own loader, and prepare.sh run for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.checks.defaults import effective_checks
from agent.dms_environment import read_environment
from agent.settings import load_settings
from tests.deploy import render
from tests.rig.proc import free_port, require_binary, wait_for_port

EXAMPLE = render.ROOT / "examples" / "docker-compose"
COMPOSE = yaml.safe_load((EXAMPLE / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
AGENT_UID = 10001


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    cli = render.require_tool("check-jsonschema", "pip install '.[test]'")
    return render.run([cli, "--builtin-schema", "vendor.compose-spec", str(path)])


def test_compose_file_is_valid_against_the_compose_spec_schema(tmp_path: Path) -> None:
    proc = _validate(EXAMPLE / "compose.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the check can fail: a misspelt key and a bad port are refused
    broken = {**COMPOSE, "services": {**SERVICES, "mailserver": {**SERVICES["mailserver"]}}}
    broken["services"]["mailserver"]["restrat"] = "always"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(broken))
    assert _validate(tmp_path / "bad.yaml").returncode != 0


def _mounts(service: str) -> dict[str, Path]:
    """Container path -> host path (relative to the example) of a service's bind mounts."""
    out = {}
    for volume in SERVICES[service]["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            out[target.rstrip("/")] = (EXAMPLE / source).resolve()
    return out


def _host_path(service: str, container_path: str) -> Path:
    for target, source in sorted(_mounts(service).items(), key=lambda kv: -len(kv[0])):
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted into {service}")


def test_agent_is_built_here_and_shares_dms_network_and_config_folder() -> None:
    agent, dms = SERVICES["dms-agent"], SERVICES["mailserver"]
    build = (EXAMPLE / agent["build"]["context"]).resolve()
    assert build == render.ROOT and (build / agent["build"]["dockerfile"]).is_file()
    assert agent["network_mode"] == "service:mailserver"  # checks reach DMS on 127.0.0.1
    assert (
        _mounts("dms-agent")["/tmp/docker-mailserver"]
        == _mounts("mailserver")["/tmp/docker-mailserver"]
    )
    assert "clamav-socket:/var/run/clamav" in agent["volumes"]
    assert "clamav-socket:/var/run/clamav" in dms["volumes"]
    # the image's non-root user, as the Dockerfile declares it
    dockerfile = (render.ROOT / "Dockerfile").read_text()
    assert f"USER {AGENT_UID}:{AGENT_UID}" in dockerfile
    assert agent["user"] == f"{AGENT_UID}:{AGENT_UID}"
    assert agent["read_only"] is True and "/tmp" in agent["tmpfs"]


def test_agent_settings_load_and_follow_dms_env_file(tmp_path: Path) -> None:
    settings_path = _host_path("dms-agent", "/etc/dms-agent/settings.yaml")
    text = settings_path.read_text()
    env_in_container = yaml.safe_load(text)["dms"]["environmentFrom"]
    env_on_host = _host_path("dms-agent", env_in_container)
    # the agent's env file is the file DMS's env_file names
    assert env_on_host == (EXAMPLE / SERVICES["mailserver"]["env_file"]).resolve()
    doc = yaml.safe_load(text)
    doc["dms"]["environmentFrom"] = str(env_on_host)
    local = tmp_path / "settings.yaml"
    local.write_text(yaml.safe_dump(doc))
    settings = load_settings(local, environ={})
    env = read_environment(env_on_host)
    assert settings.dms.environment == env
    names = [c.name for c in effective_checks(settings.checks, settings.dms.environment)]
    assert names == ["smtp", "submission", "imap", "clamd", "rspamd"]
    assert settings.dms.executor.kind == "file"
    # health and metrics: on every interface of the shared namespace, published to the host's
    # loopback only
    assert settings.server.host == "0.0.0.0"
    assert (
        f"127.0.0.1:{settings.server.port}:{settings.server.port}"
        in SERVICES["mailserver"]["ports"]
    )
    # the ledger key is the compose secret; the ledger lives in the shared config folder
    assert str(settings.reconcile.ledger_key_file) == "/run/secrets/ledger.key"
    assert "ledger.key" in SERVICES["dms-agent"]["secrets"]
    assert COMPOSE["secrets"]["ledger.key"]["file"] == "./secrets/ledger.key"
    # /status and the page, reached through the published port (not loopback in the container)
    assert str(settings.server.status_token_file) == "/run/secrets/status.token"
    assert "status.token" in SERVICES["dms-agent"]["secrets"]
    assert COMPOSE["secrets"]["status.token"]["file"] == "./secrets/status.token"
    assert str(settings.reconcile.ledger_path).startswith("/tmp/docker-mailserver/.dms-agent/")
    # the state the agent reads is the example's own
    (source,) = settings.sources
    assert _host_path("dms-agent", str(source.path)) == (EXAMPLE / "state").resolve()


def _as_agent() -> None:
    os.setgroups([])
    os.setgid(AGENT_UID)
    os.setuid(AGENT_UID)


@pytest.fixture
def example_copy() -> Any:
    """A copy of the example where uid 10001 can reach it (pytest's tmp folders are 0700)."""
    top = Path(tempfile.mkdtemp(prefix="compose-example-", dir="/tmp"))
    top.chmod(0o755)
    shutil.copytree(EXAMPLE, top / "example")
    yield top / "example"
    shutil.rmtree(top)


def test_prepare_script_gives_the_agent_the_config_folder_and_makes_a_key(
    example_copy: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("prepare.sh chowns to uid 10001: needs root, as documented")
    require_binary("openssl", "openssl")
    copy = example_copy
    for _ in range(2):
        proc = subprocess.run(["sh", str(copy / "prepare.sh")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        if _ == 0:
            key = (copy / "secrets" / "ledger.key").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", key)
    assert (copy / "secrets" / "ledger.key").read_text() == key  # kept on the second run
    assert (copy / "secrets").stat().st_mode & 0o777 == 0o700
    config = copy / "docker-data" / "dms" / "config"
    assert (config.stat().st_uid, config.stat().st_gid) == (AGENT_UID, AGENT_UID)
    # compose bind-mounts the key file itself (the private folder is not crossed): uid 10001
    # owns it and nobody else may read it (the agent refuses a key others can read)
    for secret in ("ledger.key", "status.token"):
        st = (copy / "secrets" / secret).stat()
        assert (st.st_uid, st.st_mode & 0o777) == (AGENT_UID, 0o600), secret
    assert re.fullmatch(r"[0-9a-f]{48}\n", (copy / "secrets" / "status.token").read_text())
    # uid 10001 writes the config folder: its lock, its ledger folder, DMS's files
    probe = (
        "import pathlib, sys; c = pathlib.Path(sys.argv[1]);"
        "(c / 'dms-agent.lock').touch(); (c / '.dms-agent' / 'ledger.json').write_text('{}');"
        "(c / 'postfix-accounts.cf').write_text('')"
    )
    proc = subprocess.run(
        ["python3", "-c", probe, str(config)],
        capture_output=True,
        text=True,
        preexec_fn=_as_agent,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_agent_runs_with_the_example_settings(example_copy: Path) -> None:
    """The real `dms-agent run` with the example's settings (paths moved from the container's
    to the copy's, the port to a free one on loopback): it serves health and metrics, and its
    file executor writes DMS's account files into the folder prepare.sh made. (It runs as this
    test's user: this machine's interpreter is not reachable by uid 10001; that uid writing the
    folder is shown by the prepare.sh test above.)"""
    if os.geteuid() != 0:
        pytest.skip("prepare.sh chowns to uid 10001: needs root, as documented")
    python = Path(sys.executable)
    require_binary("openssl", "openssl")
    proc = subprocess.run(["sh", str(example_copy / "prepare.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    config = example_copy / "docker-data" / "dms" / "config"
    key = example_copy.parent / "ledger.key"  # compose mounts the file itself, not its folder
    shutil.copy(example_copy / "secrets" / "ledger.key", key)
    key.chmod(0o600)  # as prepare.sh leaves it (owned by the agent's user, who runs it here)
    doc = yaml.safe_load((example_copy / "agent.yaml").read_text())
    port = free_port()
    doc["server"] = {"host": "127.0.0.1", "port": port}
    doc["sources"][0]["path"] = str(example_copy / "state")
    doc["dms"].update(configDir=str(config), environmentFrom=str(example_copy / "mailserver.env"))
    doc["reconcile"].update(
        ledgerPath=str(config / ".dms-agent" / "ledger.json"), ledgerKeyFile=str(key)
    )
    settings = example_copy.parent / "settings.yaml"
    settings.write_text(yaml.safe_dump(doc))
    agent = subprocess.Popen(
        [str(python), "-m", "agent", "run", "--config", str(settings)],
        cwd=render.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        accounts = config / "postfix-accounts.cf"
        deadline = time.monotonic() + 30
        while "alice@example.com|" not in (accounts.read_text() if accounts.exists() else ""):
            assert agent.poll() is None, "the agent exited"
            assert time.monotonic() < deadline, "no accounts written"
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"dms_agent" in resp.read()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).close()
        except urllib.error.HTTPError as exc:  # no DMS here: a verdict other than healthy
            assert exc.code == 503
    finally:
        agent.terminate()
        output, _ = agent.communicate(timeout=30)
    assert "Traceback" not in output, output[-3000:]
