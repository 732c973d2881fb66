"""The file executor (no DMS) writes DMS's exact bytes: the same sequence of desired states
driven through the file applier and through DMS's `setup` (the double) leaves byte-identical
files, except the password hashes (salted; bcrypt in the files, SHA512-CRYPT from doveadm)."""

from __future__ import annotations

import re
from pathlib import Path

from agent.dms import files
from agent.executor import LocalExecutor
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile.reconciler import Engine
from agent.settings import Settings
from tests.reconcile_rig import DmsRig

HASH = re.compile(r"^([^|\n]+)\|\{[A-Z0-9-]+\}[^|\n]+", re.MULTILINE)


def state(
    quotas: dict[str, str],
    restrict: dict[str, frozenset[str]],
    aliases: dict[str, tuple[str, ...]],
    accounts: tuple[str, ...] = ("a@x.org", "b@x.org", "ab@x.org", "b@x.org.au"),
) -> Desired:
    st = MailState(
        accounts={
            a: Account(a, quotas.get(a), restrict.get(a, frozenset()))  # type: ignore[arg-type]
            for a in accounts
        },
        passwords={a: PasswordIntent("plain", Secret(f"pw-{a}")) for a in accounts},
        aliases=dict(aliases),
    )
    return Desired(st)


STEPS = [
    state(
        {"a@x.org": "1G", "b@x.org": "500M"},
        {"ab@x.org": frozenset({"send"}), "b@x.org": frozenset({"send", "receive"})},
        {"team@x.org": ("a@x.org", "b@x.org"), "solo@x.org": ("ab@x.org",)},
    ),
    state(  # a quota changed where it stands; restrictions and recipients both ways
        {"a@x.org": "2G", "b@x.org": "500M", "ab@x.org": "1M"},
        {"b@x.org.au": frozenset({"send"}), "b@x.org": frozenset({"receive"})},
        {"team@x.org": ("b@x.org", "ab@x.org"), "solo@x.org": ("ab@x.org",)},
    ),
    state(  # an account pruned: out of its aliases, its quota line with it; a quota removed
        {"ab@x.org": "1M"},
        {"b@x.org.au": frozenset({"send"})},
        {"team@x.org": ("b@x.org",), "solo@x.org": ("ab@x.org",)},
        accounts=("b@x.org", "ab@x.org", "b@x.org.au"),
    ),
]


def file_settings(folder: Path, key_file: Path) -> Settings:
    return Settings.model_validate(
        {
            "dms": {"configDir": str(folder), "executor": {"kind": "file"}},
            "reconcile": {"ledgerKeyFile": str(key_file), "prune": True},
            "dkim": {"enabled": False},
        }
    )


def dms_files(folder: Path) -> dict[str, str | None]:
    """DMS's native files (None: absent), the hash field masked."""
    out: dict[str, str | None] = {}
    for name in files.NATIVE_FILES:
        path = folder / name
        text = path.read_text() if path.exists() else None
        out[name] = HASH.sub(r"\1|{HASH}", text) if text is not None else None
    return out


async def test_the_file_executor_writes_what_dms_writes(dms_rig: DmsRig, tmp_path: Path) -> None:
    via_dms = Engine(dms_rig.settings(prune=True, dkim_component=False), LocalExecutor())
    folder = tmp_path / "file-executor"
    via_files = Engine(file_settings(folder, dms_rig.key_file), None)
    for number, desired in enumerate(STEPS):
        for eng in (via_dms, via_files):
            report = await eng.run_pass(desired)
            assert report.outcome == "applied", (number, report.describe())
        expected = dms_files(dms_rig.config_dir)
        assert dms_files(folder) == expected, number
        assert expected[files.SEND_ACCESS_FILE], "the steps exercise the access files"
