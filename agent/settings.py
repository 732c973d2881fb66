"""The agent's own settings: one YAML file plus ``DMS_AGENT_*`` environment overrides.

Each capability owns a section model in its own ``config.py``; this module only composes them
and provides the mechanism: load, validate with located errors, apply env overrides.

Environment overrides use ``__`` between levels and camelCase or SCREAMING_SNAKE keys, e.g.
``DMS_AGENT_SERVER__PORT=9000`` or ``DMS_AGENT_RECONCILE__MODE=observe``. Values are parsed as
YAML scalars (``true``, ``10``, ``[a, b]``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from agent.checks.config import ChecksSettings
from agent.config_base import Section
from agent.dkim.config import DkimSettings
from agent.dms_environment import read_environment
from agent.dns.config import DnsSettings
from agent.errors import InvalidDocument, LocatedError
from agent.kube.config import KubeSettings
from agent.lb.config import LbSettings
from agent.mailflow.config import MailflowSettings
from agent.yamlloc import LocatedDoc, format_path, load_yaml

ENV_PREFIX = "DMS_AGENT_"
DEFAULT_PORT = 9425


class ServerSettings(Section):
    """``server:`` — the HTTP endpoint for health, status and metrics."""

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)


class LoggingSettings(Section):
    """``logging:`` — ``text`` for people at a terminal, ``json`` for log pipelines."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class SourceSettings(Section):
    """One entry of ``sources:`` — where desired-state documents come from.

    - ``kind: path``: a folder (a kubelet ConfigMap/Secret mount, or a plain folder) or a file.
    - ``kind: configmap`` / ``kind: secret``: objects read through the Kubernetes API, by
      ``name`` or by ``selector`` (a label selector), in ``namespace`` (default: the pod's).
    """

    kind: Literal["path", "configmap", "secret"]
    path: Path | None = None
    name: str | None = None
    selector: str | None = None
    namespace: str | None = None
    secret: bool = False  # a path source holding secret material (passwords, keys)

    @model_validator(mode="after")
    def _needs_target(self) -> SourceSettings:
        if self.kind == "path" and self.path is None:
            raise ValueError("kind: path needs `path`")
        if self.kind != "path" and not (self.name or self.selector):
            raise ValueError(f"kind: {self.kind} needs `name` or `selector`")
        return self


class ExecutorSettings(Section):
    """``dms.executor:`` — how `setup` runs: ``file`` (no DMS: write DMS's files directly),
    ``local`` (same filesystem as DMS), ``docker`` (docker exec), ``kube`` (Kubernetes exec
    into the mailserver container of this pod)."""

    kind: Literal["file", "local", "docker", "kube"] = "file"
    container: str = "mailserver"  # docker container name, or the pod's container name
    pod: str | None = None  # default: $POD_NAME
    namespace: str | None = None  # default: $POD_NAMESPACE


class DmsSettings(Section):
    """``dms:`` — where docker-mailserver's folders are, and how to run its `setup`."""

    config_dir: Path | None = Path(
        "/tmp/docker-mailserver"
    )  # as the agent sees it; null: not mounted
    mail_dir: Path | None = None  # as the agent sees it; null: not mounted
    container_config_dir: str = "/tmp/docker-mailserver"  # as the mailserver sees it
    container_mail_dir: str = "/var/mail"
    setup_command: list[str] = Field(default_factory=lambda: ["setup"])
    command_timeout: float = Field(120.0, gt=0)
    # run in the mailserver until it succeeds before anything else: DMS has finished starting
    # (it creates /CONTAINER_START then). Empty: do not wait. Not used by the file executor.
    ready_command: list[str] = Field(default_factory=lambda: ["test", "-e", "/CONTAINER_START"])
    executor: ExecutorSettings = ExecutorSettings()
    # DMS's environment when the agent cannot read it from the container (ACCOUNT_PROVISIONER,
    # ENABLE_QUOTAS, ENABLE_RSPAMD, ENABLE_OPENDKIM, ENABLE_CLAMAV ...).
    environment: dict[str, str] = Field(default_factory=dict)
    # ...or read from DMS's own copy (a mounted env ConfigMap folder, or a KEY=VALUE env file),
    # under `environment` (which wins key by key): one source for DMS and the agent.
    environment_from: Path | None = None


