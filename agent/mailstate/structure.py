"""pydantic's structure errors for a state or passwords document, said in the document's terms.

Loaded only for a document the plain shape check (``shape.py``) did not accept: importing
pydantic and building the models costs more than parsing a small document.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from agent.mailstate.model import API_VERSION
from agent.mailstate.schema import (
    AccountDoc,
    DkimDoc,
    DomainDoc,
    PasswordEntry,
    PolicyDoc,
    StateDoc,
)

Loc = tuple[str | int, ...]
_PASSWORDS = TypeAdapter(dict[str, PasswordEntry])

# The model whose keys are allowed at a path (dict keys such as addresses replaced by "*").
_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): StateDoc,
    ("domains", "*"): DomainDoc,
    ("domains", "*", "dkim"): DkimDoc,
    ("accounts", "*"): AccountDoc,
    ("policy",): PolicyDoc,
}


def structure_errors(kind: str, value: Any) -> list[tuple[Loc, str]]:
    """(path, message) for every structure error of ``value`` as a ``kind`` document."""
    try:
        if kind == "passwords":
            _PASSWORDS.validate_python(value, strict=True)
        else:
            StateDoc.model_validate(value, strict=True)
    except ValidationError as exc:
        model_at = _passwords_model_at if kind == "passwords" else _state_model_at
        out = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = tuple(err["loc"])
            out.append((loc, _message(err["type"], err["msg"], loc, model_at)))
        return out
    return []


def _passwords_model_at(loc: Loc) -> type[BaseModel] | None:
    return PasswordEntry if len(loc) == 1 else None


def _state_model_at(loc: Loc) -> type[BaseModel] | None:
    key = tuple(
        "*" if i == 1 and loc[0] in ("domains", "accounts") else p for i, p in enumerate(loc)
    )
    return _MODELS.get(cast(tuple[str, ...], key))


def _message(kind: str, msg: str, loc: Loc, model_at: Any) -> str:
    """pydantic's message, said in the document's own terms where it helps."""
    if kind == "extra_forbidden":
        model = model_at(loc[:-1])
        if model is not None:
            allowed = [f.alias or n for n, f in model.model_fields.items()]
            return f"unknown key; allowed here: {', '.join(allowed)}"
        return "unknown key"
    if loc == ("apiVersion",) and kind == "literal_error":
        return f"must be {API_VERSION}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        if model_at(loc) is PasswordEntry:
            return "must be {password: ...} or {hash: ...}, never a bare string"
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    if kind == "string_type":
        return "must be a string (quote it in YAML)"
    return msg
