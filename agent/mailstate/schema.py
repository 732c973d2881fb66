"""The shapes of the state and passwords documents, as pydantic models.

pydantic checks the structure (types, unknown keys, enumerations) in one pass over the whole
document; the rules pydantic cannot express well (address syntax, duplicates across keys,
loops, key sizes per key type) live in ``validate.py``. These models also give
``dms-agent schema`` its JSON schema. Everything is strict: YAML already typed the values, so
``prune: "yes"`` or ``password: 1234`` is a mistake to report, not a value to coerce.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from agent.mailstate.model import API_VERSION

DRAFT = "https://json-schema.org/draft/2020-12/schema"
QUOTA_PATTERN = r"^([0-9]+(B|k|M|G|T)|0)$"


class _Doc(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


class DkimDoc(_Doc):
    """DKIM key wanted for a domain; DMS's `config dkim` creates it when missing."""

    selector: str = Field("mail", description="DNS label(s): <selector>._domainkey.<domain>")
    key_type: Literal["rsa", "ed25519"] = Field("rsa", description="ed25519 needs DMS with Rspamd")
    key_size: int | None = Field(
        None, description="rsa only: 1024, 2048 (default), 3072 or 4096; never with ed25519"
    )


class DomainDoc(_Doc):
    dkim: DkimDoc | None = None


class AccountDoc(_Doc):
    quota: Any = Field(
        None,
        description=f"Dovecot quota, {QUOTA_PATTERN} (e.g. 500M, 2G; 0 = unlimited)",
        json_schema_extra={"type": ["string", "integer"], "pattern": QUOTA_PATTERN},
    )
    restrict: list[Literal["send", "receive"]] = Field(
        default_factory=list, description="refuse sending and/or receiving for this account"
    )


class PolicyDoc(_Doc):
    """May only tighten the operator's settings: ``false`` forbids, ``true`` grants nothing."""

    prune: bool | None = None
    delete_mail_data: bool | None = None


class StateDoc(_Doc):
    """A mail state document (ConfigMap key such as ``mailserver.yaml``)."""

    api_version: Literal["dms-agent/v1"]
    domains: dict[str, DomainDoc | None] = Field(
        default_factory=dict, description="domain -> settings (DKIM)"
    )
    accounts: dict[str, AccountDoc | None] = Field(
        default_factory=dict, description="address -> settings; null for none"
    )
    aliases: dict[str, list[str]] = Field(
        default_factory=dict,
        description="alias (user@domain, @domain catch-all, or bare local part) -> recipients",
    )
    policy: PolicyDoc | None = None


class PasswordEntry(_Doc):
    """Exactly one of ``password`` (plain, given to `setup` on stdin) or ``hash``
    (``{SCHEME}...`` as Dovecot stores it, written as is)."""

    password: str | None = Field(None, description="no newline, no surrounding whitespace")
    hash: str | None = Field(None, description="{SCHEME}hash, e.g. {SHA512-CRYPT}$6$...")


def state_json_schema() -> dict[str, Any]:
    schema = StateDoc.model_json_schema(by_alias=True)
    schema["$schema"] = DRAFT
    schema["$id"] = "https://dms-agent/schemas/v1/state.json"
    return schema


def passwords_json_schema() -> dict[str, Any]:
    entry = PasswordEntry.model_json_schema(by_alias=True)
    entry["oneOf"] = [{"required": ["password"]}, {"required": ["hash"]}]
    return {
        "$schema": DRAFT,
        "$id": "https://dms-agent/schemas/v1/passwords.json",
        "title": "PasswordsDoc",
        "description": (
            "A passwords document (Secret key such as ``passwords.yaml``): address -> "
            "{password: ...} or {hash: ...}; never a bare string."
        ),
        "type": "object",
        "properties": {"apiVersion": {"const": API_VERSION}},
        "additionalProperties": {"$ref": "#/$defs/PasswordEntry"},
        "$defs": {"PasswordEntry": entry},
    }
