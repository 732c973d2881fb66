"""Status registries shaped by the real components' own code, for the status page's tests and
its benchmark: checks through the real Board, DNS through the real report model and the DNS
component's view of it, the plan through the real Plan/Op descriptions, LB targets through
the real TargetState."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from pydantic import TypeAdapter

from agent.checks.config import CheckSpec
from agent.checks.probes import Outcome
from agent.checks.state import CheckState
from agent.checks.verdict import Board
from agent.dns.component import domain_view
from agent.dns.model import CheckResult, DomainReport, Finding, Status
from agent.hub import Hub
from agent.lb.sender import TargetState
from agent.mailstate.model import PasswordIntent, Secret
from agent.reconcile.plan import Op, Plan
from agent.status import State, StatusRegistry

PLAIN_SECRET = "correct-horse-battery-staple-9f2"
HASH_SECRET = "{SHA512-CRYPT}$6$pGmQ2zV1$hQe3kJx0Yb1oZ0c9kq7VuYg4Qm2Hnq"
DKIM_P = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x7Qz" * 80 + "IDAQAB"
MX = "mail.example.net"
CHECK_KINDS = ("smtp", "imap", "pop3", "clamd", "tcp", "http", "exec", "tcp")


def check_specs(count: int = 8) -> list[CheckState]:
    specs = []
    for i in range(count):
        kind = CHECK_KINDS[i % len(CHECK_KINDS)]
        raw: dict[str, Any] = {"name": f"{kind}{i}", "kind": kind, "failureThreshold": 1}
        if kind == "exec":
            raw["commands"] = [["true"]]
        elif kind == "http":
            raw["url"] = f"http://127.0.0.1:{1000 + i}/"
        elif kind in ("tcp", "clamd"):
            raw["port"] = 1000 + i
        specs.append(CheckState(TypeAdapter(CheckSpec).validate_python(raw)))
    return specs


def feed_checks(registry: StatusRegistry, failing: Collection[str] = (), rounds: int = 48) -> Board:
    """``rounds`` results per check through the real Board; ``failing`` checks fail the last 3."""
    states = check_specs()
    board = Board(states, registry, Hub())
    start = time.time() - rounds * 30
    for r in range(rounds):
        for st in states:
            bad = st.spec.name in failing and r >= rounds - 3
            out = Outcome(False, "connect", "Connection refused") if bad else Outcome(True)
            st.feed(out, float(r), start + r * 30)
            board.publish()
    return board


def _txt(value: str) -> str:
    return f'"{value}"'


def domain_report(domain: str, broken: bool = False) -> DomainReport:
    """Every check passing, or (``broken``) a missing MX, a wrong SPF and a missing DKIM key."""
    P, F, W = Status.PASS, Status.FAIL, Status.WARN
    dkim_name = f"mail._domainkey.{domain}"
    dkim_record = f"v=DKIM1; k=rsa; p={DKIM_P}"
    spf = "v=spf1 mx -all"
    findings: dict[str, tuple[Finding, ...]] = {
        "mx": (Finding(P, "every MX is ours", MX, MX),),
        "spf": (Finding(P, "SPF record present", spf),),
        "dkim": (Finding(P, "DKIM mail matches DMS's key", dkim_record[:80], "2048 bits"),),
        "dmarc": (Finding(P, "DMARC p=reject", "v=DMARC1; p=reject; rua=mailto:d@" + domain),),
        "mta-sts": (Finding(W, "no MTA-STS record", "none", "v=STSv1; id=...", "optional"),),
        "tls-rpt": (Finding(P, "TLS-RPT present", "v=TLSRPTv1; rua=mailto:tls@" + domain),),
    }
    if broken:
        findings["mx"] = (Finding(F, "no MX record", "none", MX, f"{domain}. IN MX 10 {MX}."),)
        findings["spf"] = (
            Finding(F, "SPF fails for 203.0.113.25", "fail: v=spf1 -all", "pass",
                    f"{domain}. IN TXT {_txt(spf)}"),
        )  # fmt: skip
        findings["dkim"] = (
            Finding(F, "no DKIM key for mail", "none", dkim_name,
                    f"{dkim_name}. IN TXT {_txt(dkim_record)}"),
        )  # fmt: skip
    results = {c: CheckResult(domain, c, f) for c, f in findings.items()}
    return DomainReport(domain, results, checked_at=time.time() - 120)


def publish_dns(registry: StatusRegistry, domains: list[str], broken: Collection[str]) -> None:
    reports = {d: domain_report(d, d in broken) for d in domains}
    bad = sum(1 for r in reports.values() if r.status in (Status.FAIL, Status.ERROR))
    registry.component("dns").set(
        State.DEGRADED if bad else State.OK,
        f"{len(reports)} names checked",
        domains={d: domain_view(r) for d, r in reports.items()},
        lastRun=time.time() - 120,
    )


def publish_dkim(registry: StatusRegistry, domains: list[str], waiting: Collection[str]) -> None:
    view = {}
    for d in domains:
        zone = f'mail._domainkey.{d}. IN TXT ( "v=DKIM1; k=rsa; p={DKIM_P}" )'
        view[d] = {
            "declaredSelector": "mail",
            "signing": "mail",
            "retiring": None,
            "retireAfter": None,
            "rotation": "waiting" if d in waiting else "stable",
            "step": "new key waits for its DNS record" if d in waiting else "",
            "records": [{"selector": "mail", "zoneLine": zone, "published": d not in waiting}],
        }
    registry.component("dkim").set(State.OK, f"{len(domains)} domain(s)", backend="opendkim",
                                   domains=view, restartRequired=False)  # fmt: skip


def publish_plan(registry: StatusRegistry) -> None:
    plain = PasswordIntent("plain", Secret(PLAIN_SECRET))
    hashed = PasswordIntent("hash", Secret(HASH_SECRET))
    plan = Plan(
        ops=[
            Op("account_add", "carol@example.com", password=plain, reason="new"),
            Op("password_update", "dave@example.com", password=hashed, reason="changed"),
            Op("alias_add", "postmaster@example.com", "carol@example.com"),
        ],
        refused=[Op("account_del", "old@example.com", reason="pruned")],
        refused_reason="1 deletion exceeds reconcile.maxDeletions (0)",
        blocked={"dkim_add:example.org:mail": "OpenDKIM cannot make ed25519 keys"},
        pending={"erin@example.com": "declared without a password"},
        kept=["legacy@example.com"],
    )
    details: dict[str, Any] = {"outcome": "partial", "error": None, "mode": "apply"}
    details["plan"] = plan.describe(50)
    details["results"] = [
        {**plan.ops[0].describe(), "status": "failed", "message": "setup exited 1"}
    ]
    registry.component("reconcile").set(State.DEGRADED, "partial: 3 ops planned", **details)


def publish_sources_and_lb(registry: StatusRegistry) -> None:
    registry.component("source path:/etc/dms-agent/state").set(State.OK, "read after start",
                                                               documents=2)  # fmt: skip
    registry.component("sources merge").set(State.OK, "published", generation=3)
    target = TargetState("v2", "https://lb.example.net:9000/hooks/dms")
    target.last_result, target.last_action = "applied", "register"
    target.last_success_at = time.time() - 300
    registry.component("lb").set(
        State.OK, "registered 203.0.113.25 with every target", name="mail", pod="dms-0",
        node="node-a", address="203.0.113.25", addressSource="env",
        ports=[{"name": "smtp", "frontend": 25, "backend": None, "proxyProtocol": True}],
        targets={"haproxy-1": target.as_dict()},
    )  # fmt: skip


def registry_for(
    domains: int = 3,
    broken: Collection[str] = (),
    failing: Collection[str] = (),
    waiting: Collection[str] = (),
) -> StatusRegistry:
    """A whole agent's status: ``domains`` names d0.example.com…; ``broken`` ones fail DNS."""
    registry = StatusRegistry()
    registry.settings_loaded = True
    names = [f"d{i}.example.com" for i in range(domains)]
    feed_checks(registry, failing)
    publish_dns(registry, names, broken)
    publish_dkim(registry, names, waiting)
    publish_plan(registry)
    publish_sources_and_lb(registry)
    return registry
