"""YAML loading that remembers where each value came from.

PyYAML's composer gives every node a start mark; we walk the node tree once and build both the
plain Python value and an index ``path -> line`` so validation errors can name the line of the
offending field. Only the safe subset of YAML is accepted (no tags that construct objects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from sys import intern
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
        feed, next_event = builder.feed, loader.get_event
        while (event := next_event()) is not None:  # type: ignore[no-untyped-call]
            feed(event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # at the end of input libyaml may point past the last line; name the last one
        line = min(mark.line + 1, _last_line(text)) if mark is not None else None
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
    if builder.lines.get((), 0) > _last_line(text):  # an empty value after `---` ends the text
        builder.lines[()] = _last_line(text)
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

    __slots__ = ("anchor", "container", "is_map", "key", "path", "record", "store")

    def __init__(
        self, container: Any, is_map: bool, path: Path, record: bool, anchor: str | None
    ) -> None:
        self.container = container
        self.is_map = is_map
        self.path = path
        self.record = record  # False inside a discarded (duplicate or complex) key's value
        self.anchor = anchor
        self.key: str | None = None  # the mapping key whose value comes next
        self.store = True  # False: that key is a duplicate or complex; drop its value


class _Builder:
    """Turns the parser's event stream into plain values plus a ``path -> line`` index.

    The hot path (a scalar key or value in a mapping) is written out inline: it runs for
    every value of a 10,000-account document.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.value: Any = None
        self.lines: dict[Path, int] = {}
        self.errors: list[LocatedError] = []
        self.stack: list[_Frame] = []
        self.anchors: dict[str, Any] = {}
        self.documents = 0

    def feed(self, event: yaml.Event) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def _document(self, event: yaml.DocumentStartEvent) -> None:
        self.documents += 1
        if self.documents == 2:
            self._error(event, (), "only one YAML document is allowed (found `---` again)")

    def _close(self, _event: yaml.Event) -> None:
        frame = self.stack.pop()
        if frame.anchor:
            self.anchors[frame.anchor] = frame.container

    def _error(self, event: yaml.Event, path: Path, message: str) -> None:
        self.errors.append(LocatedError(self.source, _line(event), format_path(path), message))

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        if self.stack:
            frame = self.stack[-1]
            if frame.is_map and frame.key is None:  # a mapping key: keep its text as written
                # interned: 100,000 `hash:` keys are one string, and an address key is the
                # same string the mail state later keys its maps by
                self._set_key(frame, intern(event.value), event)
                return
        place = self._place(event)
        tag = event.tag
        value: Any = event.value
        if tag is not None or (event.implicit[0] and value[:1] in _IMPLICIT):
            value = self._resolve(event, place[0])
        if event.anchor:
            self.anchors[event.anchor] = value
        self._attach(value)

    def _place(self, event: yaml.Event) -> tuple[Path, bool]:
        """The path of the value starting at ``event`` and whether to index its lines."""
        if not self.stack:
            if self.documents == 1:
                self.lines[()] = _line(event)
            return (), self.documents == 1
        frame = self.stack[-1]
        if frame.is_map:
            return (*frame.path, frame.key or ""), frame.record and frame.store
        path = (*frame.path, len(frame.container))
        if frame.record:
            self.lines[path] = _line(event)
        return path, frame.record

    def _attach(self, value: Any) -> None:
        if not self.stack:
            if self.documents == 1:
                self.value = value
            return
        frame = self.stack[-1]
        if not frame.is_map:
            frame.container.append(value)
            return
        if frame.store and frame.key is not None:
            frame.container[frame.key] = value
        frame.key = None

    def _set_key(self, frame: _Frame, key: str, event: yaml.Event) -> None:
        frame.key = key
        frame.store = key not in frame.container
        if not frame.store:
            if frame.record:
                self._error(event, (*frame.path, key), "key appears twice in this mapping")
        elif frame.record:
            line = _line(event)
            # a key on its parent's line (``a@x: {hash: …}``) is located by the parent already
            # (line_of looks up the nearest ancestor): 100,000 such entries saved ~15 MB
            if self.lines.get(frame.path) != line:
                self.lines[(*frame.path, key)] = line

    def _complex_key(self, frame: _Frame, event: yaml.Event) -> None:
        if frame.record:
            self._error(event, frame.path, "complex key")
        frame.key = "\0complex"
        frame.store = False

    def _open(self, event: yaml.MappingStartEvent | yaml.SequenceStartEvent) -> None:
        if self.stack and self.stack[-1].is_map and self.stack[-1].key is None:
            self._complex_key(self.stack[-1], event)
            path, record = self.stack[-1].path, False
        else:
            path, record = self._place(event)
        if event.tag not in _CONTAINER_TAGS and record:
            self._error(event, path, f"unsupported tag {event.tag}")
        is_map = isinstance(event, yaml.MappingStartEvent)
        container: Any = {} if is_map else []
        self._attach(container)
        self.stack.append(_Frame(container, is_map, path, record, event.anchor))

    def _alias(self, event: yaml.AliasEvent) -> None:
        if self.stack and self.stack[-1].is_map and self.stack[-1].key is None:
            self._complex_key(self.stack[-1], event)
            return
        path, _ = self._place(event)
        if event.anchor not in self.anchors:
            self._error(event, path, f"unknown alias *{event.anchor}")
        self._attach(self.anchors.get(event.anchor or ""))

    def _resolve(self, event: yaml.ScalarEvent, path: Path) -> Any:
        # Messages here never quote the value: it may be a password in any document.
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0]:  # quoted or block scalar: a string
                return event.value
            tag = _implicit_tag(event.value)
        elif tag != _STR:
            # an explicit tag that builds something else (!!int, !!binary, !!timestamp, …):
            # nothing here needs one, and a value written that way is a mistake or an attack
            self._error(event, path, f"unsupported tag {_short(tag)}: write the value plainly")
            return event.value
        if tag == _STR:
            return event.value
        build = _CONSTRUCTORS.get(tag)
        if build is None:
            self._error(event, path, f"unsupported tag {_short(tag)}")
            return event.value
        node = yaml.ScalarNode(tag, event.value, None, None, event.style)
        try:
            return build(_constructor, node)
        except Exception:  # PyYAML's constructors raise several kinds on a malformed value
            self._error(event, path, f"not a valid {_short(tag)} value")
            return event.value


