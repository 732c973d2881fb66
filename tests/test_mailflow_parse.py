"""Log lines and queue output -> what they count. The lines are in the formats the real
daemons write (the end-to-end test in test_mailflow_agent.py meets them live); these pin the
label sets: whatever a line says, no address, host or id becomes a label value."""

from __future__ import annotations

import json

import pytest

from agent.mailflow import logparse
from agent.mailflow.metrics import MailflowMetrics
from agent.mailflow.queue import QueueError, reason_group, snapshot

PREFIX = "Dec  3 12:00:00 mail "


def test_hostile_lines_cannot_grow_label_sets() -> None:
    lines = [
        PREFIX + "postfix/evil[1]: A1: to=<a@b>, relay=h[1.2.3.4]:25, delay=1, "
        "delays=0/0/0/1, dsn=2.0.0, status=weird (a@b)",
        PREFIX + "postfix/smtpd[2]: NOQUEUE: reject: RCPT from h[1.2.3.4]: 550 5.1.1 <v@x>: "
        "made-up reason v@x",
        PREFIX + "dovecot: imap-login: Disconnected (auth failed, 1 attempts): user=<v@x>",
        PREFIX + "rspamd_task_write_log: (default: T (evil action v@x)): [1.0/15.0]",
    ]
    m = MailflowMetrics(exporter_names=True)
    for line in lines:
        m.observe(logparse.parse(line))
    labels = {v for fam in m.families() for s in fam.samples for v in s.labels.values()}
    assert not [v for v in labels if "@" in v or "1.2.3.4" in v or "evil" in v], labels
    assert m.deliveries == {("other", "other"): 1}
    assert m.rejects == {("smtpd", "5xx", "other"): 1}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "postfix/submission/smtpd[7]: warning: unknown[1.2.3.4]: SASL LOGIN authentication "
            "failed: UGFzc3dvcmQ6",
            logparse.AuthFailure("smtpd"),
        ),
        (
            "postfix/postscreen[9]: NOQUEUE: reject: RCPT from [1.2.3.4]:5: 550 5.7.1 Service "
            "unavailable; client [1.2.3.4] blocked using zen.spamhaus.org",
            logparse.Reject("postscreen", "5xx", "rbl"),
        ),
        (
            "postfix/smtpd[9]: NOQUEUE: reject: RCPT from h[1.2.3.4]: 454 4.7.1 <a@b>: Relay "
            "access denied; from=<c@d>",
            logparse.Reject("smtpd", "4xx", "relay_denied"),
        ),
        (
            "dovecot: pop3-login: Login aborted: Connection closed (auth failed, 3 attempts in 12 "
            "secs) (auth_failed): user=<a@b>",
            logparse.AuthFailure("pop3"),
        ),
        (
            "rspamd_task_write_log: id: <x>, qid: <A1>, (default: F (no action)): [2.10/15.00]",
            logparse.RspamdAction("no action"),
        ),
    ],
)
def test_lines_people_meet(line: str, expected: logparse.Parsed) -> None:
    assert logparse.parse(PREFIX + line) == expected


def test_queue_reasons_are_grouped_without_addresses_or_hosts() -> None:
    a = "host mx.example.org[192.0.2.7] said: 451 4.7.1 <bob@example.org>: try later (in reply)"
    b = "host mx2.example.org[192.0.2.8]:25 said: 451 4.7.1 <eve@example.org>: try later (in reply)"
    assert reason_group(a) == reason_group(b)
    assert "@" not in reason_group(a) and "192.0.2" not in reason_group(a)


def test_queue_snapshot_and_located_errors() -> None:
    rows = [
        {
            "queue_name": "deferred",
            "arrival_time": 1000,
            "message_size": 2048,
            "recipients": [
                {"address": "a@b", "delay_reason": "connect to h[192.0.2.1]:25: refused"}
            ],
        },
        {"queue_name": "active", "arrival_time": 1090, "message_size": 100, "recipients": []},
    ]
    snap, reasons = snapshot("\n".join(json.dumps(r) for r in rows), now=1100)
    assert snap.messages == {"deferred": 1, "active": 1}
    assert snap.oldest_age["deferred"] == 100 and snap.size_bytes["deferred"] == 2048
    assert reasons == [("connect to HOST: refused", 1)]
    with pytest.raises(QueueError, match="line 2: not JSON"):
        snapshot(json.dumps(rows[0]) + "\n{broken")
    with pytest.raises(QueueError, match="message 1"):
        snapshot(json.dumps({"queue_name": "active"}))
