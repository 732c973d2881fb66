"""Settings section ``lb:`` — the poor-man's-LB webhook client.

The agent tells an HAProxy host outside the cluster where the mailserver runs: the node's
address and the mail ports. Example::

    lb:
      enabled: true
      name: mailserver              # the registration: HAProxy frontend/backend names
      ports:
        - {name: smtp, frontend: 25, backend: 25, proxyProtocol: true}
        - {name: submissions, frontend: 465}
      address: {source: env, env: HOST_IP}     # downward API status.hostIP; or
                                               # {source: fixed, value: 192.0.2.10}
      targets:
        - url: https://haproxy.example.net:9000/hooks/dms-lb
          format: v2                            # or funkypenguin (the original receiver)
          secretFile: /var/run/secrets/lb/hmac  # read at each use: a rotated Secret just works
          caFile: /var/run/secrets/lb/ca.crt    # optional; TLS is always verified unless
                                                # tlsVerify: false
          expectResponse: "is valid"            # optional: what a confirmed answer contains
      waitForCheck: smtp            # register only once the SMTP check has passed
      heartbeatInterval: 300
      deleteOnShutdown: true
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from agent.config_base import Section

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class LbPort(Section):
    """One forwarded port: HAProxy listens on ``frontend`` and forwards to the node's
    ``backend`` port (default: the same number), optionally with a PROXY protocol v1 header
    so the mailserver sees the client's real address."""

    # the port's name in the registration
    name: str = Field(pattern=NAME_PATTERN)
    frontend: int = Field(ge=1, le=65535)
    backend: int | None = Field(None, ge=1, le=65535)
    # the backend expects the PROXY protocol on this port
    proxy_protocol: bool = False

    @property
    def backend_port(self) -> int:
        return self.backend if self.backend is not None else self.frontend


class LbAddress(Section):
    """Where the node's address comes from — never from an outside "what is my IP" service.

    - ``env``: an environment variable filled by the downward API (``status.hostIP``).
    - ``node``: the Node object's address of ``nodeAddressType`` through the Kubernetes API
      (reached as the ``kube:`` settings say; RBAC: ``get`` on ``nodes``); the node is
      ``nodeName`` or ``$NODE_NAME`` (downward API ``spec.nodeName``). Re-read every
      ``refreshInterval`` seconds, so a changed address is sent without a restart.
    - ``fixed``: ``value``.
    """

    # env: a variable (HOST_IP); node: the Node's address from the API; fixed: value
    source: Literal["env", "node", "fixed"] = "env"
    env: str = "HOST_IP"
    value: str | None = None
    node_name: str | None = None
    node_address_type: Literal["ExternalIP", "InternalIP"] = "ExternalIP"
    refresh_interval: float = Field(60.0, gt=0)

    @field_validator("value")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)  # ValueError -> a located settings error
        return value

    @model_validator(mode="after")
    def _fixed_needs_value(self) -> LbAddress:
        if self.source == "fixed" and self.value is None:
            raise ValueError("source: fixed needs `value` (an IP address)")
        return self


class FunkypenguinStyle(Section):
    """How ``funkypenguin`` requests spell their values. The defaults are the original
    phone-home container's: ``send-proxy`` is the HAProxy keyword itself or empty, and each
    port is registered under its own name (``docker-mailserver-smtp``, ...).

    - ``sendProxy``: ``keyword`` ("send-proxy" / "") or ``boolean`` ("true" / "false").
    - ``names``: ``perPort`` (``namePrefix`` + the port's name) or ``shared`` (``lb.name``
      for every port).
    """

    send_proxy: Literal["keyword", "boolean"] = "keyword"
    names: Literal["perPort", "shared"] = "perPort"
    name_prefix: str = Field("docker-mailserver-", pattern=r"^[A-Za-z0-9_.-]{0,40}$")


class LbTarget(Section):
    """One webhook receiver.

    ``secretFile`` holds the HMAC key (``v2``) or the token (``funkypenguin``); it is read at
    every request. What the answer proves:

    - a result line of the receiver example (for v2 it echoes the sequence number sent):
      delivered and confirmed;
    - ``expectResponse`` set (a regular expression searched in the body): it must match;
    - 2xx with an empty body (adnanh/webhook answers so *before* running a hook without
      ``include-command-output-in-response``, as the original receiver is set up): delivered,
      unconfirmed — unless ``requireConfirmation``, which makes it a failure;
    - 2xx with any other body: a failure (not the hook's answer).

    ``funkypenguin`` sends its token itself: to an ``http://`` URL that is in clear text, which
    is warned about (log, /status); ``requireTLS: true`` refuses to send to any ``http://`` URL.
    """

    # the receiver's webhook URL
    url: str
    name: str | None = Field(None, pattern=NAME_PATTERN)  # metric label; default host:port
    # v2 (signed) or funkypenguin (the original receiver's form)
    format: Literal["v2", "funkypenguin"] = "v2"
    secret_file: Path
    # PEM file of CAs trusted for an https:// url
    ca_file: Path | None = None
    # verify the receiver's certificate
    tls_verify: bool = True
    # seconds one delivery may take
    timeout: float = Field(10.0, gt=0)
    expect_response: str | None = None
    # refuse to send to an http:// URL (a token or signature would travel in clear text)
    require_tls: bool = Field(False, alias="requireTLS")
    require_confirmation: bool = False
    funkypenguin: FunkypenguinStyle = FunkypenguinStyle()

    @property
    def token_in_clear(self) -> bool:
        """The token itself would cross the network unencrypted (v2 sends only an HMAC)."""
        return self.format == "funkypenguin" and self.url.startswith("http:")

    @field_validator("expect_response")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return url

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"


class LbRetry(Section):
    """Exponential backoff with jitter between failed deliveries."""

    # seconds before a failed delivery is retried, doubling...
    initial: float = Field(1.0, gt=0)
    # ...up to this
    maximum: float = Field(60.0, gt=0)


class LbSettings(Section):
    """``lb:`` — see the module docstring for an example."""

    # register with the targets below
    enabled: bool = False
    # the service name the receiver routes for
    name: str = Field("mailserver", pattern=NAME_PATTERN)
    pod: str | None = None  # the sender's name; default $POD_NAME, else the host name
    node: str | None = None  # reported to the receiver; default $NODE_NAME
    ports: list[LbPort] = Field(default_factory=list)
    address: LbAddress = LbAddress()
    targets: list[LbTarget] = Field(default_factory=list)
    # seconds between re-registrations when nothing changed
    heartbeat_interval: float = Field(300.0, gt=0)
    heartbeat_jitter: float = Field(0.1, ge=0, lt=1)  # fraction of the interval, +/-
    wait_for_check: str | None = None  # e.g. "smtp": first registration after it passes
    # withdraw the registration when the agent stops for good
    delete_on_shutdown: bool = False
    shutdown_grace: float = Field(10.0, gt=0)  # the delete never outlives this
    retry: LbRetry = LbRetry()
    state_file: Path | None = None  # keeps the last sequence number across restarts

    @model_validator(mode="after")
    def _consistent(self) -> LbSettings:
        if self.enabled and not self.ports:
            raise ValueError("lb.enabled needs at least one entry in `ports`")
        if self.enabled and not self.targets:
            raise ValueError("lb.enabled needs at least one entry in `targets`")
        checks: list[tuple[str, list[str]]] = [
            ("port name", [p.name for p in self.ports]),
            ("frontend port", [str(p.frontend) for p in self.ports]),
            ("target name", [t.label for t in self.targets]),
        ]
        for what, values in checks:
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
        return self
