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
    """Parse ``text``; raise InvalidDocument with located errors on any syntax problem."""
    builder = _Builder(source)
    loader = _Loader(text)
    try:
        while loader.check_event():
            builder.feed(loader.get_event())  # type: ignore[no-untyped-call]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        builder.errors.append(
            LocatedError(source, line, "", f"YAML syntax error: {exc.problem or exc}")
        )
    except yaml.reader.ReaderError as exc:  # e.g. a control character; position is an index
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        builder.errors.append(LocatedError(source, line, "", f"YAML error: {exc.reason}"))
    except yaml.YAMLError as exc:
        builder.errors.append(LocatedError(source, None, "", f"YAML error: {exc}"))
    finally:
        loader.dispose()
    if builder.errors:
        raise InvalidDocument(builder.errors)
    return LocatedDoc(source, builder.value, builder.lines)


# Why events rather than yaml.compose(): the composer builds a Node per value and runs PyYAML's
# Python resolver on every node (mappings included); consuming the C parser's events directly
# and resolving only plain scalars is about twice as fast on 10,000-account documents, and keeps
# no cache alive between documents.

_STR = "tag:yaml.org,2002:str"
_CONTAINER_TAGS = {None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers
_CONSTRUCTORS = yaml.constructor.SafeConstructor.yaml_constructors
_constructor = yaml.constructor.SafeConstructor()  # only for its scalar construct_* methods


class _Frame:
    """An open mapping or sequence while its events arrive."""

    __slots__ = ("anchor", "container", "key", "key_line", "path", "record", "store")

    def __init__(self, container: Any, path: Path, record: bool, anchor: str | None) -> None:
        self.container = container
        self.path = path
        self.record = record  # False inside a discarded (duplicate or complex) key's value
        self.anchor = anchor
        self.key: str | None = None
        self.key_line = 0
        self.store = True


class _Builder:
    """Turns the parser's event stream into plain values plus a ``path -> line`` index."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.value: Any = None
        self.lines: dict[Path, int] = {}
        self.errors: list[LocatedError] = []
        self.stack: list[_Frame] = []
        self.anchors: dict[str, Any] = {}
        self.documents = 0

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._scalar(event)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            self._open(event)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frame = self.stack.pop()
            if frame.anchor:
                self.anchors[frame.anchor] = frame.container
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents == 2:
                self._error(event, (), "only one YAML document is allowed (found `---` again)")

    def _error(self, event: yaml.Event, path: Path, message: str) -> None:
        line = _line(event)
        self.errors.append(LocatedError(self.source, line, format_path(path), message))

    def _place(self, event: yaml.Event) -> tuple[Path, bool] | None:
        """Where the next value goes; None when it is a mapping key (handled by the caller)."""
        line = _line(event)
        if not self.stack:
            if self.documents == 1:
                self.lines[()] = line
            return (), self.documents == 1
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            path = (*frame.path, len(frame.container))
            if frame.record:
                self.lines[path] = line
            return path, frame.record
        if frame.key is None:
            return None
        return (*frame.path, frame.key), frame.record and frame.store

    def _attach(self, value: Any) -> None:
        if not self.stack:
            if self.documents == 1:
                self.value = value
            return
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            frame.container.append(value)
            return
        if frame.store and frame.key is not None:
            frame.container[frame.key] = value
        frame.key = None

    def _set_key(self, frame: _Frame, key: str, event: yaml.Event) -> None:
        frame.key = key
        frame.key_line = _line(event)
        frame.store = key not in frame.container
        if not frame.store:
            if frame.record:
                self._error(event, (*frame.path, key), "key appears twice in this mapping")
        elif frame.record:
            self.lines[(*frame.path, key)] = frame.key_line

    def _complex_key(self, frame: _Frame, event: yaml.Event) -> None:
        if frame.record:
            self._error(event, frame.path, "complex key")
        frame.key = "\0complex"
        frame.store = False

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        place = self._place(event)
        if place is None:  # a mapping key: keep its text, as written
            self._set_key(self.stack[-1], event.value, event)
            return
        value = self._resolve(event, place[0])
        if event.anchor:
            self.anchors[event.anchor] = value
        self._attach(value)

    def _open(self, event: yaml.MappingStartEvent | yaml.SequenceStartEvent) -> None:
        place = self._place(event)
        if place is None:
            self._complex_key(self.stack[-1], event)
            place = (self.stack[-1].path, False)
        path, record = place
        if event.tag not in _CONTAINER_TAGS and record:
            self._error(event, path, f"unsupported tag {event.tag}")
        container: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
        self._attach(container)
        self.stack.append(_Frame(container, path, record, event.anchor))

    def _alias(self, event: yaml.AliasEvent) -> None:
        place = self._place(event)
        if place is None:
            self._complex_key(self.stack[-1], event)
            return
        if event.anchor not in self.anchors:
            self._error(event, place[0], f"unknown alias *{event.anchor}")
        self._attach(self.anchors.get(event.anchor or ""))

    def _resolve(self, event: yaml.ScalarEvent, path: Path) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0]:  # quoted or block scalar: a string
                return event.value
            tag = _implicit_tag(event.value)
        if tag == _STR:
            return event.value
        build = _CONSTRUCTORS.get(tag)
        if build is None or tag is None:
            self._error(event, path, f"unsupported tag {tag}")
            return event.value
        node = yaml.ScalarNode(tag, event.value, None, None, event.style)
        try:
            return build(_constructor, node)
        except (yaml.YAMLError, ValueError) as exc:
            self._error(event, path, f"bad {tag.rsplit(':', 1)[-1]} value: {exc}")
            return event.value


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else 0


def _implicit_tag(value: str) -> str:
    """The tag a plain scalar resolves to, as PyYAML's resolver decides it."""
    for tag, regexp in _IMPLICIT.get(value[:1] or "", ()):
        if regexp.match(value):
            return str(tag)
    return _STR
