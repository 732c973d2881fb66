"""What one document declares, with where each thing was declared, before merging."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import LocatedError
from agent.mailstate.model import Account, Domain, PasswordIntent, Policy, Restriction

# (file, line): a document's origin and the line in it
Origin = tuple[str, int | None]


def where(origin: Origin) -> str:
    file, line = origin
    return f"{file}:{line}" if line is not None else file


class Origins(Mapping[str, str]):
    """Where each account and alias was declared ("FILE:LINE"), read from the merged
    ``name -> (item, Origin)`` maps when asked: 100,000 such strings made up front held ~14 MB
    that only a message naming both places ever reads."""

    __slots__ = ("_maps",)

    def __init__(self, *maps: Mapping[str, tuple[Any, Origin]]) -> None:
        self._maps = maps  # disjoint: an alias named like an account is an error

    def __getitem__(self, key: str) -> str:
        for found in self._maps:
            hit = found.get(key)
            if hit is not None:
                return where(hit[1])
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        for found in self._maps:
            yield from found

    def __len__(self) -> int:
        return sum(len(found) for found in self._maps)


@dataclass(slots=True)
class Fragment:
    """One parsed, individually valid document. Keys are lower-case."""

    source: str
    domains: dict[str, tuple[Domain, Origin]] = field(default_factory=dict)
    accounts: dict[str, tuple[Account, Origin]] = field(default_factory=dict)
    aliases: dict[str, tuple[tuple[str, ...], Origin]] = field(default_factory=dict)
    passwords: dict[str, tuple[PasswordIntent, Origin]] = field(default_factory=dict)
    # where a state document set an account's quota / restriction, to name it in conflicts
    settings: dict[tuple[str, str], Origin] = field(default_factory=dict)
    # from dovecot-quotas.cf and the access files: settings for accounts declared elsewhere
    quotas: dict[str, tuple[str, Origin]] = field(default_factory=dict)
    restricts: list[tuple[str, Restriction, Origin]] = field(default_factory=list)
    policy: Policy | None = None
    warnings: list[LocatedError] = field(default_factory=list)


class Collector:
    """Errors and warnings of one document, with a first-seen index for case-insensitive keys."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[LocatedError] = []
        self.warnings: list[LocatedError] = []

    def error(self, line: int | None, field: str, message: str) -> None:
        self.errors.append(LocatedError(self.source, line, field, message))

    def warn(self, line: int | None, field: str, message: str) -> None:
        self.warnings.append(LocatedError(self.source, line, field, message))

    def sorted_errors(self) -> list[LocatedError]:
        return sorted(self.errors, key=lambda e: (e.line is None, e.line or 0))
