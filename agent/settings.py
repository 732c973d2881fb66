"""The agent's own settings: one YAML file plus ``DMS_AGENT_*`` environment overrides.

Each capability owns a section model in its own ``config.py``; this module only composes them
and provides the mechanism: load, validate with located errors, apply env overrides.

Environment overrides use ``__`` between levels and camelCase or SCREAMING_SNAKE keys, e.g.
``DMS_AGENT_SERVER__PORT=9000`` or ``DMS_AGENT_RECONCILE__MODE=observe``. Values are parsed as
YAML scalars (``true``, ``10``, ``[a, b]``).
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from agent.checks.config import ChecksSettings
from agent.config_base import Section
from agent.dkim.config import DkimSettings
from agent.dms import DMS_CONFIG_DIR
from agent.dms_environment import read_environment
from agent.dns.config import DnsSettings
from agent.errors import InvalidDocument, LocatedError
from agent.kube.config import KubeSettings
from agent.lb.config import LbSettings
from agent.mailflow.config import MailflowSettings
from agent.sources.document import MAX_DOCUMENT_BYTES
from agent.yamlloc import LocatedDoc, format_path, load_yaml

ENV_PREFIX = "DMS_AGENT_"
DEFAULT_PORT = 9425


class ServerSettings(Section):
    """``server:`` — the HTTP endpoint for health, status and metrics (docs/http.md)."""

    # address the HTTP server listens on (0.0.0.0 in a pod, for probes)
    host: str = "127.0.0.1"
    # port of /livez, /readyz, /healthz, /status and /metrics
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    max_connections: int = Field(256, ge=8)  # a new one closes the oldest idle one
    header_timeout: float = Field(5.0, gt=0)  # to send a request head after connecting
    keep_alive_timeout: float = Field(15.0, gt=0)  # idle between requests
    status_token_file: Path | None = None  # bearer token for /status from beyond loopback


class LoggingSettings(Section):
    """``logging:`` — ``text`` for people at a terminal, ``json`` for log pipelines."""

    # the least severe level written
    level: Literal["debug", "info", "warning", "error"] = "info"
    # text: one line per record; json: one object per line
    format: Literal["text", "json"] = "text"


class SourceSettings(Section):
    """One entry of ``sources:`` — where desired-state documents come from.

    - ``kind: path``: a folder (a kubelet ConfigMap/Secret mount, or a plain folder) or a file.
    - ``kind: configmap`` / ``kind: secret``: objects read through the Kubernetes API, by
      ``name`` or by ``selector`` (a label selector), in ``namespace`` (default: the pod's).
    """

    # path: a folder or file; configmap/secret: objects read through the API
    kind: Literal["path", "configmap", "secret"]
    # kind: path: the folder (a mounted ConfigMap/Secret) or file to read
    path: Path | None = None
    name: str | None = None
    selector: str | None = None
    namespace: str | None = None
    secret: bool = False  # a path source holding secret material (passwords, keys)
    # a bigger document is a located error (a 100 MB one took 6 s and 550 MB to parse)
    max_document_bytes: int = Field(MAX_DOCUMENT_BYTES, gt=0)

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

    # file, local, docker or kube: see the class docstring above
    kind: Literal["file", "local", "docker", "kube"] = "file"
    container: str = "mailserver"  # docker container name, or the pod's container name
    pod: str | None = None  # default: $POD_NAME
    namespace: str | None = None  # default: $POD_NAMESPACE


class DmsSettings(Section):
    """``dms:`` — where docker-mailserver's folders are, and how to run its `setup`."""

    config_dir: Path | None = Path(DMS_CONFIG_DIR)  # as the agent sees it; null: not mounted
    mail_dir: Path | None = None  # as the agent sees it; null: not mounted
    container_config_dir: str = DMS_CONFIG_DIR  # as the mailserver sees it
    # the mail folder as the mailserver sees it
    container_mail_dir: str = "/var/mail"
    # DMS's setup command in the mailserver ([setup.sh] for old images)
    setup_command: list[str] = Field(default_factory=lambda: ["setup"])
    # seconds one setup command may take (enforced in the mailserver)
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

    # apply: make DMS equal the state; observe: plan and report only
    mode: Literal["apply", "observe"] = "apply"
    # seconds between reconciles when nothing changed
    resync_interval: float = Field(600.0, gt=0)
    # remove accounts and aliases the state no longer declares
    prune: bool = False
    prune_unmanaged: bool = False  # also remove accounts the agent did not create/adopt
    # a pruned account's mail folder is deleted too
    delete_mail_data: bool = False
    max_deletions: MaxDeletions = MaxDeletions()
    # enforce: revert drift; onChange: apply changed ones; initial: on creation only
    passwords: Literal["enforce", "onChange", "initial"] = "onChange"
    ledger_path: Path | None = None  # default: <dms.configDir>/dms-agent-ledger.json
    ledger_key_file: Path | None = None  # the digest key, from a Secret; never beside the ledger
    create_ledger_key: bool = False  # make a random 0600 key if absent (the local demo only)
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
            message = _message(err["type"], err["msg"], loc, env_name)
            if env_name:
                errors.append(LocatedError(f"env {env_name}", None, field, message))
            else:
                errors.append(LocatedError(doc.source, doc.line_of(loc), field, message))
        raise InvalidDocument(errors) from None


def _message(kind: str, msg: str, loc: tuple[str | int, ...], env_name: str | None) -> str:
    """pydantic's message, said as the state documents say it where it helps; a mistyped
    variable is answered with the variable's right spelling."""
    if kind != "extra_forbidden":
        return msg
    allowed = sorted({k for m in models_at(loc[:-1]) for k in _keys(m)})
    if not allowed:
        return "unknown key"
    text = f"unknown key; allowed here: {', '.join(allowed)}"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
    if not close:
        return text
    if env_name:
        return text + f" (did you mean {env_name.rsplit('__', 1)[0]}__{env_part(close[0])}?)"
    return text + f" (did you mean {close[0]}?)"


def env_part(key: str) -> str:
    """A YAML key as the environment spells it: ``configDir`` -> ``CONFIG_DIR``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def sections_of(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The settings models a field holds (directly, optionally, as list items, or as the
    variants of a union), and whether it is a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    found: list[type[BaseModel]] = []
    is_list = typing.get_origin(annotation) is list
    for arg in typing.get_args(annotation):
        models, inner_list = sections_of(arg)
        found += [m for m in models if m not in found]
        is_list = is_list or inner_list
    return found, is_list


def models_at(loc: Sequence[str | int]) -> list[type[BaseModel]]:
    """The models that may stand at ``loc`` (several for a union of check kinds)."""
    models: list[type[BaseModel]] = [Settings]
    for part in loc:
        if isinstance(part, int):
            continue  # a list's item: the same models
        field = next((_field(m, part) for m in models if _field(m, part)), None)
        if field is not None:
            models = sections_of(field.annotation)[0]
        else:  # a union's tag (``smtp`` in checks.checks[0].smtp.port): keep that variant
            models = [m for m in models if f"'{part}'" in str(_annotation(m, "kind"))]
    return models


def _field(model: type[BaseModel], key: str) -> Any:
    return next((f for n, f in model.model_fields.items() if key in (n, f.alias)), None)


def _annotation(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields.get(name)
    return field.annotation if field else None


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Merge DMS_AGENT_A__B=value into ``data``; return which paths came from which variable."""
    sources: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = env_keys([p for p in name[len(ENV_PREFIX) :].split("__") if p])
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        if len(parts) > 1 and _free_form(parts[:-1]):
            value = raw  # DMS's environment: strings as written (ENABLE_RSPAMD=1)
        target = data
        for part in parts[:-1]:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = target[part] = {}
            target = nxt
        target[parts[-1]] = value
        sources[tuple(parts[:2])] = name
    return sources


def env_keys(parts: list[str]) -> list[str]:
    """The YAML keys an environment variable's parts name. Any spelling of a known key is that
    key (``CONFIG_DIR``, ``CONFIGDIR``, ``configDir``: ``configDir``); below a free-form
    mapping (``dms.environment``) a part stays as written; an unknown part becomes camelCase
    and validation answers it with the keys allowed there."""
    keys: list[str] = []
    model: type[BaseModel] | None = Settings
    for part in parts:
        if model is None:
            keys.append(part if keys and _free_form(keys) else _camel(part))
            continue
        field = next(
            ((n, f) for n, f in model.model_fields.items() if _same(part, f.alias or n)), None
        )
        if field is None:
            keys.append(_camel(part))
            model = None
            continue
        name, info = field
        keys.append(info.alias or name)
        found, is_list = sections_of(info.annotation)
        model = found[0] if len(found) == 1 and not is_list else None
    return keys


def _free_form(keys: list[str]) -> bool:
    """The path so far ends at a known mapping field (its keys are data, not settings)."""
    models = models_at(keys[:-1])
    field = next((_field(m, keys[-1]) for m in models if _field(m, keys[-1])), None)
    return field is not None and typing.get_origin(field.annotation) is dict


def _same(part: str, key: str) -> bool:
    return part.replace("_", "").lower() == key.replace("_", "").lower()


def _camel(key: str) -> str:
    return key if any(c.islower() for c in key) else to_camel(key.lower())
