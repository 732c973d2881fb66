"""The mail state as values: what the user declares (desired) and what DMS has (actual).

Addresses and domains are stored lower-case (DMS lowers them too). Plain passwords are wrapped
so that no repr, log line or /status dump can show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

API_VERSION = "dms-agent/v1"  # of the state document
KeyType = Literal["rsa", "ed25519"]
Restriction = Literal["send", "receive"]
# One shared empty set: ``frozenset()`` makes a new 216-byte object each time (100,000
# accounts without restrictions held 22 MB of them).
NO_RESTRICTIONS: frozenset[Restriction] = frozenset()


@dataclass(frozen=True, slots=True)
class DkimSpec:
    selector: str = "mail"
    key_type: KeyType = "rsa"
    key_size: int = 2048  # ignored for ed25519


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    dkim: DkimSpec | None = None


@dataclass(frozen=True, slots=True)
class Account:
    address: str
    quota: str | None = None  # DMS syntax: ^([0-9]+(B|k|M|G|T)|0)$
    restrict: frozenset[Restriction] = NO_RESTRICTIONS


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that must never be printed."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class PasswordIntent:
    """``plain``: to `setup` on stdin. ``hash``: ``{SCHEME}...``, written by the file applier."""

    kind: Literal["plain", "hash"]
    secret: Secret


@dataclass(frozen=True, slots=True)
class Policy:
    """What the state document may say about deletions: it can only tighten the settings."""

    prune: bool | None = None
    delete_mail_data: bool | None = None


@dataclass(slots=True)
class MailState:
    domains: dict[str, Domain] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # alias -> recipients
    passwords: dict[str, PasswordIntent] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    # where each account/alias was declared ("FILE:LINE"), for messages naming both sources
    origins: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Desired:
    """A validated desired state plus what validation had to say short of an error."""

    state: MailState
    warnings: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # account -> why it waits (no password)
    generation: str = ""  # digest of the input documents, for logs and metrics
