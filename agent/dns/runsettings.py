"""What one run of the DNS checks needs from the ``dns:`` settings, as plain dataclasses.

The agent validates ``dns:`` once, with pydantic (agent/dns/config.py). A run gets these
already-valid values instead: in a worker process, building them from the agent's JSON costs
nothing, where importing pydantic and building the settings models took ~0.1 s of CPU per
run. Nothing here validates; ``DnsSettings.for_run`` is the only maker besides ``from_json``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def split_host_port(value: str, default_port: int = 53) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad nameserver {value!r}: expected [ADDRESS]:PORT")
        port = int(rest[1:]) if rest else default_port
    elif value.count(":") == 1:
        host, port_text = value.split(":")
        port = int(port_text)
    else:
        host, port = value, default_port
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {value!r}")
    return host, port


@dataclass(frozen=True, slots=True)
class PolicyFetch:
    """``dns.mtaSts``: how MTA-STS policies are fetched."""

    timeout: float
    ca_bundle: Path | None
    port: int
    connect_to: str | None


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The settings one run reads (field names and meanings as in ``DnsSettings``)."""

    mx_host: str | None
    ipv4: tuple[ipaddress.IPv4Address, ...]
    ipv6: tuple[ipaddress.IPv6Address, ...]
    egress: tuple[Address, ...]
    nameservers: tuple[str, ...]
    timeout: float
    lifetime: float
    deadline: float
    concurrency: int
    default_dkim_selectors: tuple[str, ...]
    min_dkim_bits: int
    smtp_port: int
    mta_sts: PolicyFetch

    def egress_addresses(self) -> list[Address]:
        if self.egress:
            return list(self.egress)
        return [*self.ipv4, *self.ipv6]

    def as_json(self) -> dict[str, Any]:
        sts = self.mta_sts
        return {
            "mxHost": self.mx_host,
            "ipv4": [str(a) for a in self.ipv4],
            "ipv6": [str(a) for a in self.ipv6],
            "egress": [str(a) for a in self.egress],
            "nameservers": list(self.nameservers),
            "timeout": self.timeout,
            "lifetime": self.lifetime,
            "deadline": self.deadline,
            "concurrency": self.concurrency,
            "defaultDkimSelectors": list(self.default_dkim_selectors),
            "minDkimBits": self.min_dkim_bits,
            "smtpPort": self.smtp_port,
            "mtaSts": {
                "timeout": sts.timeout,
                "caBundle": None if sts.ca_bundle is None else str(sts.ca_bundle),
                "port": sts.port,
                "connectTo": sts.connect_to,
            },
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunSettings:
        """``as_json``'s document back (the agent made it: no validation beyond the types)."""
        sts = raw["mtaSts"]
        bundle = sts["caBundle"]
        return cls(
            mx_host=raw["mxHost"],
            ipv4=tuple(ipaddress.IPv4Address(a) for a in raw["ipv4"]),
            ipv6=tuple(ipaddress.IPv6Address(a) for a in raw["ipv6"]),
            egress=tuple(ipaddress.ip_address(a) for a in raw["egress"]),
            nameservers=tuple(raw["nameservers"]),
            timeout=float(raw["timeout"]),
            lifetime=float(raw["lifetime"]),
            deadline=float(raw["deadline"]),
            concurrency=int(raw["concurrency"]),
            default_dkim_selectors=tuple(raw["defaultDkimSelectors"]),
            min_dkim_bits=int(raw["minDkimBits"]),
            smtp_port=int(raw["smtpPort"]),
            mta_sts=PolicyFetch(
                timeout=float(sts["timeout"]),
                ca_bundle=None if bundle is None else Path(bundle),
                port=int(sts["port"]),
                connect_to=sts["connectTo"],
            ),
        )


class Validated(Protocol):
    """Settings that give a run's view of themselves (``DnsSettings``)."""

    def for_run(self) -> RunSettings: ...


def for_run(settings: RunSettings | Validated) -> RunSettings:
    """A run's settings from either kind (the CLI and tests hand ``DnsSettings`` over)."""
    return settings if isinstance(settings, RunSettings) else settings.for_run()
