"""DNS reports as JSON and back, exactly: how a run in a worker process hands its results to
the agent (agent/dns/worker.py). Unlike ``DomainReport.as_dict`` (a view for people), this
keeps every field, so the agent publishes what it would have published from an in-process run.
A field at its default (an empty fix, no records to publish, a result's domain when it is its
report's) is left out: the agent reads the reply on its own loop, and 200 domains' reply is
then half the size.
"""

from __future__ import annotations

from typing import Any

from agent.dns.model import CheckResult, DkimInfo, DomainReport, Finding, Status

Json = dict[str, Any]


def report_to_json(rep: DomainReport) -> Json:
    return {
        "domain": rep.domain,
        "checkedAt": rep.checked_at,
        "results": [_result(rep.domain, r) for r in rep.results.values()],
        "dkim": [
            {"selector": i.selector, "published": i.published, "matches": i.matches}
            | {"bits": i.bits, "keySource": i.key_source}
            for i in rep.dkim.values()
        ],
    }


def _result(domain: str, r: CheckResult) -> Json:
    out: Json = {"check": r.check, "findings": [_finding(f) for f in r.findings]}
    if r.domain != domain:
        out["domain"] = r.domain
    return out


def _finding(f: Finding) -> Json:
    out: Json = {"status": f.status.value, "message": f.message}
    texts = {"found": f.found, "expected": f.expected, "fix": f.fix}
    out |= {key: text for key, text in texts.items() if text}
    records = {"publish": f.publish, "withdraw": f.withdraw}
    out |= {key: list(lines) for key, lines in records.items() if lines}
    return out


def _finding_from_json(f: Json) -> Finding:
    return Finding(
        Status(f["status"]),
        f["message"],
        found=f.get("found", ""),
        expected=f.get("expected", ""),
        fix=f.get("fix", ""),
        publish=tuple(f.get("publish", ())),
        withdraw=tuple(f.get("withdraw", ())),
    )


def report_from_json(raw: Json) -> DomainReport:
    """One domain's report (the agent reads a reply a report at a time, between other work)."""
    results = {}
    domain = raw["domain"]
    for r in raw["results"]:  # in the run's order: the checks' order on the page
        findings = tuple(_finding_from_json(f) for f in r["findings"])
        results[r["check"]] = CheckResult(r.get("domain", domain), r["check"], findings)
    dkim = {}
    for i in raw["dkim"]:
        info = DkimInfo(i["selector"], i["published"], i["matches"], i["bits"], i["keySource"])
        dkim[info.selector] = info
    return DomainReport(domain, results, dkim, raw["checkedAt"])
