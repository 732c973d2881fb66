"""The object store of the test API server: ConfigMaps, Secrets, Events, Nodes, Pods.

Follows "Kubernetes API Concepts" (resource versions, efficient detection of changes) and the
core/v1 reference for the object shapes. Resource versions are opaque strings to clients; here
they come from one counter, as etcd's revision does for a real apiserver. History is kept for
watches until ``compact()`` drops it, after which a watch from an older version gets 410.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

KINDS = {"configmaps": "ConfigMap", "secrets": "Secret", "events": "Event"}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, **details: Any) -> Obj:
    """A meta/v1 Status, as the apiserver returns for errors (and 410 inside a watch)."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.body = status(code, reason, message, **details)
        self.code = code


# ---- selectors (API Concepts / "Labels and Selectors": equality- and set-based) -------------

_SET_RE = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    """Split on commas that are not inside ``( … )`` (set-based values hold commas)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def label_matcher(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """Compile a label selector; raise ApiError 400 on syntax the apiserver would refuse."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for raw in _split_selector(selector or ""):
        term = raw.strip()
        if m := _SET_RE.match(term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                tests.append(lambda lab, k=key, vs=values: lab.get(k) in vs)
            else:
                tests.append(lambda lab, k=key, vs=values: lab.get(k) not in vs)
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            tests.append(lambda lab, k=key, v=value: lab.get(k) != v)
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            tests.append(lambda lab, k=key, v=value: lab.get(k) == v)
        elif term.startswith("!"):
            absent = term[1:].strip()
            tests.append(lambda lab, k=absent: k not in lab)
        elif re.fullmatch(r"[\w./-]+", term):
            tests.append(lambda lab, k=term: k in lab)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(t(labels) for t in tests)


def field_matcher(selector: str | None) -> Callable[[Obj], bool]:
    """The field selectors every object supports: metadata.name and metadata.namespace."""
    tests: list[Callable[[Obj], bool]] = []
    for raw in _split_selector(selector or ""):
        term = raw.strip()
        negate = "!=" in term
        key, value = (s.strip() for s in re.split(r"!=|==|=", term, maxsplit=1))
        if key not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest", f'field label not supported: "{key}"')
        attr = key.split(".", 1)[1]
        tests.append(lambda o, a=attr, v=value, n=negate: (o["metadata"].get(a) == v) != n)
    return lambda obj: all(t(obj) for t in tests)


# ---- the store ------------------------------------------------------------------------------


@dataclass(slots=True)
class WatchEvent:
    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    plural: str
    obj: Obj


@dataclass(slots=True)
class Watcher:
    """One open watch stream: the events for it wait in ``queue``."""

    plural: str
    namespace: str
    matches: Callable[[Obj], bool]
    queue: asyncio.Queue[WatchEvent] = field(default_factory=asyncio.Queue)
    stalled: bool = False
    dropped: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class Container:
    """Where exec runs a command: a local process with this environment and working folder."""

    name: str
    env: dict[str, str] | None = None
    cwd: str | None = None


class Store:
    def __init__(self, first_rv: int = 1000) -> None:
        self.rv = first_rv
        self.objects: dict[tuple[str, str, str], Obj] = {}  # (plural, namespace, name)
        self.history: list[WatchEvent] = []
        self.compacted_rv = first_rv  # a watch from below this version is 410 Expired
        self.watchers: list[Watcher] = []
        self.nodes: dict[str, Obj] = {}
        self.pods: dict[tuple[str, str], list[Container]] = {}
        self.writes = 0  # number of create/update/delete done, for tests

    # -- versions and history
    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def compact(self) -> None:
        """Drop all history, as etcd compaction does: older versions can no longer be watched."""
        self.history.clear()
        self.compacted_rv = self.rv

    def _record(self, type_: str, plural: str, obj: Obj) -> None:
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), type_, plural, obj)
        self.history.append(event)
        for w in self.watchers:
            if w.plural == plural and w.namespace in ("", obj["metadata"].get("namespace")):
                if w.matches(obj):
                    w.queue.put_nowait(event)

    # -- object shapes
    @staticmethod
    def _normalize(plural: str, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        obj["apiVersion"] = "v1"
        obj["kind"] = KINDS[plural]
        if plural == "secrets":
            data = dict(obj.get("data") or {})
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(value.encode()).decode()
            obj["data"] = data
            obj.setdefault("type", "Opaque")
        return obj

    def get(self, plural: str, namespace: str, name: str) -> Obj:
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'{plural} "{name}" not found',
                name=name,
                kind=plural,
            )
        return copy.deepcopy(obj)

    def list(
        self, plural: str, namespace: str, matches: Callable[[Obj], bool]
    ) -> tuple[list[Obj], int]:
        items = [
            copy.deepcopy(o)
            for (p, ns, _), o in sorted(self.objects.items())
            if p == plural and namespace in ("", ns) and matches(o)
        ]
        return items, self.rv

    def create(self, plural: str, namespace: str, body: Obj) -> Obj:
        obj = self._normalize(plural, body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value: name is required")
        if (plural, namespace, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists', name=name)
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=now_rfc3339(),
            resourceVersion=str(self._next_rv()),
        )
        self.objects[(plural, namespace, name)] = obj
        self.writes += 1
        self._record("ADDED", plural, copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def update(self, plural: str, namespace: str, name: str, body: Obj) -> Obj:
        old = self.get(plural, namespace, name)
        obj = self._normalize(plural, body)
        meta = obj.setdefault("metadata", {})
        given = meta.get("resourceVersion")
        if given and given != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        for key in ("uid", "creationTimestamp"):
            meta[key] = old["metadata"][key]
        meta.update(name=name, namespace=namespace, resourceVersion=str(self._next_rv()))
        self.objects[(plural, namespace, name)] = obj
        self.writes += 1
        self._record("MODIFIED", plural, copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def merge_patch(self, plural: str, namespace: str, name: str, patch: Obj) -> Obj:
        """JSON merge patch (RFC 7386); strategic merge patch equals it for Event fields."""
        merged = _merge(self.get(plural, namespace, name), patch)
        merged["metadata"].pop("resourceVersion", None)
        return self.update(plural, namespace, name, merged)

    def delete(self, plural: str, namespace: str, name: str) -> Obj:
        obj = self.get(plural, namespace, name)
        del self.objects[(plural, namespace, name)]
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self.writes += 1
        self._record("DELETED", plural, copy.deepcopy(obj))
        return obj


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result
