"""Mail flow, end to end with the real thing: a real Postfix (logging to a file through
postlogd, relaying to a scripted relay that accepts, defers or bounces), a real Dovecot refusing
wrong passwords, and the agent as a process whose /metrics and /status are scraped."""

from __future__ import annotations

import asyncio
import imaplib
import shutil
import smtplib
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.mailflow_support import scripted_relay
from tests.rig.ca import TestCA
from tests.rig.dovecot import Dovecot, start_dovecot
from tests.rig.logs import keep_logs
from tests.rig.postfix import Postfix, start_postfix
from tests.rig.proc import Daemon, free_port, require_binary, require_root

ROOT = Path(__file__).resolve().parent.parent

MAIN_CF = """
maillog_file = {dir}/log/mail.log
# postfix refuses a maillog_file outside these prefixes (default: /var, /dev/stdout)
maillog_file_prefixes = /tmp, /var, /dev/stdout
relayhost = [127.0.0.1]:{relay}
smtp_tls_security_level = none
# deferred mail is retried at once when the test flushes, not minutes later
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
smtpd_recipient_restrictions = reject_non_fqdn_recipient
"""


@dataclass
class Rig:
    postfix: Postfix
    dovecot: Dovecot
    mail_log: Path
    dovecot_log: Path
    http: int
    status: dict[str, Any]

    def send(self, *recipients: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "sender@example.test", ", ".join(recipients), "t"
        msg.set_content("hello\n")
        with smtplib.SMTP(self.postfix.host, self.postfix.submission, timeout=10) as smtp:
            smtp.send_message(msg)

    def bad_login(self) -> None:
        imap = imaplib.IMAP4(self.dovecot.host, self.dovecot.imap, timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("someone@example.test", "wrong")
        imap.logout()


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def until(
    port: int,
    check: Callable[[dict[tuple[str, tuple[tuple[str, str], ...]], float]], bool],
    timeout: float = 30,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    deadline = time.monotonic() + timeout
    last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    while time.monotonic() < deadline:
        try:
            last = await scrape(port)
            if check(last):
                return last
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.1)
    interesting = {k: v for k, v in last.items() if "mail" in k[0] or "postfix" in k[0]}
    raise AssertionError(f"metrics never got there: {interesting}")


def value(
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def rig(
    tmp_path: Path, test_ca: TestCA, request: pytest.FixtureRequest
) -> AsyncIterator[Rig]:
    require_root("postfix")
    require_binary("postfix", "postfix")
    require_binary("dovecot", "dovecot-imapd")
    async with scripted_relay() as relay:
        postfix, workdir = await asyncio.to_thread(
            start_postfix, test_ca, extra_main_cf=MAIN_CF.replace("{relay}", str(relay))
        )
        dovecot = await asyncio.to_thread(start_dovecot, tmp_path / "dovecot", test_ca)
        http = free_port()
        mail_log, dovecot_log = (
            workdir / "log" / "mail.log",
            tmp_path / "dovecot" / "dovecot-internal.log",
        )
        settings = {
            "server": {"port": http},
            "dms": {"configDir": str(tmp_path / "config"), "executor": {"kind": "local"}},
            "checks": {"enabled": False},
            "dns": {"enabled": False},
            "dkim": {"enabled": False},
            "reconcile": {"mode": "observe"},
            "mailflow": {
                "enabled": True,
                "logFiles": [str(mail_log), str(dovecot_log)],
                "queueCommand": ["postqueue", "-c", str(postfix.config_dir), "-j"],
                "queueInterval": 0.5,
                "pollInterval": 0.1,
            },
        }
        (tmp_path / "config").mkdir()
        path = tmp_path / "settings.yaml"
        path.write_text(yaml.safe_dump(settings))
        argv = [sys.executable, "-m", "agent", "run", "-c", str(path)]
        agent = await asyncio.to_thread(Daemon, "agent", argv, tmp_path, {"PYTHONPATH": str(ROOT)})
        keep_logs(request, agent)
        try:
            await until(http, lambda m: value(m, "dms_agent_mail_log_up", file=str(mail_log)) == 1)
            yield Rig(postfix, dovecot, mail_log, dovecot_log, http, settings)
        finally:
            agent.stop()
            dovecot.stop()
            postfix.stop()
            shutil.rmtree(workdir, ignore_errors=True)


async def status(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/status") as r:
        body: dict[str, Any] = (await r.json())["components"]["mailflow"]
        return body


async def test_deliveries_queue_rejects_and_logins_reach_metrics(rig: Rig) -> None:
    await asyncio.to_thread(rig.send, "ok@example.net")
    await asyncio.to_thread(rig.send, "defer-1@example.net")
    await asyncio.to_thread(rig.send, "bounce@example.net")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asyncio.to_thread(rig.send, "nobody@nodots")
    await asyncio.to_thread(rig.bad_login)

    d = "dms_agent_mail_deliveries_total"
    m = await until(
        rig.http,
        lambda m: (
            value(m, d, transport="smtp", status="sent") >= 1
            and value(m, d, transport="smtp", status="deferred") >= 1
            and value(m, d, transport="smtp", status="bounced") >= 1
            and value(m, "dms_agent_mail_queue_messages", queue="deferred") >= 1
            and value(m, "dms_agent_mail_auth_failures_total", service="imap") >= 1
            and value(
                m,
                "dms_agent_mail_rejects_total",
                service="smtpd",
                **{"class": "5xx"},
                reason="recipient",
            )
            >= 1
        ),
    )
    # postfix_exporter's names for the same facts, so its dashboards keep working
    assert value(m, "postfix_smtpd_messages_rejected_total", code="500") >= 1
    assert value(m, "postfix_smtpd_connects_total") >= 4
    assert value(m, "postfix_smtp_delivery_delay_seconds_count", stage="transmission") >= 3
    assert value(m, "postfix_showq_message_age_seconds_count", queue="deferred") >= 1
    assert value(m, "postfix_up", path="showq") == 1
    assert value(m, "dms_agent_mail_queue_oldest_message_age_seconds", queue="deferred") >= 0
    # bounded labels: no address, host or queue id in any mail-flow series
    for name, labels in m:
        if "mail" in name or name.startswith("postfix"):
            for key, val in labels:
                assert "@" not in val and "127.0.0.1" not in val, (name, key, val)

    st = await status(rig.http)
    reasons = st["details"]["deferredReasons"]
    assert reasons and "greylisted" in reasons[0]["reason"], reasons
    assert "@" not in str(reasons) and "127.0.0.1" not in str(reasons)
