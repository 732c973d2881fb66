"""The settings reference (docs/settings.md), generated from the settings models.

Each field's text is what its source already says beside it, so the reference cannot drift from
the code: the comment on the field's line, else the comment block right above it, else its
bullet (``- ``key``: ...``) in the section's docstring. A field with none of these is
*undocumented*: ``undocumented()`` lists it, and a test fails on it.

Regenerate: ``.venv/bin/python -m agent.settings_doc > docs/settings.md``
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import sys
import tokenize
import types
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from agent.settings import ENV_PREFIX, Settings, env_part, sections_of


@dataclass(frozen=True, slots=True)
class FieldDoc:
    path: tuple[str, ...]  # YAML keys from the top, "[]" for a list's items
    type: str
    default: str
    text: str
    env: str | None  # the environment variable, None inside a list


def _comments(source: str) -> dict[int, str]:
    """Line number (1-based, within ``source``) -> the comment's text on that line."""
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found[tok.start[0]] = tok.string.lstrip("#").strip()
    return found


def _bullets(doc: str) -> dict[str, str]:
    """``- ``key``: text`` bullets of a docstring (continuation lines joined)."""
    found: dict[str, str] = {}
    key = None
    for line in doc.splitlines():
        m = re.match(r"\s*- ``(\w+)``:\s*(.*)", line)
        if m:
            key = m.group(1)
            found[key] = m.group(2)
        elif key and line.startswith("      ") and line.strip():
            found[key] += " " + line.strip()
        else:
            key = None
    return found


def field_texts(model: type[BaseModel]) -> dict[str, str]:
    """Python field name -> its text, from the sources of the class and its bases."""
    texts: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if issubclass(cls, BaseModel) and cls.__module__.startswith("agent."):
            texts.update({k: v for k, v in _own_texts(cls).items() if v or k not in texts})
    return texts


def _own_texts(model: type[BaseModel]) -> dict[str, str]:
    source = inspect.getsource(model)
    lines = source.splitlines()
    comments = _comments(source)
    bullets = _bullets(model.__doc__ or "")
    cls = ast.parse(source).body[0]
    assert isinstance(cls, ast.ClassDef)
    texts = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        end = node.end_lineno or node.lineno
        text = comments.get(node.lineno) or comments.get(end, "")
        if not text:
            above: list[str] = []
            n = node.lineno - 1
            while n >= 1 and lines[n - 1].strip().startswith("#"):
                above.insert(0, comments[n])
                n -= 1
            text = " ".join(above)
        field = model.model_fields.get(name)
        key = (field.alias if field else None) or name
        text = text or bullets.get(key, "") or _sentence(model.__doc__ or "", key)
        texts[name] = " ".join(text.split()).removeprefix("- ").replace("``", "`")
    return texts


def _sentence(doc: str, key: str) -> str:
    """The docstring's first sentence naming ``key`` in double backticks."""
    for sentence in re.split(r"(?<=[.;])\s+", " ".join(doc.split())):
        if f"``{key}``" in sentence:
            return sentence
    return ""


def _summary(model: type[BaseModel]) -> str:
    """A section's own docstring, its first paragraph."""
    text = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    return text.replace("``", "`")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("pathlib.", "")
    text = re.sub(r"Annotated\[(.*), FieldInfo\(.*\)\]", r"\1", text)
    text = re.sub(
        r"Literal\[([^]]*)\]", lambda m: m.group(1).replace("'", "").replace(",", " or"), text
    )
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", text)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return ""
    return "null" if value is None else str(value)


def walk(
    model: type[BaseModel], path: tuple[str, ...] = (), in_list: bool = False
) -> list[FieldDoc]:
    docs = []
    texts = field_texts(model)
    for name, field in model.model_fields.items():
        key = field.alias or name
        here = (*path, key)
        env = None if in_list else ENV_PREFIX + "__".join(env_part(p) for p in here)
        subs, is_list = sections_of(field.annotation)
        text = texts[name] or (_summary(subs[0]) if len(subs) == 1 else "")
        docs.append(FieldDoc(here, _type_name(field.annotation), _default(field), text, env))
        seen = {d.path for d in docs}
        for sub in subs:
            below = walk(sub, (*here, "[]") if is_list else here, in_list or is_list)
            docs += [d for d in below if d.path not in seen]
            seen.update(d.path for d in below)
    return docs


def undocumented() -> list[str]:
    return [".".join(d.path).replace(".[]", "[]") for d in walk(Settings) if not d.text]


def render() -> str:
    out = [
        "# Settings reference",
        "",
        "Generated from the settings models by `python -m agent.settings_doc` (a test fails",
        "when this file is stale or a field has no text). One YAML file (`dms-agent run --config",
        "FILE`); keys are camelCase. Every field outside a list can also be set by the",
        "environment variable shown, `__` between levels: the key in SCREAMING_SNAKE_CASE",
        "(`DMS_AGENT_DMS__CONFIG_DIR`). Other spellings of the same key (`CONFIGDIR`,",
        "`configDir`) are accepted; an unknown one is answered with the keys allowed there.",
        "Values are read as YAML (`true`, `10`, `[a, b]`).",
    ]
    for doc in walk(Settings):
        if len(doc.path) == 1:
            out += ["", f"## `{doc.path[0]}`", "", doc.text, ""]
            out += ["| key | type | default | what |", "|---|---|---|---|"]
        if len(doc.path) > 1 or not doc.type.endswith("Settings"):
            key = (".".join(doc.path[1:]) or doc.path[0]).replace(".[]", "[]")
            env = f"<br>`{doc.env}`" if doc.env else ""
            default = f"`{doc.default}`" if doc.default else ""
            text = doc.text.replace("|", "\\|")
            row = f"| `{key}`{env} | {doc.type.replace('|', 'or')} | {default} | {text} |"
            out.append(row)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
