"""The common, well-formed documents recognised without pydantic.

Each check answers True only for a value the models of ``schema.py`` accept in strict mode
without a word; anything else (a snake_case key pydantic would also take included) goes to
pydantic, which says what is wrong. So a well-formed document never loads pydantic, and every
error message stays pydantic's. Plain type checks (``type(x) is dict``): the YAML loader builds
only plain dicts, lists and strings.
"""

from __future__ import annotations

from typing import Any

from agent.mailstate.model import API_VERSION

_TOP = frozenset({"apiVersion", "domains", "accounts", "aliases", "policy"})
_ACCOUNT = frozenset({"quota", "restrict"})
_DKIM = frozenset({"selector", "keyType", "keySize"})
_POLICY = frozenset({"prune", "deleteMailData"})
_RESTRICTIONS = ("send", "receive")


def well_formed_state(value: Any) -> bool:
    if type(value) is not dict or not _TOP.issuperset(value):
        return False
    if type(value.get("apiVersion")) is not str or value["apiVersion"] != API_VERSION:
        return False
    checks = (
        ("domains", _domains),
        ("accounts", _accounts),
        ("aliases", _aliases),
    )
    for key, check in checks:
        if key in value and (type(value[key]) is not dict or not check(value[key])):
            return False
    policy = value.get("policy")
    return policy is None or _policy(policy)


def well_formed_passwords(value: dict[Any, Any]) -> bool:
    """Every entry is ``{password: str}`` or ``{hash: str}``, checked without building 100,000
    models (~50 MB at the peak)."""
    for entry in value.values():
        if type(entry) is not dict or len(entry) != 1:
            return False
        (field, text), *_ = entry.items()
        if field not in ("password", "hash") or type(text) is not str:
            return False
    return True


def _domains(domains: dict[Any, Any]) -> bool:
    for spec in domains.values():
        if spec is None:
            continue
        if type(spec) is not dict or not {"dkim"}.issuperset(spec):
            return False
        dkim = spec.get("dkim")
        if dkim is not None and not _dkim(dkim):
            return False
    return True


def _dkim(dkim: Any) -> bool:
    if type(dkim) is not dict or not _DKIM.issuperset(dkim):
        return False
    selector, key_type = dkim.get("selector", "mail"), dkim.get("keyType", "rsa")
    size = dkim.get("keySize")
    return (
        type(selector) is str
        and type(key_type) is str
        and key_type in ("rsa", "ed25519")
        and (size is None or type(size) is int)
    )


def _accounts(accounts: dict[Any, Any]) -> bool:
    # one loop turn per account: the empty mapping (the common case) costs one test
    for spec in accounts.values():
        if not spec:
            if spec is None or type(spec) is dict:
                continue
            return False
        if type(spec) is not dict or not _ACCOUNT.issuperset(spec):
            return False
        restrict = spec.get("restrict")
        if "restrict" in spec and (
            type(restrict) is not list
            or any(type(r) is not str or r not in _RESTRICTIONS for r in restrict)
        ):
            return False
    return True


def _aliases(aliases: dict[Any, Any]) -> bool:
    for recipients in aliases.values():
        if type(recipients) is not list or any(type(r) is not str for r in recipients):
            return False
    return True


def _policy(policy: Any) -> bool:
    if type(policy) is not dict or not _POLICY.issuperset(policy):
        return False
    return all(v is None or type(v) is bool for v in policy.values())
