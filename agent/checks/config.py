"""Settings section ``checks:`` — liveness checks of the mailserver, the verdict, remediation.

Timing fields mean what the same fields of a Kubernetes probe mean: ``interval``
(periodSeconds), ``timeout`` (timeoutSeconds), ``initialDelay`` (initialDelaySeconds),
``failureThreshold`` (consecutive failures before the check counts as failed) and
``successThreshold`` (consecutive successes before a failed or not-yet-known check counts as
passing again). Example::

    checks:
      enabled: true
      verdictFile: /var/run/dms-agent/verdict     # an emptyDir shared with the mailserver
      checks:
        - {name: smtp, kind: smtp, port: 25, tls: starttls}
        - name: clamd
          kind: clamd
          socket: /var/run/clamav/clamd.ctl
          remediation: {command: [supervisorctl, restart, clamav], grace: 120}
        - name: legacy                                # the seed chart's form
          kind: exec
          commands: ["test -f /var/run/dovecot/master.pid", "postfix status"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from agent.config_base import Section

TlsMode = Literal["none", "starttls", "implicit"]


class Remediation(Section):
    """An in-place fix run through the executor when a check crosses its failureThreshold.

    ``command``: an argv list, or one string run with ``sh -c``. At most ``maxActions`` runs of
    the same command per ``window`` seconds (shared by every check naming that command). After
    a run the check has ``grace`` seconds to pass again before the verdict turns unhealthy.
    """

    command: list[str] | str
    max_actions: int = Field(3, ge=1)
    window: float = Field(3600.0, gt=0)
    grace: float = Field(60.0, ge=0)
    # seconds one remediation command may take
    timeout: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _non_empty(self) -> Remediation:
        if not self.command:
            raise ValueError("remediation.command must not be empty")
        return self


class CheckBase(Section):
    # unique; a metric label and the check's name in /healthz
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    # seconds between two runs
    interval: float = Field(30.0, gt=0)
    # seconds one run may take before it fails
    timeout: float = Field(5.0, gt=0)
    # seconds after start before the first run
    initial_delay: float = Field(0.0, ge=0)
    # consecutive failures before the check is FAILING
    failure_threshold: int = Field(3, ge=1)
    # consecutive passes before a failing check is OK again
    success_threshold: int = Field(1, ge=1)
    affects_verdict: bool = True  # false: reported and measured, never makes the verdict unhealthy
    remediation: Remediation | None = None


class TlsOptions(Section):
    """How a TLS handshake is judged. Unverified by default: the checks connect to the pod's
    loopback, where the certificate's names rarely match; expiry is still read and judged."""

    # verify the certificate chain and name
    verify: bool = False
    # PEM file of trusted CAs; default: the system's store
    ca_file: Path | None = None
    server_name: str | None = None  # SNI and, with verify, the name to match


class ExecCheck(CheckBase):
    """Commands run in sequence in the mailserver's environment; any non-zero exit fails."""

    # exec, tcp, smtp, imap, pop3, clamd or http: which check this is
    kind: Literal["exec"]
    # argv lists, or strings run with sh -c
    commands: list[list[str] | str] = Field(min_length=1)


class TcpCheck(CheckBase):
    kind: Literal["tcp"]
    # the address to connect to
    host: str = "127.0.0.1"
    # the port to connect to
    port: int = Field(ge=1, le=65535)


class SmtpCheck(CheckBase):
    """``220`` banner, ``EHLO``; with ``tls: starttls`` STARTTLS must be offered and the
    handshake succeed; the certificate's expiry is recorded."""

    kind: Literal["smtp"]
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    # none, starttls or implicit (TLS from the first byte)
    tls: TlsMode = "starttls"
    tls_options: TlsOptions = TlsOptions()
    # the name sent with EHLO
    ehlo: str = "dms-agent.localhost"


class ImapCheck(CheckBase):
    kind: Literal["imap"]
    host: str = "127.0.0.1"
    port: int = Field(143, ge=1, le=65535)
    tls: TlsMode = "starttls"
    tls_options: TlsOptions = TlsOptions()


