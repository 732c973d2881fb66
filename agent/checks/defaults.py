"""The checks docker-mailserver gets without configuring any, chosen from DMS's environment.

Supervisor program names (postfix, dovecot, clamav, rspamd) are those DMS's supervisord
configuration uses, so ``supervisorctl restart <name>`` in the mailserver container is the
in-place fix.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.checks.config import (
    CheckSpec,
    ChecksSettings,
    ClamdCheck,
    HttpCheck,
    ImapCheck,
    Remediation,
    SmtpCheck,
    TlsMode,
)


def _on(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


def _mail_tls(env: Mapping[str, str]) -> TlsMode:
    """DMS serves STARTTLS only once ``SSL_TYPE`` names a certificate source; unset or empty,
    Postfix and Dovecot run without TLS, and a STARTTLS check could never pass."""
    return "starttls" if env.get("SSL_TYPE", "").strip() else "none"


def _restart(program: str, grace: float, enabled: bool) -> Remediation | None:
    if not enabled:
        return None
    return Remediation(command=["supervisorctl", "restart", program], grace=grace)


def dms_defaults(settings: ChecksSettings, env: Mapping[str, str]) -> list[CheckSpec]:
    d = settings.dms_defaults
    if not d.enabled:
        return []
    fix = d.remediate
    tls = _mail_tls(env)
    checks: list[CheckSpec] = [
        # 25 is postscreen's: a client it does not trust waits out the pregreet test (6 s)
        SmtpCheck(
            name="smtp", kind="smtp", host=d.host, port=25, tls=tls, timeout=10,
            remediation=_restart("postfix", 30, fix),
        ),
        SmtpCheck(
            name="submission", kind="smtp", host=d.host, port=587, tls=tls,
            remediation=_restart("postfix", 30, fix),
        ),
    ]  # fmt: skip
    if not _on(env, "SMTP_ONLY"):
        checks.append(
            ImapCheck(
                name="imap", kind="imap", host=d.host, port=143, tls=tls,
                remediation=_restart("dovecot", 30, fix),
            )
        )  # fmt: skip
    if _on(env, "ENABLE_CLAMAV"):
        # clamd needs a minute or more to load the real signature database after a restart
        checks.append(
            ClamdCheck(
                name="clamd", kind="clamd", host=d.host,
                socket=None if d.clamd_port else d.clamd_socket, port=d.clamd_port,
                remediation=_restart("clamav", 180, fix),
            )
        )  # fmt: skip
    if _on(env, "ENABLE_RSPAMD"):
        checks.append(
            HttpCheck(
                name="rspamd", kind="http", url=d.rspamd_url, body_contains="pong",
                remediation=_restart("rspamd", 30, fix),
            )
        )  # fmt: skip
    return [c for c in checks if c.name not in d.disable]


def effective_checks(settings: ChecksSettings, env: Mapping[str, str]) -> list[CheckSpec]:
    """The DMS defaults, replaced by name by the operator's own checks, then those checks."""
    own = {c.name for c in settings.checks}
    return [c for c in dms_defaults(settings, env) if c.name not in own] + list(settings.checks)
