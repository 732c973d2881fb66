"""DNS reports as JSON and back, exactly: how a run in a worker process hands its results to
the agent (agent/dns/worker.py). Unlike ``DomainReport.as_dict`` (a view for people), this
keeps every field, so the agent publishes what it would have published from an in-process run.
"""

from __future__ import annotations

from typing import Any

from agent.dns.model import CheckResult, DkimInfo, DomainReport, Finding, Status

Json = dict[str, Any]


def reports_to_json(reports: dict[str, DomainReport]) -> Json:
    return {name: _report_to_json(rep) for name, rep in reports.items()}


def reports_from_json(raw: Json) -> dict[str, DomainReport]:
    return {name: _report_from_json(rep) for name, rep in raw.items()}


def _report_to_json(rep: DomainReport) -> Json:
    return {
        "domain": rep.domain,
        "checkedAt": rep.checked_at,
        "results": [
            {"domain": r.domain, "check": r.check, "findings": [_finding(f) for f in r.findings]}
            for r in rep.results.values()
        ],
        "dkim": [
            {"selector": i.selector, "published": i.published, "matches": i.matches}
            | {"bits": i.bits, "keySource": i.key_source}
            for i in rep.dkim.values()
        ],
    }


def _finding(f: Finding) -> Json:
    return {
        "status": f.status.value,
        "message": f.message,
        "found": f.found,
        "expected": f.expected,
        "fix": f.fix,
        "publish": list(f.publish),
        "withdraw": list(f.withdraw),
    }


def _finding_from_json(f: Json) -> Finding:
    return Finding(
        Status(f["status"]),
        f["message"],
        found=f["found"],
        expected=f["expected"],
        fix=f["fix"],
        publish=tuple(f["publish"]),
        withdraw=tuple(f["withdraw"]),
    )


def _report_from_json(raw: Json) -> DomainReport:
    results = {}
    for r in raw["results"]:  # in the run's order: the checks' order on the page
        findings = tuple(_finding_from_json(f) for f in r["findings"])
        results[r["check"]] = CheckResult(r["domain"], r["check"], findings)
    dkim = {}
    for i in raw["dkim"]:
        info = DkimInfo(i["selector"], i["published"], i["matches"], i["bits"], i["keySource"])
        dkim[info.selector] = info
    return DomainReport(raw["domain"], results, dkim, raw["checkedAt"])
