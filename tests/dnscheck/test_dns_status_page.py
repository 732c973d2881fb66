"""The DNS component's view of real results (knot) as the status page renders them."""

from __future__ import annotations

import re
import time
from html import escape

from agent.dns.component import domain_view
from agent.dns.model import DomainReport
from agent.status import State, StatusRegistry
from agent.web.page import render_page
from tests.dnscheck import world


def test_real_results_show_found_expected_and_the_fix(reports: dict[str, DomainReport]) -> None:
    registry = StatusRegistry()
    view = {d: domain_view(r) for d, r in reports.items()}
    registry.component("dns").set(State.DEGRADED, "checked", domains=view, lastRun=time.time())
    mx = view["mxelse.test"]["checks"]["mx"]
    assert (mx["found"], mx["expected"]) == ("10 mx.elsewhere.test", world.MX)
    assert mx["fixes"] and world.MX in mx["fixes"][0]
    page = render_page(registry.snapshot(), time.time())
    row = re.search(r'<details id="dns-mxelse\.test" open>.*?</details>', page, re.S)
    assert row is not None
    assert "<code>10 mx.elsewhere.test</code>" in row.group(0)
    assert f'<pre class="fix">{escape(mx["fixes"][0])}</pre>' in row.group(0)
    # a domain with only passes and warnings is folded; every failing one is open
    for domain, report in view.items():
        opened = f'<details id="dns-{domain}" open>' in page
        assert opened == (report["status"] in ("fail", "error")), domain
