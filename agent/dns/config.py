"""Settings section ``dns:`` — what the mail domains' DNS records should say, and how to ask.

Example::

    dns:
      enabled: true
      mxHost: mail.example.com          # the name every MX of every domain must point to
      ipv4: [203.0.113.25]              # the MX host's public addresses (A / AAAA)
      ipv6: ["2001:db8::25"]
      egress: [203.0.113.25]            # where mail leaves from (PTR, SPF); default: ipv4 + ipv6
      nameservers: ["10.0.0.10", "1.1.1.1:53"]   # default: the system's resolv.conf servers
      domains: [example.net]            # checked in addition to the mail state's domains
      sendOnlyDomains: [notify.example.com]
      interval: 3600
      deadline: 15                      # one run; unfinished checks are `error`
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator

from agent.config_base import Section
from agent.dns.runsettings import PolicyFetch, RunSettings, split_host_port

__all__ = ["DnsSettings", "MtaStsSettings", "split_host_port"]


class MtaStsSettings(Section):
    """``dns.mtaSts:`` — how the MTA-STS policy is fetched.

    ``connectTo`` exists for tests only: it makes every ``mta-sts.<domain>`` name resolve to
    that loopback address (and ``port`` replaces 443), while TLS still verifies the real name.
    """

    # seconds the policy fetch may take
    timeout: float = Field(10.0, gt=0)
    ca_bundle: Path | None = None  # PEM file of trusted CAs; default: the system's store
    port: int = Field(443, gt=0, lt=65536)
    connect_to: str | None = None

    @field_validator("connect_to")
    @classmethod
    def _loopback_only(cls, value: str | None) -> str | None:
        if value is not None and not ipaddress.ip_address(value).is_loopback:
            raise ValueError("connectTo is for tests only and must be a loopback address")
        return value


class DnsSettings(Section):
    """``dns:`` — DNS checks of every mail domain (see the module docstring for an example)."""

    # run the DNS checks every interval seconds
    enabled: bool = False
    mx_host: str | None = None  # expected MX exchange (FQDN); null: only presence is checked
    # the MX host's IPv4 addresses (A records and PTR expected)
    ipv4: list[ipaddress.IPv4Address] = Field(default_factory=list)
    # the MX host's IPv6 addresses (AAAA records and PTR expected)
    ipv6: list[ipaddress.IPv6Address] = Field(default_factory=list)
    # where outgoing mail comes from (PTR and SPF); empty: the ipv4 and ipv6 lists
    egress: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = Field(default_factory=list)
    # "HOST" or "HOST:PORT" ("[V6]:PORT"); empty: the system's resolv.conf servers
    nameservers: list[str] = Field(default_factory=list)
    timeout: float = Field(2.0, gt=0)  # one query attempt
    lifetime: float = Field(5.0, gt=0)  # one lookup, retries included
    # One whole run. Checks not done by then are `error`; a run whose first lookups all time
    # out stops at once (the nameserver is not answering) rather than waiting them all out.
    deadline: float = Field(15.0, gt=0)
    interval: float = Field(3600.0, gt=0)  # seconds between scheduled runs
    # Domains checked at once, and MTA-STS policies fetched at once (a thread each, in the
    # run's worker process). bench/dns_checks.py (200 domains, local servers, loaded 2-core
    # machine) is as fast with 32 and slower with 8.
    concurrency: int = Field(16, ge=1, le=256)
    domains: list[str] = Field(default_factory=list)  # checked besides the mail state's
    send_only_domains: list[str] = Field(default_factory=list)  # no MX / null MX expected
    # DKIM selectors checked when neither the state nor DMS's key folder names one
    default_dkim_selectors: list[str] = Field(default_factory=lambda: ["mail"])
    # a DKIM RSA key shorter than this fails
    min_dkim_bits: int = Field(2048, ge=512)
    smtp_port: int = Field(25, gt=0, lt=65536)  # where the TLSA check reads the certificate
    mta_sts: MtaStsSettings = MtaStsSettings()

    @field_validator("nameservers")
    @classmethod
    def _valid_nameservers(cls, values: list[str]) -> list[str]:
        for value in values:
            host, _ = split_host_port(value)
            ipaddress.ip_address(host)  # dnspython needs addresses, not names
        return values

    @field_validator("mx_host")
    @classmethod
    def _lower_fqdn(cls, value: str | None) -> str | None:
        return value.lower().rstrip(".") if value else value

    @field_validator("domains", "send_only_domains")
    @classmethod
    def _lower_domains(cls, values: list[str]) -> list[str]:
        return [v.lower().rstrip(".") for v in values]

    def egress_addresses(self) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if self.egress:
            return list(self.egress)
        return [*self.ipv4, *self.ipv6]

    def for_run(self) -> RunSettings:
        """What a run reads, as plain data (agent/dns/runsettings.py)."""
        sts = self.mta_sts
        return RunSettings(
            mx_host=self.mx_host,
            ipv4=tuple(self.ipv4),
            ipv6=tuple(self.ipv6),
            egress=tuple(self.egress),
            nameservers=tuple(self.nameservers),
            timeout=self.timeout,
            lifetime=self.lifetime,
            deadline=self.deadline,
            concurrency=self.concurrency,
            default_dkim_selectors=tuple(self.default_dkim_selectors),
            min_dkim_bits=self.min_dkim_bits,
            smtp_port=self.smtp_port,
            mta_sts=PolicyFetch(sts.timeout, sts.ca_bundle, sts.port, sts.connect_to),
        )
