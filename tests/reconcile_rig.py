"""Fixtures for the reconciler tests: a DMS-style folder driven by the `setup` double.

``dms_rig`` gives a config folder, a mail folder, a `setup` wrapper (the double re-rooted there,
with a call log) and helpers to count calls and check hashes with the real ``doveadm pw -t``.
Faults are injected by wrapping the double (``fault_script``): the double itself stays faithful.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.settings import Settings
from tests.rig.proc import require_binary

DOUBLE = Path(__file__).parent / "dms_double" / "setup"


@dataclass
class DmsRig:
    root: Path
    config_dir: Path
    mail_dir: Path
    state_dir: Path
    setup: Path  # wrapper: runs the double on these folders
    key_file: Path

    def calls(self) -> list[dict[str, Any]]:
        log = self.state_dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line]

    def mutating_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if "list" not in c["argv"]]

    def run_setup(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run the double directly (as a person with kubectl exec would)."""
        return subprocess.run(
            [str(self.setup), *argv], input=stdin, capture_output=True, text=True, check=False
        )

    def file(self, name: str) -> str:
        path = self.config_dir / name
        return path.read_text() if path.exists() else ""

    def hash_of(self, address: str) -> str:
        for line in self.file("postfix-accounts.cf").splitlines():
            addr, _, rest = line.partition("|")
            if addr == address:
                return rest.split("|")[0]
        raise AssertionError(f"{address} not in postfix-accounts.cf")

    def settings(self, **reconcile: Any) -> Settings:
        rec: dict[str, Any] = {"ledgerKeyFile": str(self.key_file), "retryInitial": 0.05}
        rec.update(reconcile)
        return Settings.model_validate(
            {
                "dms": {
                    "configDir": str(self.config_dir),
                    "mailDir": str(self.mail_dir),
                    "setupCommand": [str(self.setup)],
                    "readyCommand": [],
                    "commandTimeout": 10,
                    "executor": {"kind": "local"},
                    "environment": {"ACCOUNT_PROVISIONER": "FILE", "ENABLE_QUOTAS": "1"},
                },
                "reconcile": rec,
            }
        )


def doveadm_verify(hash_: str, password: str) -> bool:
    doveadm = require_binary("doveadm", "dovecot-core")
    res = subprocess.run(
        [doveadm, "pw", "-t", hash_, "-p", password], capture_output=True, text=True, check=False
    )
    return res.returncode == 0


def fault_script(rig: DmsRig, name: str, body: str) -> Path:
    """A `setup` that runs ``body`` (sh) first, then the double (``$@`` untouched)."""
    path = rig.root / name
    path.write_text(f'#!/bin/sh\n{body}\nexec "{rig.setup}" "$@"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def dms_rig(tmp_path: Path) -> Iterator[DmsRig]:
    require_binary("doveadm", "dovecot-core")
    config, mail, state, keys = (tmp_path / n for n in ("config", "mail", "state", "keys"))
    for d in (config, mail, state, keys):
        d.mkdir()
    key_file = keys / "ledger.key"
    key_file.write_text("test-ledger-key\n")
    wrapper = tmp_path / "setup"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'export DMS_DOUBLE_CONFIG_DIR="{config}" DMS_DOUBLE_MAIL_DIR="{mail}" '
        f'DMS_DOUBLE_STATE_DIR="{state}"\n'
        f'exec "{sys.executable}" "{DOUBLE}" "$@"\n'
    )
    wrapper.chmod(0o755)
    os.environ.pop("DMS_DOUBLE_DELAY", None)
    yield DmsRig(tmp_path, config, mail, state, wrapper, key_file)
