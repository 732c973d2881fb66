"""One mail-log line -> what it counts (pure, no I/O).

The lines are those Postfix (syslog or ``maillog_file``), Dovecot and Rspamd write; the
syslog prefix (time, host) is ignored. Every label value comes from a small fixed set: never an
address, a host, a queue id or free text, so a line from an attacker cannot grow the metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TRANSPORTS = frozenset({"smtp", "lmtp", "local", "virtual", "pipe", "error", "discard", "relay"})
STATUSES = frozenset({"sent", "deferred", "bounced", "expired"})
AUTH_SERVICES = frozenset({"smtpd", "imap", "pop3", "submission", "managesieve", "lmtp"})
RSPAMD_ACTIONS = frozenset(
    {"no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"}
)

# postfix/smtp[12], postfix/submission/smtpd[34], postfix-relay/smtp[5]: the last part names
# the program, the first the instance
_POSTFIX = re.compile(r"\bpostfix[\w.-]*((?:/[\w.-]+)+)\[\d+\]: (.*)$")
_DELIVERY = re.compile(
    r"^\w+: to=<[^>]*>, .*?\bdelay=([\d.]+), delays=([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+), "
    r"dsn=[\d.]+, status=(\w+)"
)
_REJECT = re.compile(r"^(?:NOQUEUE|\w+): reject: \S+ from \S+: (\d)\d\d (.*)$")
_SASL_FAIL = re.compile(r"^warning: \S+: SASL \S+ authentication failed")
_DOVECOT_FAIL = re.compile(r"\b(imap|pop3|submission|managesieve)-login: .*\(auth failed,")
_RSPAMD = re.compile(r"\(default: [TF] \(([a-z ]+)\)")

# A reject's text -> a group. First match wins; the order puts the specific before the broad.
REJECT_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rbl", re.compile(r"blocked using", re.I)),
    ("relay_denied", re.compile(r"Relay access denied", re.I)),
    ("unknown_recipient", re.compile(r"User unknown|Recipient address rejected: .*unknown", re.I)),
    ("greylisted", re.compile(r"greylist", re.I)),
    ("sender", re.compile(r"Sender address rejected", re.I)),
    ("recipient", re.compile(r"Recipient address rejected", re.I)),
    ("helo", re.compile(r"Helo command rejected", re.I)),
    ("client", re.compile(r"Client host rejected", re.I)),
    ("policy", re.compile(r"policy|rate limit|too many", re.I)),
    ("spam", re.compile(r"spam|virus|content", re.I)),
)

Stage = Literal["before_queue_manager", "queue_manager", "connection_setup", "transmission"]
STAGES: tuple[Stage, ...] = (
    "before_queue_manager",
    "queue_manager",
    "connection_setup",
    "transmission",
)


@dataclass(frozen=True, slots=True)
class Delivery:
    transport: str
    status: str
    delay: float
    stages: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Reject:
    service: str  # smtpd, postscreen, cleanup
    code_class: str  # 4xx or 5xx
    reason: str


@dataclass(frozen=True, slots=True)
class Simple:
    """A line that increments one counter: ``what`` names it."""

    what: Literal[
        "smtpd_connect",
        "smtpd_disconnect",
        "smtpd_processed",
        "qmgr_removed",
        "cleanup_processed",
        "cleanup_rejected",
    ]


@dataclass(frozen=True, slots=True)
class AuthFailure:
    service: str


@dataclass(frozen=True, slots=True)
class RspamdAction:
    action: str


Parsed = Delivery | Reject | Simple | AuthFailure | RspamdAction | None


def parse(line: str) -> Parsed:
    """What ``line`` counts, or None for a line that counts nothing."""
    m = _POSTFIX.search(line)
    if m is not None:
        return _postfix(m.group(1).rsplit("/", 1)[-1], m.group(2))
    d = _DOVECOT_FAIL.search(line)
    if d is not None:
        return AuthFailure(d.group(1))
    r = _RSPAMD.search(line)
    if r is not None and "rspamd" in line:
        action = r.group(1)
        return RspamdAction(action if action in RSPAMD_ACTIONS else "other")
    return None


def _postfix(program: str, text: str) -> Parsed:
    if program == "smtpd":
        return _smtpd(text)
    if program == "postscreen":
        return _reject(program, text)
    if program == "qmgr":
        return Simple("qmgr_removed") if text.endswith(": removed") else None
    if program == "cleanup":
        if ": message-id=" in text:
            return Simple("cleanup_processed")
        return Simple("cleanup_rejected") if ": reject: " in text else None
    return _delivery(program, text)


def _smtpd(text: str) -> Parsed:
    if text.startswith("connect from "):
        return Simple("smtpd_connect")
    if text.startswith("disconnect from "):
        return Simple("smtpd_disconnect")
    if _SASL_FAIL.match(text):
        return AuthFailure("smtpd")
    if ": client=" in text:
        return Simple("smtpd_processed")
    return _reject("smtpd", text)


def _reject(service: str, text: str) -> Reject | None:
    m = _REJECT.match(text)
    if m is None:
        return None
    reason = next((name for name, rx in REJECT_REASONS if rx.search(m.group(2))), "other")
    return Reject(service, f"{m.group(1)}xx", reason)


def _delivery(program: str, text: str) -> Delivery | None:
    m = _DELIVERY.match(text)
    if m is None:
        return None
    status = m.group(6)
    stages = (float(m.group(2)), float(m.group(3)), float(m.group(4)), float(m.group(5)))
    return Delivery(
        transport=program if program in TRANSPORTS else "other",
        status=status if status in STATUSES else "other",
        delay=float(m.group(1)),
        stages=stages,
    )
