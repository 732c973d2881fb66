"""One run of the DNS checks as a worker process: ``python -m agent.dns.worker``.

The agent (agent/dns/component.py) sends the settings, the plan and DMS's config folder as
JSON on stdin; this runs ``runner.run`` and answers on stdout, one JSON object per line: first
the lookups' error counts (the agent's ``dms_agent_dns_query_errors_total``), then one line per
report. The agent reads the reply a report at a time, handing its loop back in between (200
domains' reply in one piece held it for 3-7 ms). dnspython, pyspf, dkimpy and the TLS contexts
live only here, for the few seconds a run takes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.dns.runsettings import RunSettings, Validated, for_run
from agent.dns.wire import report_from_json
from agent.worker import Json, WorkerFailed, parse_reply, serve_lines

if TYPE_CHECKING:
    from agent.dns.model import DomainReport
    from agent.pacing import Pacer

MODULE = "agent.dns.worker"


def request(settings: RunSettings | Validated, plan: Any, config_dir: Path | None) -> Json:
    """The request the agent sends (``settings``: DnsSettings, ``plan``: Plan)."""
    return {
        # validated in the agent already: the worker builds it without pydantic
        "settings": for_run(settings).as_json(),
        "plan": plan.as_json(),
        "configDir": None if config_dir is None else str(config_dir),
    }


async def read_reply(text: str, pace: Pacer) -> tuple[dict[str, DomainReport], dict[str, int]]:
    """The reports and the error counts of a worker's reply (``handle``'s lines)."""
    head, *parts = text.splitlines() or [""]
    query_errors = parse_reply(MODULE, head).get("queryErrors")
    if not isinstance(query_errors, dict):
        raise WorkerFailed(f"{MODULE}: its reply does not start with the error counts")
    reports = {}
    for number, line in enumerate(parts, 2):
        part = parse_reply(MODULE, line)
        try:
            reports[part["name"]] = report_from_json(part["report"])
        except (KeyError, TypeError, ValueError) as exc:
            what = f"{type(exc).__name__}: {exc}"
            msg = f"{MODULE}: line {number} of its reply is no report ({what})"
            raise WorkerFailed(msg) from None
        await pace()
    return reports, query_errors


def handle(req: Json) -> list[Json]:
    from agent.dns import runner
    from agent.dns.plan import Plan
    from agent.dns.wire import report_to_json

    settings = RunSettings.from_json(req["settings"])
    config_dir = Path(req["configDir"]) if req["configDir"] is not None else None
    errors: Counter[str] = Counter()

    def count(kind: str) -> None:
        errors[kind] += 1

    plan = Plan.from_json(req["plan"])
    reports = asyncio.run(runner.run(settings, plan, config_dir, count))
    parts = [{"name": name, "report": report_to_json(rep)} for name, rep in reports.items()]
    return [{"queryErrors": dict(errors)}, *parts]


if __name__ == "__main__":
    serve_lines(handle)
