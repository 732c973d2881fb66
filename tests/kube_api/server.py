"""A Kubernetes API server for tests: exactly the parts of core/v1 that dms-agent uses.

A real kube-apiserver runs in the tests too (tests/kube_real), but without a kubelet it cannot
exec, and it cannot stall or drop a stream on cue; for that this aiohttp server follows the
documented API for the subset dms-agent uses (tests/test_kube_real_wire_parity.py compares its
answers with the real server's):

- "Kubernetes API Concepts" (kubernetes.io/docs/reference/using-api/api-concepts/): resource
  versions (opaque strings; list returns the collection's version; watch from a version sends the
  changes after it; unset or "0" starts with synthetic ADDED events for the current objects),
  "Efficient detection of changes" (watch streams of newline-delimited JSON ``{"type","object"}``
  with ADDED / MODIFIED / DELETED; BOOKMARK events carrying only ``metadata.resourceVersion`` when
  ``allowWatchBookmarks`` is set; ``timeoutSeconds`` ends the stream), and "410 Gone responses" (a
  watch from a version older than the retained history gets HTTP 200 then one ERROR event with a
  Status ``code: 410, reason: Expired``, then the stream ends). Label selectors ("Labels and
  Selectors": equality- and set-based) and the metadata.name/namespace field selectors.
- The core/v1 API reference: ConfigMap, Secret (``data`` base64, ``stringData`` folded into it),
  Event (create, patch), Node (get, ``status.addresses``), Pod ``exec`` (connect).
- The streaming protocol of ``pods/exec`` over WebSocket, subprotocol ``v4.channel.k8s.io``
  (k8s.io/apimachinery wsstream, the kubelet's remotecommand server): binary frames whose first
  byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize); once the stream
  is open an empty frame on the lowest writable channel (stdout, else stderr, else error);
  on exit a meta/v1 Status on channel 3: ``{"status":"Success"}`` or
  ``Failure`` with reason ``NonZeroExitCode`` and ``details.causes[0] = {reason: ExitCode,
  message: "<n>"}``. v4 has no way to close stdin: it closes when the socket does.
- Query booleans are parsed like Go's strconv.ParseBool, so kubernetes_asyncio's ``True`` works.
- Authentication: ``Authorization: Bearer <token>``, 401 Unauthorized Status otherwise.

The command of an exec runs as a local process (the pod's ``Container`` gives its environment),
so tests can run the DMS ``setup`` double "inside the container".

Fault injection for chaos tests: ``restart()``, ``drop_streams()``, ``stall_streams()``,
``hold_watch_heads``,
``force_410(n)``, ``poison_versions()``, ``store.compact()``, ``rotate_token()``,
``forbid_exec``, ``exec_fault``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web

from tests.kube_api.store import (
    KINDS,
    ApiError,
    Container,
    Obj,
    Store,
    Watcher,
    WatchEvent,
    field_matcher,
    label_matcher,
    status,
)

V4 = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(value: str | None, name: str) -> bool:
    """Go's strconv.ParseBool, which the apiserver's query decoding uses."""
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApiError(400, "BadRequest", f'{name}: invalid boolean value "{value}"')


def _json(body: Obj, code: int = 200) -> web.Response:
    return web.json_response(body, status=code)


@dataclass(slots=True)
class Stream:
    """An open watch or exec connection, so faults can cut it."""

    request: web.Request
    watcher: Watcher | None = None
    kind: Literal["watch", "exec"] = "watch"


@dataclass
class KubeApiServer:
    host: str = "127.0.0.1"
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    bookmark_interval: float = 60.0  # the real apiserver sends one about every minute
    store: Store = field(default_factory=Store)
    tokens: list[str] = field(default_factory=lambda: [secrets.token_urlsafe(16)])  # newest last
    forbid_exec: bool = False  # RBAC refusal: 403 for pods/exec
    forbid_user: str = "system:serviceaccount:mail:dms-agent"
    exec_fault: Literal["drop", "stall"] | None = None
    hold_watch_heads: bool = False  # new watches get no answer, not even the response's head
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path?query)
    _streams: list[Stream] = field(default_factory=list)
    _force_410: int = 0
    _poisoned_upto: int = 0  # watches from a version up to this one get an ERROR 500
    _runner: web.AppRunner | None = None
    _procs: set[asyncio.subprocess.Process] = field(default_factory=set)
    _opened: asyncio.Event | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def token(self) -> str:
        return self.tokens[-1]

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        for plural in ("configmaps", "secrets", "events"):
            base = f"/api/v1/namespaces/{{ns}}/{plural}"
            r.add_get(base, self._collection(plural))
            r.add_post(base, self._create(plural))
            r.add_get(base + "/{name}", self._item(plural, "get"))
            r.add_put(base + "/{name}", self._item(plural, "put"))
            r.add_patch(base + "/{name}", self._item(plural, "patch"))
            r.add_delete(base + "/{name}", self._item(plural, "delete"))
        r.add_get("/api/v1/nodes/{name}", self._node)
        r.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/exec", self._exec)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True
        )
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self.drop_streams(abrupt=True)
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in list(self._procs):  # reaped here, or their transports outlive the loop
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, down_for: float = 0.0) -> None:
        """Cut every connection and listen again on the same port; the store survives (etcd)."""
        await self.stop()
        if down_for:
            await asyncio.sleep(down_for)
        await self.start()

    # ---- faults ------------------------------------------------------------------------------
    def drop_streams(self, abrupt: bool = True) -> int:
        """End every open watch/exec stream: ``abrupt`` resets the TCP connection mid-chunk,
        otherwise the stream ends cleanly as after ``timeoutSeconds``."""
        n = 0
        for s in list(self._streams):
            n += 1
            if s.watcher is not None and not abrupt:
                s.watcher.dropped.set()
            elif s.request.transport is not None:
                s.request.transport.abort()
        return n

    def stall_streams(self) -> int:
        """Open watch streams keep their connection but send nothing more, not even bookmarks."""
        watchers = [s.watcher for s in self._streams if s.watcher is not None]
        for w in watchers:
            w.stalled = True
        return len(watchers)

    def force_410(self, count: int = 1) -> None:
        """The next ``count`` watch requests get an ERROR 410 Expired, whatever their version."""
        self._force_410 = count

    def poison_versions(self) -> None:
        """Every watch from a version up to now gets an in-stream ERROR 500, as a real API
        server without a watch cache answers when etcd compacted away the previous value of
        the next change ("etcd event received with PrevKv=nil"): resuming never works there."""
        self._poisoned_upto = self.store.rv

    def rotate_token(self, keep_old: bool = False) -> str:
        """A new valid token; the old one stops working unless ``keep_old`` (a grace period).
        Open streams keep going, as on a real apiserver: tokens are checked per request."""
        new = secrets.token_urlsafe(16)
        self.tokens = [*self.tokens, new] if keep_old else [new]
        return new

    def watch_count(self) -> int:
        return sum(1 for s in self._streams if s.watcher is not None)

    async def wait_streams(self, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until at least ``count`` watch streams are open (for faults aimed at them)."""
        async with asyncio.timeout(timeout):
            while self.watch_count() < count:
                self._opened = self._opened or asyncio.Event()
                await self._opened.wait()

    def _add_stream(self, stream: Stream) -> None:
        self._streams.append(stream)
        if self._opened is not None:
            self._opened.set()
            self._opened = None

    # ---- helpers for tests -------------------------------------------------------------------
    def add_node(self, name: str, addresses: list[tuple[str, str]]) -> None:
        self.store.nodes[name] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "resourceVersion": str(self.store.rv)},
            "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]},
        }

    def add_pod(self, namespace: str, name: str, containers: list[Container]) -> None:
        self.store.pods[(namespace, name)] = containers

    def events(self, namespace: str) -> list[Obj]:
        return self.store.list("events", namespace, lambda o: True)[0]

    # ---- plumbing ----------------------------------------------------------------------------
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return _json(status(401, "Unauthorized", "Unauthorized"), 401)
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.body, exc.code)

    @staticmethod
    def _matcher(request: web.Request) -> Callable[[Obj], bool]:
        labels = label_matcher(request.query.get("labelSelector"))
        fields = field_matcher(request.query.get("fieldSelector"))
        return lambda o: labels(o["metadata"].get("labels") or {}) and fields(o)

    def _collection(self, plural: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            ns = request.match_info["ns"]
            matches = self._matcher(request)
            if parse_bool(request.query.get("watch"), "watch"):
                return await self._watch(request, plural, ns, matches)
            items, rv = self.store.list(plural, ns, matches)
            for item in items:  # list items carry no kind/apiVersion, as the real API's
                item.pop("kind", None)
                item.pop("apiVersion", None)
            return _json(
                {
                    "apiVersion": "v1",
                    "kind": KINDS[plural] + "List",
                    "metadata": {"resourceVersion": str(rv)},
                    "items": items,
                }
            )

        return handler

    def _create(self, plural: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            return _json(self.store.create(plural, request.match_info["ns"], body), 201)

        return handler

    def _item(
        self, plural: str, verb: str
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            ns, name = request.match_info["ns"], request.match_info["name"]
            if verb == "get":
                return _json(self.store.get(plural, ns, name))
            if verb == "delete":
                obj = self.store.delete(plural, ns, name)
                done = {**status(200, "", ""), "status": "Success"}
                done["details"] = {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]}
                return _json(done)
            body = await request.json()
            if verb == "put":
                return _json(self.store.update(plural, ns, name, body))
            ctype = request.content_type
            if ctype not in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an "
                    f"unknown format - accepted media types include: "
                    f"application/merge-patch+json ({ctype})",
                )
            return _json(self.store.merge_patch(plural, ns, name, body))

        return handler

    async def _node(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        node = self.store.nodes.get(name)
        if node is None:
            raise ApiError(404, "NotFound", f'nodes "{name}" not found', name=name, kind="nodes")
        return _json(node)

    # ---- watch -------------------------------------------------------------------------------
    def _initial_events(
        self, request: web.Request, plural: str, ns: str, matches: Callable[[Obj], bool]
    ) -> list[WatchEvent] | Obj:
        """What a new watch sends first: replayed history, synthetic ADDED, or a 410 Status."""
        rv_param = request.query.get("resourceVersion", "")
        if self._force_410 > 0:
            self._force_410 -= 1
            return status(410, "Expired", f"too old resource version: {rv_param} (forced)")
        if rv_param.isdigit() and 0 < int(rv_param) <= self._poisoned_upto:
            message = f"Internal error occurred: etcd event received with PrevKv=nil ({rv_param})"
            return status(500, "InternalError", message)
        if rv_param in ("", "0"):
            items, rv = self.store.list(plural, ns, matches)
            return [WatchEvent(rv, "ADDED", plural, o) for o in items]
        try:
            since = int(rv_param)
        except ValueError:
            raise ApiError(
                400, "BadRequest", f'resourceVersion: Invalid value: "{rv_param}"'
            ) from None
        if since < self.store.compacted_rv:
            return status(
                410,
                "Expired",
                f"too old resource version: {since} ({self.store.compacted_rv})",
            )
        return [
            e
            for e in self.store.history
            if e.rv > since
            and e.plural == plural
            and ns in ("", e.obj["metadata"]["namespace"])
            and matches(e.obj)
        ]

    async def _watch(
        self, request: web.Request, plural: str, ns: str, matches: Callable[[Obj], bool]
    ) -> web.StreamResponse:
        bookmarks = parse_bool(request.query.get("allowWatchBookmarks"), "allowWatchBookmarks")
        timeout_raw = request.query.get("timeoutSeconds")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + int(timeout_raw) if timeout_raw else None
        # No await between reading history and registering: no event can fall between them.
        first = self._initial_events(request, plural, ns, matches)
        watcher = Watcher(plural, ns, matches)
        if not isinstance(first, dict):
            for event in first:
                watcher.queue.put_nowait(event)
            self.store.watchers.append(watcher)
        stream = Stream(request, watcher)
        self._add_stream(stream)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            if self.hold_watch_heads:  # the request is taken, its answer never comes
                await _wait(watcher.dropped.wait(), None)
                return resp
            await resp.prepare(request)
            if isinstance(first, dict):
                await resp.write(_line({"type": "ERROR", "object": first}))
                return resp
            await self._pump(resp, watcher, plural, bookmarks, deadline)
        except ConnectionResetError:  # the client went away, or a fault cut the stream
            return resp
        finally:
            self._streams.remove(stream)
            with contextlib.suppress(ValueError):
                self.store.watchers.remove(watcher)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    async def _pump(
        self,
        resp: web.StreamResponse,
        watcher: Watcher,
        plural: str,
        bookmarks: bool,
        deadline: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        next_bookmark = loop.time() + self.bookmark_interval
        while not watcher.dropped.is_set():
            now = loop.time()
            if watcher.stalled:  # hold everything, the end at timeoutSeconds too, until the
                await _wait(watcher.dropped.wait(), None)  # client gives up
                return
            if deadline is not None and now >= deadline:
                return
            wake = min(next_bookmark, deadline or next_bookmark)
            event = await _wait(watcher.queue.get(), max(0.0, wake - now))
            if watcher.stalled:
                await _wait(watcher.dropped.wait(), None)
                return
            if event is not None:
                body = {"type": event.type, "object": event.obj}
                await resp.write(_line(body))
            elif bookmarks and loop.time() >= next_bookmark and watcher.queue.empty():
                # only with nothing pending: a bookmark promises every earlier event was sent
                mark = {
                    "kind": KINDS[plural],
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.store.rv)},
                }
                await resp.write(_line({"type": "BOOKMARK", "object": mark}))
            if loop.time() >= next_bookmark:
                next_bookmark = loop.time() + self.bookmark_interval

    # ---- exec --------------------------------------------------------------------------------
    def _exec_target(self, request: web.Request) -> tuple[Container, list[str]]:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if self.forbid_exec:
            raise ApiError(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: User "{self.forbid_user}" cannot create resource '
                f'"pods/exec" in API group "" in the namespace "{ns}"',
                name=name,
                kind="pods",
            )
        containers = self.store.pods.get((ns, name))
        if containers is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        wanted = request.query.get("container")
        if wanted is None:
            if len(containers) != 1:
                names = " ".join(c.name for c in containers)
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: [{names}]",
                )
            container = containers[0]
        else:
            found = [c for c in containers if c.name == wanted]
            if not found:
                raise ApiError(400, "BadRequest", f"container {wanted} is not valid for pod {name}")
            container = found[0]
        command = request.query.getall("command", [])
        if not command:
            raise ApiError(400, "BadRequest", "you must specify at least 1 command")
        protocols = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
        ]
        if V4 not in protocols:
            raise ApiError(400, "BadRequest", f"this test server speaks only {V4}")
        return container, command

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        container, command = self._exec_target(request)
        wants = {
            ch: parse_bool(request.query.get(name), name)
            for ch, name in ((STDIN, "stdin"), (STDOUT, "stdout"), (STDERR, "stderr"))
        }
        ws = web.WebSocketResponse(protocols=(V4,))
        await ws.prepare(request)
        stream = Stream(request, kind="exec")
        self._add_stream(stream)
        try:
            # "connection established": an empty frame on the lowest writable channel
            first = STDOUT if wants[STDOUT] else STDERR if wants[STDERR] else ERROR
            await ws.send_bytes(bytes([first]))
            await self._run_exec(request, ws, container, command, wants)
        finally:
            self._streams.remove(stream)
        return ws

    async def _run_exec(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        container: Container,
        command: list[str],
        wants: dict[int, bool],
    ) -> None:
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=pipe if wants[STDIN] else null,
                stdout=pipe if wants[STDOUT] else null,
                stderr=pipe if wants[STDERR] else null,
                env=container.env if container.env is not None else dict(os.environ),
                cwd=container.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            await _send_start_failure(ws, command, exc)
            return
        self._procs.add(proc)
        reader = asyncio.create_task(_feed_stdin(ws, proc))
        try:
            outputs = [(proc.stdout, STDOUT), (proc.stderr, STDERR)]
            await asyncio.gather(*(_pipe_out(ws, p, ch) for p, ch in outputs if p is not None))
            code = await proc.wait()
        finally:
            self._procs.discard(proc)
        if self.exec_fault == "drop":  # the command ran; its status never arrives
            reader.cancel()
            if request.transport is not None:
                request.transport.abort()
            return
        if self.exec_fault == "stall":
            await reader  # nothing more is sent; the client has to give up
            return
        await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code, command)).encode())
        reader.cancel()
        with contextlib.suppress(Exception):
            await ws.close()


