"""Settings section ``mailflow:`` — the mail queue and the mail log, read for metrics.

Example::

    mailflow:
      enabled: true
      logFiles: [/var/log/mail/mail.log]      # DMS's rsyslog file (Postfix, Dovecot)
      queueCommand: [postqueue, -j]           # run through the executor, like `setup`
      queueInterval: 60
      postfixExporterNames: true              # also serve postfix_exporter's metric names
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agent.config_base import Section


class MailflowSettings(Section):
    """``mailflow:`` — the mail queue and the mail log, read for metrics (docs/mailflow.md)."""

    # follow the mail logs and read Postfix's queue (the mail log must be shared with the agent)
    enabled: bool = False
    # DMS's rsyslog writes Postfix and Dovecot to mail.log; Rspamd writes its own file beside it
    log_files: list[Path] = Field(default_factory=lambda: [Path("/var/log/mail/mail.log")])
    poll_interval: float = Field(1.0, gt=0, le=60)  # how often a followed file is read
    # where the follower keeps each file's identity and offset, so a restart neither counts a
    # line twice nor misses one; default: <dms.configDir>/dms-agent-mailflow.json
    state_file: Path | None = None
    # reads the queue, run through the agent's executor like `setup`
    queue_command: list[str] = Field(default_factory=lambda: ["postqueue", "-j"])
    queue_interval: float = Field(60.0, ge=0)  # 0: the queue is not read
    queue_timeout: float = Field(20.0, gt=0)  # seconds one queue reading may take
    # also serve postfix_exporter's metric names, so its dashboards keep working
    postfix_exporter_names: bool = True
