"""Postfix's queue, read with ``postqueue -j`` through the agent's executor.

Why ``postqueue -j`` and not the ``showq`` socket postfix_exporter reads: it runs wherever
`setup` runs (the same executor: Kubernetes exec, docker exec or local), so the agent needs no
share of the mailserver's spool, no postdrop group and no second volume; its JSON is Postfix's
documented interface, where the socket's binary records are not. What it costs is measured in
bench/mailflow.py.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from agent.mailflow.metrics import AGE_BUCKETS, SIZE_BUCKETS, Histogram, QueueSnapshot

TOP_REASONS = 5

_ADDR = re.compile(r"<[^>]*>|\S+@\S+")
_HOST = re.compile(r"\S+\[[0-9A-Fa-f.:]+\](?::\d+)?")
_IP = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|\b[0-9A-Fa-f]*:[0-9A-Fa-f:]{2,}\b")
_NUM = re.compile(r"\b\d{5,}\b")


class QueueError(Exception):
    """postqueue's output could not be read."""


def snapshot(output: str, now: float | None = None) -> tuple[QueueSnapshot, list[tuple[str, int]]]:
    """``postqueue -j`` output -> per-queue figures, and the deferred queue's top reasons."""
    now = time.time() if now is None else now
    messages: Counter[str] = Counter()
    size: Counter[str] = Counter()
    oldest: dict[str, float] = {}
    sizes: dict[str, Histogram] = {}
    ages: dict[str, Histogram] = {}
    reasons: Counter[str] = Counter()
    groups: dict[str, str] = {}  # a deferred queue repeats few reasons: group each one once
    for number, entry in enumerate(_entries(output), 1):
        try:
            queue = str(entry["queue_name"])
            nbytes = int(entry.get("message_size", 0))
            age = max(0.0, now - float(entry["arrival_time"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise QueueError(
                f"postqueue -j, message {number}: {exc!r} missing or malformed"
            ) from exc
        messages[queue] += 1
        size[queue] += nbytes
        if age > oldest.get(queue, -1.0):
            oldest[queue] = age
        if queue not in sizes:
            sizes[queue], ages[queue] = Histogram(SIZE_BUCKETS), Histogram(AGE_BUCKETS)
        sizes[queue].observe(nbytes)
        ages[queue].observe(age)
        if queue == "deferred":
            for rcpt in entry.get("recipients") or ():
                if isinstance(rcpt, dict) and rcpt.get("delay_reason"):
                    raw = str(rcpt["delay_reason"])
                    if raw not in groups:
                        groups[raw] = reason_group(raw)
                    reasons[groups[raw]] += 1
    snap = QueueSnapshot(dict(messages), dict(size), oldest, sizes, ages, now)
    return snap, reasons.most_common(TOP_REASONS)


def _entries(output: str) -> Iterable[dict[str, Any]]:
    lines = [line for line in output.splitlines() if line.strip()]
    try:  # one C-speed parse of the whole output; line by line only to locate an error
        entries = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        entries = None
    if isinstance(entries, list) and all(isinstance(e, dict) for e in entries):
        return entries
    return list(_located_entries(output))


def _located_entries(output: str) -> Iterable[dict[str, Any]]:
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QueueError(f"postqueue -j, line {number}: not JSON ({exc.msg})") from None
        if not isinstance(entry, dict):
            raise QueueError(f"postqueue -j, line {number}: not a JSON object")
        yield entry


def reason_group(reason: str) -> str:
    """A deferral reason with its addresses, hosts and numbers taken out, so equal causes group
    together and nothing personal reaches /status."""
    text = _HOST.sub("HOST", reason)
    text = _ADDR.sub("ADDRESS", text)
    text = _IP.sub("IP", text)
    text = _NUM.sub("N", text)
    return " ".join(text.split())[:160]
