"""One run of the DNS checks as a worker process: ``python -m agent.dns.worker``.

The agent (agent/dns/component.py) sends the settings, the plan and DMS's config folder as
JSON on stdin; this runs ``runner.run`` and answers with the reports and the lookups' error
counts (the agent's ``dms_agent_dns_query_errors_total``) as JSON on stdout. dnspython, pyspf,
dkimpy and the TLS contexts live only here, for the few seconds a run takes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from agent.worker import Json, serve

MODULE = "agent.dns.worker"


def request(settings: Any, plan: Any, config_dir: Path | None) -> Json:
    """The request the agent sends (``settings``: DnsSettings, ``plan``: Plan)."""
    return {
        "settings": settings.model_dump(mode="json", by_alias=True),
        "plan": plan.as_json(),
        "configDir": None if config_dir is None else str(config_dir),
    }


def handle(req: Json) -> Json:
    from agent.dns import runner
    from agent.dns.config import DnsSettings
    from agent.dns.plan import Plan
    from agent.dns.wire import reports_to_json

    settings = DnsSettings.model_validate(req["settings"])
    config_dir = Path(req["configDir"]) if req["configDir"] is not None else None
    errors: Counter[str] = Counter()

    def count(kind: str) -> None:
        errors[kind] += 1

    plan = Plan.from_json(req["plan"])
    reports = asyncio.run(runner.run(settings, plan, config_dir, count))
    return {"reports": reports_to_json(reports), "queryErrors": dict(errors)}


if __name__ == "__main__":
    serve(handle)
