"""What observe() found: DMS's actual mail state and its relevant settings, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.mailstate.model import MailState

DkimBackend = Literal["opendkim", "rspamd", "none"]


@dataclass(frozen=True, slots=True)
class DmsInfo:
    """DMS's settings that change what the agent may do."""

    provisioner: str = "FILE"
    quotas_enabled: bool = True
    dkim_backend: DkimBackend = "opendkim"
    source: str = "DMS's defaults"  # where these settings were read (shown in /status)

    def describe(self) -> dict[str, object]:
        return {
            "settingsSource": self.source,
            "provisioner": self.provisioner,
            "quotas": self.quotas_enabled,
            "dkimBackend": self.dkim_backend,
        }

    @property
    def ldap(self) -> bool:
        return self.provisioner.upper() == "LDAP"


@dataclass(slots=True)
class Actual:
    """The actual state. ``hashes``/``dkim`` are None when they cannot be known (no config
    folder mounted: observed through `setup … list`), which turns off drift and DKIM checks."""

    state: MailState
    hashes: dict[str, str] | None = None  # address -> the hash in postfix-accounts.cf
    dkim: dict[str, frozenset[str]] | None = None  # domain -> selectors with a key
    info: DmsInfo = field(default_factory=DmsInfo)
    source: Literal["files", "commands"] = "files"
    # the access files' lines as DMS's `restrict` commands match them (raw, in file order;
    # None: not read), keyed "send"/"receive": their substring and prefix matches are
    # simulated on these before a `restrict` command runs
    access_lines: dict[str, tuple[str, ...]] | None = None
    # addresses (lower-cased) that DMS's files spell with upper case letters: DMS finds them
    # case-insensitively but its sed edits match case-sensitively, so they cannot be edited
    cased: frozenset[str] = frozenset()
