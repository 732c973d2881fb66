"""The mail-flow metrics, served from one collector on the agent's registry.

Counters live in plain dicts and are turned into metric families at scrape time, because the
same number is served under two names where postfix_exporter has one for it (so dashboards
built for that exporter keep working) and the switch between them is a setting. Every label
value comes from logparse's fixed sets or from the settings, never from a log line's text.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from agent.mailflow import logparse
from agent.metrics import REGISTRY

DELAY_BUCKETS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)  # postfix_exporter's delay buckets
SIZE_BUCKETS = (1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)  # postfix_exporter's queue size buckets
AGE_BUCKETS = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)  # postfix_exporter's queue age buckets
TOTAL_DELAY_BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0, 86400.0)
QUEUES = ("active", "deferred", "hold", "incoming", "maildrop")


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@dataclass(slots=True)
class QueueSnapshot:
    """One reading of Postfix's queue."""

    messages: dict[str, int]
    size_bytes: dict[str, int]
    oldest_age: dict[str, float]
    sizes: dict[str, Histogram]
    ages: dict[str, Histogram]
    read_at: float


@dataclass(slots=True)
class LogFileState:
    lines: int = 0
    behind_bytes: int = 0
    last_read: float = 0.0
    up: bool = False


class MailflowMetrics:
    """What the log follower and the queue reader have seen, in this process's lifetime."""

    def __init__(self, exporter_names: bool) -> None:
        self.exporter_names = exporter_names
        self.deliveries: Counter[tuple[str, str]] = Counter()
        self.delivery_delay: dict[tuple[str, str], Histogram] = {}
        self.stage_delay: dict[tuple[str, str], Histogram] = {}
        self.rejects: Counter[tuple[str, str, str]] = Counter()
        self.auth_failures: Counter[str] = Counter()
        self.rspamd_actions: Counter[str] = Counter()
        self.simple: Counter[str] = Counter()
        self.files: dict[str, LogFileState] = {}
        self.queue: QueueSnapshot | None = None
        self.queue_up = False

    def observe(self, event: logparse.Parsed) -> None:
        match event:
            case logparse.Delivery(transport, status, delay, stages):
                self.deliveries[(transport, status)] += 1
                hist = self.delivery_delay.get((transport, status))
                if hist is None:
                    hist = self.delivery_delay[(transport, status)] = Histogram(TOTAL_DELAY_BUCKETS)
                hist.observe(delay)
                for stage, seconds in zip(logparse.STAGES, stages, strict=True):
                    key = (transport, stage)
                    if key not in self.stage_delay:
                        self.stage_delay[key] = Histogram(DELAY_BUCKETS)
                    self.stage_delay[key].observe(seconds)
            case logparse.Reject(service, code_class, reason):
                self.rejects[(service, code_class, reason)] += 1
            case logparse.AuthFailure(service):
                self.auth_failures[service] += 1
            case logparse.RspamdAction(action):
                self.rspamd_actions[action] += 1
            case logparse.Simple(what):
                self.simple[what] += 1
            case None:
                pass

    def file(self, path: str) -> LogFileState:
        if path not in self.files:
            self.files[path] = LogFileState()
        return self.files[path]

    # ---- exposition -------------------------------------------------------------------------
    def families(self) -> Iterable[Metric]:
        yield from self._ours()
        if self.exporter_names:
            yield from self._postfix_exporter()

    def _ours(self) -> Iterable[Metric]:
        p = "dms_agent_mail_"
        yield _counter(
            p + "deliveries",
            "Delivery attempts logged by Postfix, by transport and status.",
            ["transport", "status"],
            self.deliveries.items(),
        )
        delay = HistogramMetricFamily(
            p + "delivery_delay_seconds",
            "Time from a message's arrival to this delivery attempt (Postfix's delay=).",
            labels=["transport", "status"],
        )
        for key, hist in sorted(self.delivery_delay.items()):
            delay.add_metric(list(key), hist.cumulative(), hist.total)
        yield delay
        yield _counter(
            p + "rejects",
            "SMTP rejects logged by smtpd, postscreen and cleanup, by class and reason group.",
            ["service", "class", "reason"],
            self.rejects.items(),
        )
        yield _counter(
            p + "auth_failures",
            "Failed logins: Postfix SASL (smtpd) and Dovecot (imap, pop3, ...).",
            ["service"],
            [((k,), v) for k, v in self.auth_failures.items()],
        )
        yield _counter(
            p + "rspamd_actions",
            "Rspamd's action per scanned message.",
            ["action"],
            [((k,), v) for k, v in self.rspamd_actions.items()],
        )
        yield _counter(
            p + "smtpd_connects",
            "Connections accepted by smtpd.",
            [],
            [((), self.simple["smtpd_connect"])],
        )
        yield from self._log_files()
        yield from self._queue_ours()

    def _log_files(self) -> Iterable[Metric]:
        lines = CounterMetricFamily(
            "dms_agent_mail_log_lines", "Lines read from a followed mail log.", labels=["file"]
        )
        behind = GaugeMetricFamily(
            "dms_agent_mail_log_behind_bytes",
            "Bytes written to a followed mail log that the agent has not read yet.",
            labels=["file"],
        )
        last = GaugeMetricFamily(
            "dms_agent_mail_log_last_read_timestamp_seconds",
            "When the follower last finished reading a mail log (it reads even when idle).",
            labels=["file"],
        )
        up = GaugeMetricFamily(
            "dms_agent_mail_log_up", "1 while a mail log can be read, 0 otherwise.", labels=["file"]
        )
        for path, state in sorted(self.files.items()):
            lines.add_metric([path], state.lines)
            behind.add_metric([path], state.behind_bytes)
            last.add_metric([path], state.last_read)
            up.add_metric([path], 1.0 if state.up else 0.0)
        yield from (lines, behind, last, up)

    def _queue_ours(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "dms_agent_mail_queue_up", "1 when the last reading of Postfix's queue succeeded."
        )
        up.add_metric([], 1.0 if self.queue_up else 0.0)
        yield up
        q = self.queue
        if q is None:
            return
        specs = (
            ("messages", "Messages in a Postfix queue.", q.messages),
            ("size_bytes", "Total size of the messages in a Postfix queue.", q.size_bytes),
            (
                "oldest_message_age_seconds",
                "Age of the oldest message in a Postfix queue (0 when empty).",
                q.oldest_age,
            ),
        )
        for name, doc, values in specs:
            fam = GaugeMetricFamily("dms_agent_mail_queue_" + name, doc, labels=["queue"])
            for queue in QUEUES:
                fam.add_metric([queue], float(values.get(queue, 0)))
            yield fam
        stamp = GaugeMetricFamily(
            "dms_agent_mail_queue_read_timestamp_seconds", "When the queue was last read."
        )
        stamp.add_metric([], q.read_at)
        yield stamp

    def _postfix_exporter(self) -> Iterable[Metric]:
        """The families postfix_exporter serves for the same facts, with its names and labels."""
        s = self.simple
        for name, doc, what in (
            ("smtpd_connects", "Total number of incoming connections.", "smtpd_connect"),
            ("smtpd_disconnects", "Total number of incoming disconnections.", "smtpd_disconnect"),
            ("qmgr_messages_removed", "Messages removed from the queues.", "qmgr_removed"),
            ("cleanup_messages_processed", "Messages processed by cleanup.", "cleanup_processed"),
            ("cleanup_messages_rejected", "Messages rejected by cleanup.", "cleanup_rejected"),
        ):
            yield _counter("postfix_" + name, doc, [], [((), s[what])])
        # usernames are never labels here: one series with an empty sasl_username
        yield _counter(
            "postfix_smtpd_messages_processed",
            "Total number of messages processed (sasl_username is always empty).",
            ["sasl_username"],
            [(("",), s["smtpd_processed"])],
        )
        codes: Counter[tuple[str]] = Counter()
        for (service, code_class, _reason), n in self.rejects.items():
            if service == "smtpd":
                codes[(code_class.replace("xx", "00"),)] += n
        yield _counter(
            "postfix_smtpd_messages_rejected",
            "Total number of NOQUEUE rejects (code: the reply's class, 400 or 500).",
            ["code"],
            codes.items(),
        )
        yield _counter(
            "postfix_smtpd_sasl_authentication_failures",
            "Total number of SASL authentication failures.",
            [],
            [((), self.auth_failures["smtpd"])],
        )
        for transport in ("smtp", "lmtp"):
            fam = HistogramMetricFamily(
                f"postfix_{transport}_delivery_delay_seconds",
                f"{transport.upper()} message processing time in seconds.",
                labels=["stage"],
            )
            for (t, stage), hist in sorted(self.stage_delay.items()):
                if t == transport:
                    fam.add_metric([stage], hist.cumulative(), hist.total)
            yield fam
        deferred = sum(n for (_t, status), n in self.deliveries.items() if status == "deferred")
        yield _counter(
            "postfix_smtp_status_deferred",
            "Total number of messages deferred.",
            [],
            [((), deferred)],
        )
        yield from self._showq()
        up = GaugeMetricFamily(
            "postfix_up", "Whether scraping Postfix's metrics was successful.", labels=["path"]
        )
        up.add_metric(["showq"], 1.0 if self.queue_up else 0.0)
        for path, state in sorted(self.files.items()):
            up.add_metric([path], 1.0 if state.up else 0.0)
        yield up

    def _showq(self) -> Iterable[Metric]:
        q = self.queue
        if q is None:
            return
        for name, doc, hists, buckets in (
            (
                "size_bytes",
                "Size of messages in Postfix's message queue, in bytes",
                q.sizes,
                SIZE_BUCKETS,
            ),
            (
                "age_seconds",
                "Age of messages in Postfix's message queue, in seconds",
                q.ages,
                AGE_BUCKETS,
            ),
        ):
            fam = HistogramMetricFamily(f"postfix_showq_message_{name}", doc, labels=["queue"])
            for queue in QUEUES:
                hist = hists.get(queue) or Histogram(buckets)
                fam.add_metric([queue], hist.cumulative(), hist.total)
            yield fam


def _counter(
    name: str,
    doc: str,
    labels: Sequence[str],
    values: Iterable[tuple[tuple[str, ...], int | float]],
) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=list(labels))
    for key, value in sorted(values):
        fam.add_metric(list(key), float(value))
    return fam


class _Collector(Collector):
    """Serves the running component's metrics; nothing while mail flow is off."""

    def __init__(self) -> None:
        self.current: MailflowMetrics | None = None

    def collect(self) -> Iterable[Metric]:
        if self.current is not None:
            yield from self.current.families()

    def describe(self) -> Iterable[Metric]:
        """Every family this collector can serve (names and label names, no samples)."""
        example = MailflowMetrics(exporter_names=True)
        example.queue = QueueSnapshot({}, {}, {}, {}, {}, 0.0)
        return list(example.families())


COLLECTOR = _Collector()
REGISTRY.register(COLLECTOR)
