"""What one run of the DNS checks covers: the mail domains, their DKIM selectors, which are
send-only. Built in the agent from the desired state (cheap, no DNS library), carried to the
run as JSON when the run is a worker process (agent/dns/worker.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the worker reads plans without the settings' models (pydantic)
    from agent.dns.config import DnsSettings


@dataclass(frozen=True, slots=True)
class DomainSpec:
    name: str
    selectors: frozenset[str] = frozenset()  # DKIM selectors the mail state declares
    send_only: bool = False


@dataclass(slots=True)
class Plan:
    """The mail domains to check (the MX host comes from the settings, in ``run``)."""

    domains: list[DomainSpec] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.domains]

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"name": d.name, "selectors": sorted(d.selectors), "sendOnly": d.send_only}
            for d in self.domains
        ]

    @classmethod
    def from_json(cls, raw: list[dict[str, Any]]) -> Plan:
        return cls([DomainSpec(d["name"], frozenset(d["selectors"]), d["sendOnly"]) for d in raw])


def plan_from(settings: DnsSettings, desired: Any, only: Iterable[str] = ()) -> Plan:
    """Domains of the desired mail state (``agent.mailstate.model.Desired`` or None) plus the
    settings' extra domains; ``only`` restricts to those names (the CLI's arguments)."""
    selectors: dict[str, set[str]] = {}
    state = getattr(desired, "state", None)
    if state is not None:
        for name, domain in state.domains.items():
            sel = selectors.setdefault(name.lower(), set())
            if domain.dkim is not None:
                sel.add(domain.dkim.selector)
        for address in [*state.accounts, *state.aliases]:
            _local, at, part = address.rpartition("@")
            if at and part:  # a bare local-part alias ("postmaster") names no domain
                selectors.setdefault(part.lower(), set())
    for name in [*settings.domains, *settings.send_only_domains]:
        selectors.setdefault(name, set())
    wanted = [n.lower().rstrip(".") for n in only]
    for name in wanted:
        selectors.setdefault(name, set())
    names = sorted(n for n in selectors if not wanted or n in wanted)
    send_only = set(settings.send_only_domains)
    return Plan([DomainSpec(n, frozenset(selectors[n]), n in send_only) for n in names])
