"""Settings section ``dkim:`` — DKIM keys, publication and rotation (agent/dkim)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.config_base import Section


class DkimSettings(Section):
    """``dkim:``

    - ``enabled``: manage keys for every domain that declares ``dkim:`` in the mail state.
    - ``backend``: ``auto`` reads DMS's environment (``ENABLE_RSPAMD=1`` and
      ``ENABLE_OPENDKIM`` not 1 means Rspamd, else OpenDKIM).
    - ``interval``: seconds between passes (DNS publication is re-checked each pass).
    - ``gracePeriod``: seconds an old selector stays published and valid after a rotation.
    - ``requirePublished``: switch signing to a new selector only once DNS serves its record.
    - ``byoKeysDir``: a folder (a mounted Secret) of private keys to import, each named
      ``<selector>._domainkey.<domain>.pem``; only for domains declaring ``dkim:`` in the mail
      state unless ``byoAllowUndeclared: true``.
    - ``opendkimReload``: the command, run through the executor in the mailserver container,
      that makes new OpenDKIM keys live without restarting the container (what DMS's start-up
      does: copy the config folder's opendkim/ to /etc/opendkim, then restart opendkim).
      Empty: there is no mailserver to make keys live in (the local demo).
    """

    enabled: bool = True
    backend: Literal["auto", "opendkim", "rspamd"] = "auto"
    interval: float = Field(300.0, gt=0)
    grace_period: float = Field(7 * 24 * 3600.0, ge=0)
    require_published: bool = True
    byo_keys_dir: Path | None = None
    byo_allow_undeclared: bool = False  # import keys for domains not declaring dkim: too
    # host, host:port or [v6]:port; default: dns.nameservers, else the system resolver
    nameservers: list[str] = Field(default_factory=list)
    # seconds one publication lookup may take
    dns_timeout: float = Field(3.0, gt=0)
    state_file: Path | None = None  # default: <dms.configDir>/dms-agent-dkim.json
    opendkim_reload: list[str] = Field(
        default_factory=lambda: [
            "sh",
            "-c",
            "cp -a /tmp/docker-mailserver/opendkim/. /etc/opendkim/"
            " && chown -R opendkim:opendkim /etc/opendkim"
            " && chmod -R 0700 /etc/opendkim/keys"
            " && supervisorctl restart opendkim",
        ]
    )
