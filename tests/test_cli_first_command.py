"""The README's two commands on a machine without apt: the first (install the package, run the
agent on the embedded default) works; the second's set-up says why it cannot go on.

pip runs offline here (no index; the build tools and libraries come from this test run's own
environment), so the test needs no network; everything else is the README's text, verbatim."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.cli_support import ROOT
from tests.rig.proc import free_port, wait_for_port

SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages"))


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text("utf-8")
    section = text[text.index("## Two commands") :]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)[:2]


def bin_without_apt(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only ``tools`` (and python3): no apt-get, no dpkg."""
    folder = tmp_path / "bin"
    folder.mkdir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (folder / "python3").symlink_to(Path(sys.base_prefix) / "bin" / f"python{version}")
    for tool in tools:
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    assert shutil.which("apt-get", path=str(folder)) is None
    assert shutil.which("dpkg", path=str(folder)) is None
    return str(folder)


def fresh_clone(tmp_path: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    clone = tmp_path / "clone"
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


def test_first_command_runs_the_agent_without_apt(tmp_path: Path) -> None:
    first = readme_commands()[0]
    assert "sudo" not in first and "apt" not in first and ".ci/" not in first
    clone = fresh_clone(tmp_path)
    port = free_port()
    env = {
        "PATH": bin_without_apt(tmp_path),
        "HOME": str(tmp_path),
        "PIP_NO_INDEX": "1",  # offline: what pip needs is already in this environment
        "PIP_NO_BUILD_ISOLATION": "0",  # (pip's spelling of --no-build-isolation)
        "PYTHONPATH": SITE_PACKAGES,
        "DMS_AGENT_SERVER__PORT": str(port),  # the README's port may be taken here
    }
    proc = subprocess.Popen(
        ["/bin/sh", "-c", first], cwd=clone, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=150, proc=proc)  # type: ignore[arg-type]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert resp.status == 200
        accounts = clone / "var" / "dms-config" / "postfix-accounts.cf"
        deadline = time.monotonic() + 30
        while not accounts.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "@example.com|" in accounts.read_text()  # the demo state reached DMS's file
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the agent and the shell that started it
        log = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert "dms_agent.app: stopped" in log and "Traceback" not in log, log[-3000:]


def test_test_command_says_why_it_cannot_install_without_apt(tmp_path: Path) -> None:
    second = readme_commands()[1]
    assert second.startswith(".ci/setup && ")
    path = bin_without_apt(tmp_path, "bash", "grep", "dirname", "id")
    proc = subprocess.run(
        ["bash", ".ci/setup"], cwd=ROOT, env={"PATH": path}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "cannot install them (no apt-get, or not root)" in proc.stderr
    assert "postfix" in proc.stderr and "FAILED" in proc.stdout  # stopped at that step