class Pop3Check(CheckBase):
    kind: Literal["pop3"]
    host: str = "127.0.0.1"
    port: int = Field(110, ge=1, le=65535)
    tls: TlsMode = "starttls"
    tls_options: TlsOptions = TlsOptions()


class ClamdCheck(CheckBase):
    """``zPING`` -> ``PONG`` over a unix ``socket`` (DMS's default: share ``/var/run/clamav``)
    or TCP ``host``/``port`` (needs ``TCPSocket`` in DMS's clamd.conf)."""

    kind: Literal["clamd"]
    socket: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535)

    @model_validator(mode="after")
    def _one_address(self) -> ClamdCheck:
        if (self.socket is None) == (self.port is None):
            raise ValueError("a clamd check needs exactly one of `socket` or `port`")
        return self


class HttpCheck(CheckBase):
    kind: Literal["http"]
    # http:// or https:// URL to GET
    url: str = Field(pattern=r"^https?://")
    # the status code that passes
    expect_status: int = Field(200, ge=100, le=599)
    # text the body must contain; null: any body
    body_contains: str | None = None
    tls_options: TlsOptions = TlsOptions()


CheckSpec = Annotated[
    ExecCheck | TcpCheck | SmtpCheck | ImapCheck | Pop3Check | ClamdCheck | HttpCheck,
    Field(discriminator="kind"),
]


class DmsDefaults(Section):
    """The checks added for docker-mailserver (from ``dms.environment``) unless disabled.

    smtp (25), submission (587), imap (143) unless SMTP_ONLY=1 (STARTTLS once SSL_TYPE is set,
    plain while it is unset: DMS serves no TLS then),
    clamd when ENABLE_CLAMAV=1, rspamd ``/ping`` when ENABLE_RSPAMD=1; each with its
    ``supervisorctl restart`` remediation.
    """

    # add the checks DMS's environment implies
    enabled: bool = True
    # where the default checks connect (the pod's loopback)
    host: str = "127.0.0.1"
    # clamd's unix socket, shared from the mailserver
    clamd_socket: Path | None = Path("/var/run/clamav/clamd.ctl")
    clamd_port: int | None = Field(None, ge=1, le=65535)  # set to use TCP instead of the socket
    # the Rspamd check's URL
    rspamd_url: str = "http://127.0.0.1:11334/ping"
    # give the default checks their supervisorctl restart remediation
    remediate: bool = True
    disable: list[str] = Field(default_factory=list)  # names of default checks to leave out


class Escalation(Section):
    """How long an affirmative ``unhealthy`` stands. After ``hold`` seconds of FAILING the
    check is released to unknown and paused for ``restartGrace`` seconds: by then the kubelet
    has restarted the mailserver (if its probe is wired), which needs time to start before it
    is judged again; without the pause its own start-up would be read as a new failure and
    restart it again (a crash loop). After the pause the check must pass once before it can
    escalate again. At most ``maxPerHour`` escalations are written as ``unhealthy`` in any hour,
    across agent restarts (counted in ``<verdictFile>.escalations``); past that the verdict file
    says ``unknown`` (the probe passes) while /healthz still reports the failure."""

    hold: float = Field(120.0, gt=0)
    restart_grace: float = Field(180.0, ge=0)
    max_per_hour: int = Field(3, ge=0)


class ChecksSettings(Section):
    """``checks:`` — see the module docstring."""

    # run the checks (and write the verdict file, if set)
    enabled: bool = False
    dms_defaults: DmsDefaults = DmsDefaults()
    checks: list[CheckSpec] = Field(default_factory=list)  # a name equal to a default replaces it
    # a certificate expiring within this many days warns
    certificate_warning_days: float = Field(14.0, ge=0)
    # The verdict for the mailserver's livenessProbe (see `dms-agent probe-script`). Null: none.
    verdict_file: Path | None = None
    verdict_refresh: float = Field(10.0, gt=0)  # rewrite period: the file's freshness heartbeat
    escalation: Escalation = Escalation()

    @model_validator(mode="after")
    def _unique_names(self) -> ChecksSettings:
        seen: set[str] = set()
        for check in self.checks:
            if check.name in seen:
                raise ValueError(f"check name {check.name!r} is used twice")
            seen.add(check.name)
        return self
