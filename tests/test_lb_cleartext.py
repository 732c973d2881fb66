"""A token sent in clear text: warned about once and shown in /status; requireTLS refuses."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.lb.config import LbTarget
from tests.lbkit import LbHost, failed_times, lb_settings, ok, start_agent
from tests.rig.proc import free_port


def settings_for(host: LbHost, **target: Any) -> Any:
    return lb_settings(
        ports=[{"name": "smtp", "frontend": free_port()}],
        address={"source": "fixed", "value": "127.0.0.2"},
        retry={"initial": 0.05, "maximum": 0.2},
        targets=[
            {
                "url": host.legacy_url,
                "format": "funkypenguin",
                "secretFile": str(host.token),
                **target,
            }
        ],
    )


def test_only_a_token_sent_itself_over_http_is_in_clear() -> None:
    def target(url: str, fmt: str) -> LbTarget:
        return LbTarget.model_validate({"url": url, "format": fmt, "secretFile": "/k"})

    assert target("http://lb:9000/hooks/x", "funkypenguin").token_in_clear
    assert not target("https://lb:9000/hooks/x", "funkypenguin").token_in_clear
    assert not target("http://lb:9000/hooks/x", "v2").token_in_clear  # only an HMAC is sent


async def test_a_cleartext_token_is_warned_once_and_shown_in_status(
    lb_host: LbHost, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(lb_host)
    with caplog.at_level(logging.WARNING, "dms_agent.lb"):
        first = start_agent(settings)
        try:
            await first.wait(ok)  # still sent: the default stays what people run
            assert "clear text" in first.target()["warning"]
        finally:
            await first.stop()
        again = start_agent(settings)  # a settings reload builds the component anew
        await again.stop()
    warnings = [r for r in caplog.records if "clear text" in r.getMessage()]
    assert len(warnings) == 1
    assert lb_host.token.read_text().strip() not in caplog.text


async def test_require_tls_refuses_to_send_to_http(lb_host: LbHost) -> None:
    agent = start_agent(settings_for(lb_host, requireTLS=True))
    try:
        await agent.wait(failed_times(2))
        target = agent.target()
        assert target["lastResult"] == "tls_required" and "warning" not in target
    finally:
        await agent.stop()
    assert lb_host.triggered("update-haproxy") == 0  # nothing reached the receiver
