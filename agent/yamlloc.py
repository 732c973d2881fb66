"""YAML loading that remembers where each value came from.

PyYAML's composer gives every node a start mark; we walk the node tree once and build both the
plain Python value and an index ``path -> line`` so validation errors can name the line of the
offending field. Only the safe subset of YAML is accepted (no tags that construct objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.errors import InvalidDocument, LocatedError

try:  # the C composer is ~5x faster on 10,000-account documents
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

Path = tuple[str | int, ...]


@dataclass(slots=True)
class LocatedDoc:
    """A parsed document: its value, its source name and a line index by field path."""

    source: str
    value: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def error(self, path: Sequence[str | int], message: str) -> LocatedError:
        return LocatedError(self.source, self.line_of(path), format_path(path), message)


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_yaml(text: str, source: str) -> LocatedDoc:
    """Parse ``text``; raise InvalidDocument with a located error on any syntax problem."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise InvalidDocument(
            [LocatedError(source, line, "", f"YAML syntax error: {exc.problem or exc}")]
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidDocument([LocatedError(source, None, "", f"YAML error: {exc}")]) from None
    doc = LocatedDoc(source, None)
    if node is None:
        doc.value = None
        return doc
    errors: list[LocatedError] = []
    doc.value = _build(node, (), doc.lines, errors, source)
    if errors:
        raise InvalidDocument(errors)
    return doc


def _build(
    node: yaml.Node, path: Path, lines: dict[Path, int], errors: list[LocatedError], source: str
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                errors.append(
                    LocatedError(
                        source, key_node.start_mark.line + 1, format_path(path), "complex key"
                    )
                )
                continue
            key = str(key_node.value)
            if key in out:
                errors.append(
                    LocatedError(
                        source,
                        key_node.start_mark.line + 1,
                        format_path((*path, key)),
                        "key appears twice in this mapping",
                    )
                )
                continue
            out[key] = _build(value_node, (*path, key), lines, errors, source)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), lines, errors, source) for i, item in enumerate(node.value)
        ]
    return _scalar(node)


_resolver = yaml.SafeLoader("")  # only for its scalar constructors


def _scalar(node: yaml.Node) -> Any:
    try:
        return _resolver.construct_object(node, deep=True)
    except yaml.YAMLError:
        return node.value