class MaxDeletions(Section):
    """Deletions above the larger of ``count`` and ``percent`` of managed accounts are refused."""

    count: int = Field(5, ge=0)
    percent: float = Field(10.0, ge=0, le=100)


class ReconcileSettings(Section):
    """``reconcile:`` — the operator's policy; the state document may only tighten it."""

    mode: Literal["apply", "observe"] = "apply"
    resync_interval: float = Field(600.0, gt=0)
    prune: bool = False
    prune_unmanaged: bool = False  # also remove accounts the agent did not create/adopt
    delete_mail_data: bool = False
    max_deletions: MaxDeletions = MaxDeletions()
    passwords: Literal["enforce", "onChange", "initial"] = "onChange"
    ledger_path: Path | None = None  # default: <dms.configDir>/dms-agent-ledger.json
    ledger_key_file: Path | None = None  # the digest key, from a Secret; never beside the ledger
    retry_initial: float = Field(5.0, gt=0)  # a failed op waits this long before its retry...
    retry_max: float = Field(300.0, gt=0)  # ...doubling (with jitter) up to this
    lock_wait: float = Field(30.0, ge=0)  # how long to wait for another agent's apply lock
    progress_interval: float = Field(10.0, gt=0)  # seconds between progress lines of long syncs


class Settings(Section):
    """The whole settings file."""

    server: ServerSettings = ServerSettings()
    logging: LoggingSettings = LoggingSettings()
    sources: list[SourceSettings] = Field(default_factory=list)
    dms: DmsSettings = DmsSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    kube: KubeSettings = KubeSettings()
    checks: ChecksSettings = ChecksSettings()
    dns: DnsSettings = DnsSettings()
    lb: LbSettings = LbSettings()
    mailflow: MailflowSettings = MailflowSettings()
    dkim: DkimSettings = DkimSettings()


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override and validate; raise InvalidDocument listing every located error."""
    environ = os.environ if environ is None else environ
    if path is None:
        doc = LocatedDoc("(defaults)", {})
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            err = LocatedError(str(path), None, "", exc.strerror or str(exc))
            raise InvalidDocument([err]) from None
        doc = load_yaml(text, str(path))
        if doc.value is None:
            doc.value = {}
        if not isinstance(doc.value, dict):
            raise InvalidDocument([doc.error((), "the settings file must be a mapping")])
    env_sources = _apply_env(doc.value, environ)
    settings = validate_settings(doc, env_sources)
    return _with_shared_environment(settings)


def _with_shared_environment(settings: Settings) -> Settings:
    """``dms.environment`` over what ``dms.environmentFrom`` holds."""
    dms = settings.dms
    if dms.environment_from is None:
        return settings
    environment = {**read_environment(dms.environment_from), **dms.environment}
    return settings.model_copy(update={"dms": dms.model_copy(update={"environment": environment})})


def validate_settings(doc: LocatedDoc, env_sources: dict[tuple[str, ...], str]) -> Settings:
    try:
        return Settings.model_validate(doc.value)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = format_path(loc)
            env_name = env_sources.get(tuple(str(p) for p in loc[:2])) or env_sources.get(
                tuple(str(p) for p in loc[:1])
            )
            if env_name:
                errors.append(LocatedError(f"env {env_name}", None, field, err["msg"]))
            else:
                errors.append(LocatedError(doc.source, doc.line_of(loc), field, err["msg"]))
        raise InvalidDocument(errors) from None


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Merge DMS_AGENT_A__B=value into ``data``; return which paths came from which variable."""
    sources: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [_camel(p) for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        target = data
        for part in parts[:-1]:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = target[part] = {}
            target = nxt
        target[parts[-1]] = value
        sources[tuple(parts[:2])] = name
    return sources


def _camel(key: str) -> str:
    return key if any(c.islower() for c in key) else to_camel(key.lower())