_TRAILING = " \t\r\n\x85\u2028\u2029"


def _last_line(text: str) -> int:
    """The number of the last line holding text, counting lines as YAML 1.1 does (\\r\\n, \\r,
    \\n, NEL, LS, PS each end a line). Counted in place: splitting a 100,000-line document
    into a list of lines cost ~35 MB at the peak."""
    tail = text[-4096:]  # trailing blanks are found in the tail; a text of blanks at once
    kept = tail.rstrip(_TRAILING)
    end = len(text) - len(tail) + len(kept) if kept else len(text.rstrip(_TRAILING))
    breaks = text.count("\n", 0, end) + text.count("\r", 0, end) - text.count("\r\n", 0, end)
    breaks += sum(text.count(c, 0, end) for c in "\x85\u2028\u2029")
    return breaks + 1


# By event type; at class level, not bound methods kept on the builder: those made a reference
# cycle that kept a whole document's values alive until the next full garbage collection.
_HANDLERS: dict[type, Callable[[_Builder, Any], None]] = {
    yaml.ScalarEvent: _Builder._scalar,
    yaml.MappingStartEvent: _Builder._open,
    yaml.SequenceStartEvent: _Builder._open,
    yaml.MappingEndEvent: _Builder._close,
    yaml.SequenceEndEvent: _Builder._close,
    yaml.AliasEvent: _Builder._alias,
    yaml.DocumentStartEvent: _Builder._document,
}


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else 0


def _short(tag: str) -> str:
    """``tag:yaml.org,2002:int`` as it was written: ``!!int``."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


def _implicit_tag(value: str) -> str:
    """The tag a plain scalar resolves to, as PyYAML's resolver decides it."""
    for tag, regexp in _IMPLICIT.get(value[:1] or "", ()):
        if regexp.match(value):
            return str(tag)
    return _STR
