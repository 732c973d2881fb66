"""Fixtures for the reconciler tests: a DMS-style folder driven by the `setup` double.

``dms_rig`` gives a config folder, a mail folder, a `setup` wrapper (the double re-rooted there,
with a call log) and helpers to count calls and check hashes with the real ``doveadm pw -t``.
Faults are injected by wrapping the double (``fault_script``): the double itself stays faithful.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.events import EventType, LogEventSink
from agent.settings import Settings
from tests.dms_double.fixtures import DmsDouble, doveadm_verify

__all__ = ["DmsRig", "RecordedEvents", "dms_rig", "doveadm_verify", "fault_script"]


@dataclass
class DmsRig:
    """The double (``tests.dms_double.fixtures.DmsDouble``) plus what the reconciler needs."""

    dms: DmsDouble
    key_file: Path

    @property
    def root(self) -> Path:
        return self.dms.root

    @property
    def config_dir(self) -> Path:
        return self.dms.config_dir

    @property
    def mail_dir(self) -> Path:
        return self.dms.mail_dir

    @property
    def state_dir(self) -> Path:
        return self.dms.state_dir

    @property
    def setup(self) -> Path:
        return self.dms.wrapper

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

    def settings(self, dkim_component: bool = True, **reconcile: Any) -> Settings:
        """``dkim_component=False``: no DKIM component, so the plan's basic DKIM op runs."""
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
                    "environment": {
                        k: v for k, v in self.dms.env.items() if not k.startswith("DMS_DOUBLE")
                    },
                },
                "reconcile": rec,
                "dkim": {"enabled": dkim_component},
            }
        )

    def unmounted_settings(self, **reconcile: Any) -> Settings:
        """DMS read and written only through `setup` (dms.configDir: null); the ledger in a
        folder of its own."""
        settings = self.settings(**reconcile)
        dms = settings.dms.model_copy(
            update={
                "config_dir": None,
                "mail_dir": None,
                "container_mail_dir": str(self.mail_dir),
                "container_config_dir": str(self.config_dir),
            }
        )
        ledger = self.root / "ledger"
        ledger.mkdir(exist_ok=True)
        rec = settings.reconcile.model_copy(update={"ledger_path": ledger / "ledger.json"})
        return settings.model_copy(update={"dms": dms, "reconcile": rec})


class RecordedEvents(LogEventSink):
    """The agent's own log sink, remembering what it emitted."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, str, EventType]] = []

    def emit(self, reason: str, message: str, type: EventType = "Normal") -> None:
        self.emitted.append((reason, message, type))
        super().emit(reason, message, type)


def fault_script(rig: DmsRig, name: str, body: str) -> Path:
    """A `setup` that runs ``body`` (sh) first, then the double (``$@`` untouched)."""
    path = rig.root / name
    path.write_text(f'#!/bin/sh\n{body}\nexec "{rig.setup}" "$@"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def dms_rig(dms: DmsDouble, tmp_path: Path) -> DmsRig:
    keys = tmp_path / "keys"  # never beside the ledger (which lives in the config folder)
    keys.mkdir()
    key_file = keys / "ledger.key"
    key_file.write_text("test-ledger-key\n")
    key_file.chmod(0o600)  # the agent refuses a digest key others can read
    return DmsRig(dms, key_file)
