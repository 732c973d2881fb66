"""DNS check results as values: what was found, what was expected, and how a person fixes it.

``ctx.hub.dns_results`` holds ``dict[str, DomainReport]`` keyed by domain (lower case, no final
dot). The MX host's own checks (its addresses, PTR of the egress addresses, TLSA) are reported
under the MX host name. The DKIM capability reads ``report.dkim[selector]`` (a ``DkimInfo``):
``published`` (a record exists), ``matches`` (its ``p=`` equals DMS's public key).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"  # the check could not be done (timeout, SERVFAIL...): never a verdict on DNS


SEVERITY = {Status.PASS: 0, Status.WARN: 1, Status.ERROR: 2, Status.FAIL: 3}

# The closed set of lookup error kinds (agent/dns/resolver.py): a metric label, so it must stay
# bounded. Here, not in the resolver, so the agent's metrics need no DNS library.
ERROR_KINDS = ("timeout", "servfail", "refused", "other")
# The closed set of check names: a metric label, so it must stay bounded.
CHECKS = ("mx", "mx-address", "ptr", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt", "tlsa")


@dataclass(frozen=True, slots=True)
class Finding:
    """One observation. ``fix`` is one line for a person; empty when nothing is to be done.

    When the fix is a change of DNS records, ``publish`` and ``withdraw`` hold it as zone-file
    lines with absolute names (``name. TYPE value``): what the fix text says, for a tool.
    """

    status: Status
    message: str
    found: str = ""
    expected: str = ""
    fix: str = ""
    publish: tuple[str, ...] = ()
    withdraw: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status.value,
            "message": self.message,
            "found": self.found,
            "expected": self.expected,
            "fix": self.fix,
        }
        if self.publish or self.withdraw:
            out["publish"], out["withdraw"] = list(self.publish), list(self.withdraw)
        return out


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The result of one check for one domain: the worst of its findings."""

    domain: str
    check: str
    findings: tuple[Finding, ...]
    # worked out once: publishing a run reads it several times for each of ~1,200 results
    status: Status = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", worst(f.status for f in self.findings))

    @property
    def headline(self) -> Finding:
        """The finding that decided the status (the first of the worst)."""
        status = self.status
        return next(f for f in self.findings if f.status == status)

    def as_dict(self) -> dict[str, Any]:
        head = self.headline
        return {
            "domain": self.domain,
            "check": self.check,
            "status": self.status.value,
            "message": head.message,
            "found": head.found,
            "expected": head.expected,
            "fix": head.fix,
            "publish": list(head.publish),
            "withdraw": list(head.withdraw),
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class DkimInfo:
    """What the DKIM check learnt about one selector (read by the DKIM capability)."""

    selector: str
    published: bool
    matches: bool | None  # None: DMS holds no key to compare with, or the lookup failed
    bits: int | None = None
    key_source: str | None = None  # the DMS file the expected key came from

    def as_dict(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "published": self.published,
            "matches": self.matches,
            "bits": self.bits,
            "keySource": self.key_source,
        }


@dataclass(slots=True)
class DomainReport:
    domain: str
    results: dict[str, CheckResult] = field(default_factory=dict)
    dkim: dict[str, DkimInfo] = field(default_factory=dict)
    checked_at: float = field(default_factory=time.time)

    @property
    def status(self) -> Status:
        return worst(r.status for r in self.results.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "status": self.status.value,
            "checkedAt": self.checked_at,
            "checks": {name: r.as_dict() for name, r in self.results.items()},
            "dkim": {s: i.as_dict() for s, i in sorted(self.dkim.items())},
        }


def worst(statuses: Any) -> Status:
    result = Status.PASS
    for status in statuses:
        if SEVERITY[status] > SEVERITY[result]:
            result = status
    return result