async def _send_start_failure(ws: web.WebSocketResponse, command: list[str], exc: OSError) -> None:
    """What a container runtime reports when the executable cannot be started."""
    message = (
        "OCI runtime exec failed: exec failed: unable to start container process: "
        f'exec: "{command[0]}": {exc.strerror}: unknown'
    )
    failure = {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }
    await ws.send_bytes(bytes([ERROR]) + json.dumps(failure).encode())
    await ws.close()


def exit_status(code: int, command: list[str]) -> Obj:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    if code < 0:  # killed by a signal: what a shell would report
        code = 128 - code
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _pipe_out(ws: web.WebSocketResponse, pipe: asyncio.StreamReader, channel: int) -> None:
    while chunk := await pipe.read(65536):
        with contextlib.suppress(ConnectionResetError):
            await ws.send_bytes(bytes([channel]) + chunk)


async def _feed_stdin(ws: web.WebSocketResponse, proc: asyncio.subprocess.Process) -> None:
    """Client frames on channel 0 go to the process; stdin closes only when the socket does."""
    try:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            if msg.data[0] == STDIN and proc.stdin is not None:
                proc.stdin.write(msg.data[1:])
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    await proc.stdin.drain()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()


async def _wait(aw: Awaitable[Any], timeout: float | None) -> Any:
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.wait_for(task, timeout)
    except TimeoutError:
        return None


def _line(body: Obj) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"
