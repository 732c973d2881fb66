"""The DNS run as a worker process (agent/dns/worker.py), against the real knotd: the same
reports as a run in the agent, error counts carried over, a crash located in /status, and no
child left behind by a deadline or a cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.app import AgentContext
from agent.dns import runner, worker
from agent.dns.component import DnsChecker
from agent.dns.config import DnsSettings
from agent.dns.model import DomainReport
from agent.dns.plan import Plan, plan_from
from agent.dns.runsettings import RunSettings
from agent.dns.wire import report_from_json, report_to_json
from agent.mailstate.model import Account, Desired, MailState
from agent.metrics import REGISTRY
from agent.pacing import Pacer
from agent.settings import DmsSettings, Settings
from agent.status import State, StatusRegistry
from agent.worker import WorkerFailed, crash_site, run_worker, run_worker_text
from tests.dnscheck.conftest import World

AGENT_DNS = Path(worker.__file__).parent
NAMES = ["good.test", "dkimbad.test", "nomx.test", "stsbad.test", "twospf.test", "dkimed.test"]


def without_times(reports: dict[str, DomainReport]) -> dict[str, DomainReport]:
    for report in reports.values():
        report.checked_at = 0.0
    return reports


def test_settings_and_plan_cross_as_json(dns_world: World, tmp_path: Path) -> None:
    settings = dns_world.settings(
        domains=["extra.test"],
        deadline=9.0,
        egress=["192.0.2.7", "2001:db8::7"],
        nameservers=["127.0.0.1:5300", "[::1]:53"],
        default_dkim_selectors=["s1", "s2"],
        min_dkim_bits=1024,
        smtp_port=2525,
        concurrency=3,
    )
    req = worker.request(settings, plan_from(settings, None, NAMES), dns_world.config_dir)
    crossed = RunSettings.from_json(json.loads(json.dumps(req["settings"])))
    assert crossed == settings.for_run()
    assert crossed.egress_addresses() == settings.egress_addresses()
    assert Plan.from_json(req["plan"]) == plan_from(settings, None, NAMES)
    bare = DnsSettings(ipv4=["192.0.2.1"], mta_sts={"caBundle": str(tmp_path / "ca.pem")})
    crossed = RunSettings.from_json(json.loads(json.dumps(bare.for_run().as_json())))
    assert crossed == bare.for_run()  # defaults, no egress, no MX host, a CA bundle
    assert crossed.egress_addresses() == bare.egress_addresses()


def test_the_worker_reads_its_settings_without_pydantic() -> None:
    """The settings come validated from the agent: the worker builds them without pydantic
    (importing it and building the settings' models cost ~0.1 s of CPU per run)."""
    code = (
        "import sys, agent.dns.worker, agent.dns.runner, agent.dns.plan, agent.dns.wire; "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert {"dns", "spf", "dkim", "agent"} <= loaded  # the run's modules are there
    assert "pydantic" not in loaded


def test_reports_cross_as_json_unchanged(reports: dict[str, DomainReport]) -> None:
    for report in reports.values():
        again = report_from_json(json.loads(json.dumps(report_to_json(report))))
        assert again == report
        assert list(again.results) == list(report.results)  # the checks' order too


async def test_worker_reports_equal_a_run_in_the_agent(dns_world: World) -> None:
    settings = dns_world.settings()
    plan = plan_from(settings, None, NAMES)
    here = await runner.run(settings, plan, dns_world.config_dir)
    req = worker.request(settings, plan, dns_world.config_dir)
    reply = await run_worker_text(worker.MODULE, req, 60)
    assert len(reply.splitlines()) == 1 + len(here)  # the error counts, then a line per report
    there, query_errors = await worker.read_reply(reply, Pacer())
    assert without_times(there) == without_times(here)
    assert there["good.test"].dkim["mail"].matches is True
    assert query_errors == {}


async def test_a_reply_line_that_is_no_report_is_a_located_worker_failure() -> None:
    empty = {"domain": "a.test", "checkedAt": 0, "results": [], "dkim": []}
    reply = [{"queryErrors": {}}, {"name": "a.test", "report": empty}, {"report": empty}]
    text = "\n".join(json.dumps(part) for part in reply)
    with pytest.raises(WorkerFailed, match=r"line 3 of its reply is no report \(KeyError"):
        await worker.read_reply(text, Pacer())


def silent_nameserver() -> Iterator[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: every query times out
        yield f"127.0.0.1:{silent.getsockname()[1]}"


silent = pytest.fixture(silent_nameserver)


def query_errors(kind: str) -> float:
    value = REGISTRY.get_sample_value("dms_agent_dns_query_errors_total", {"kind": kind})
    return value or 0.0


def context(settings: DnsSettings, config_dir: Path) -> AgentContext:
    full = Settings(dns=settings, dms=DmsSettings(config_dir=config_dir))
    return AgentContext(settings=full, status=StatusRegistry())


async def test_lookup_errors_of_the_worker_count_in_the_agent(
    dns_world: World, silent: str
) -> None:
    settings = dns_world.settings(
        domains=["good.test"], nameservers=[silent], timeout=0.1, lifetime=0.3
    )
    before = query_errors("timeout")
    reports = await DnsChecker(context(settings, dns_world.config_dir)).check_once()
    assert {r.status.value for rep in reports.values() for r in rep.results.values()} == {"error"}
    assert query_errors("timeout") > before


async def test_a_crashing_worker_is_located_in_status_and_the_last_results_stay(
    dns_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(dns_world.settings(domains=["good.test"]), dns_world.config_dir)
    ctx.hub.desired.set(Desired(MailState(accounts={"a@nomx.test": Account("a@nomx.test")})))
    checker = DnsChecker(ctx)
    await checker.check_once()
    entry = ctx.status.component("dns")
    assert entry.state is State.DEGRADED and "nomx.test" in entry.details["domains"]

    real = worker.request
    monkeypatch.setattr(worker, "request", lambda *a: {**real(*a), "plan": [{"name": 1}]})
    assert await checker.check_once() == {}
    assert entry.state is State.FAILED
    assert entry.message.startswith("the DNS run failed: agent.dns.worker: exited with 1:")
    assert "KeyError: 'selectors'" in entry.message
    assert "agent/dns/plan.py:" in entry.details["workerError"]  # where it broke
    assert "nomx.test" in entry.details["domains"]  # the last results stay on the page

    monkeypatch.setattr(worker, "request", real)
    await checker.check_once()
    assert entry.state is State.DEGRADED and "workerError" not in entry.details


def test_crash_site_names_the_last_frame_and_the_error() -> None:
    trace = (
        "Traceback (most recent call last):\n"
        '  File "/x/agent/dns/worker.py", line 40, in handle\n    plan = ...\n'
        '  File "/x/agent/dns/plan.py", line 38, in from_json\n    [DomainSpec(...)]\n'
        "KeyError: 'selectors'\n"
    )
    assert crash_site(trace) == ": KeyError: 'selectors' (at /x/agent/dns/plan.py:38)"
    ours = trace.replace("/x/agent/dns/worker.py", f"{AGENT_DNS}/worker.py")
    assert crash_site(ours).endswith(f"(at {AGENT_DNS}/worker.py:40)")
    assert crash_site("killed by the kernel\n") == ": killed by the kernel"
    assert crash_site("") == ""


def worker_children() -> list[int]:
    """Our child processes running the DNS worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
            if int(stat[1]) == os.getpid() and worker.MODULE.encode() in cmdline:
                found.append(int(entry.name))
    return found


async def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def hanging_request(dns_world: World, silent: str) -> dict[str, object]:
    """A run that waits 60 s for a nameserver that never answers."""
    settings = dns_world.settings(
        domains=["good.test"], nameservers=[silent], timeout=60.0, lifetime=60.0, deadline=120.0
    )
    return worker.request(settings, plan_from(settings, None), dns_world.config_dir)


async def test_a_worker_past_its_deadline_is_killed_and_reaped(
    dns_world: World, silent: str
) -> None:
    with pytest.raises(WorkerFailed, match=r"agent.dns.worker: no reply within 3 s; killed"):
        await run_worker(worker.MODULE, hanging_request(dns_world, silent), 3.0)
    assert worker_children() == []


async def test_cancelling_the_run_kills_and_reaps_the_worker(dns_world: World, silent: str) -> None:
    task = asyncio.create_task(run_worker(worker.MODULE, hanging_request(dns_world, silent), 600))
    await wait_for(worker_children)
    [pid] = worker_children()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pid not in worker_children()
    with pytest.raises(ProcessLookupError):  # reaped too: not even a zombie is left
        os.kill(pid, 0)


async def test_workers_run_one_at_a_time(dns_world: World, silent: str) -> None:
    """The pod's peak memory is the agent plus one worker, never two."""
    request = hanging_request(dns_world, silent)
    runs = [asyncio.create_task(run_worker(worker.MODULE, request, 2.0)) for _ in range(2)]
    most = 0
    while not all(r.done() for r in runs):
        most = max(most, len(worker_children()))
        await asyncio.sleep(0.02)
    for run in runs:  # both ran, one after the other, to their deadline
        with pytest.raises(WorkerFailed, match="no reply within 2 s"):
            await run
    assert most == 1
