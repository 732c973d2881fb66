"""The status page in a text browser (Debian's w3m): legible without CSS or script."""

from __future__ import annotations

import subprocess
import time

from agent.web.page import render_page
from tests.rig.proc import require_binary
from tests.web_support import registry_for


def dump(html: str) -> str:
    w3m = require_binary("w3m", "w3m")
    argv = [w3m, "-dump", "-cols", "120", "-T", "text/html", "-O", "UTF-8"]
    done = subprocess.run(argv, input=html, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_text_dump_shows_the_verdict_and_a_dns_fix() -> None:
    reg = registry_for(3, broken={"d1.example.com"}, failing={"smtp0"})
    text = dump(render_page(reg.snapshot(), time.time()))
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "dms-agent: mailserver unhealthy"
    assert "smtp0: connect: Connection refused (failing)" in text
    assert "d1.example.com fail" in lines  # the domain's heading
    fix = "d1.example.com. IN MX 10 mail.example.net."
    assert any(line.endswith(fix) for line in lines), "the fix must be on a line of its own end"
    assert "Health DNS DKIM Plan Sources LB Components" in lines  # the section links, apart
    assert "</" not in text and "<b " not in text  # no markup leaks into the text
    assert "Refreshing failed" not in text  # the script's note is empty until a refresh fails
    assert "45/48 passed" in text  # the history says itself in words where SVG is not drawn
