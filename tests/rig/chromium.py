"""Debian's Chromium, headless, driven over the DevTools protocol (a websocket, with aiohttp).

``Chromium`` starts the browser with a fresh profile and its DevTools port on loopback and
opens one tab; ``Tab`` sends commands and collects what the page reports — console messages,
uncaught exceptions, and the browser's own log (where Content-Security-Policy violations and
failed loads appear). Under ``CI=true`` a missing chromium fails the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.rig.proc import require_binary

# The flags the closed network needs: without the background-networking ones Chromium keeps
# trying to reach Google's services and logs refused connections.
FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-domain-reliability",  # and no other reason to reach out: loopback only
    "--disable-breakpad",
    "--no-pings",
    "--no-default-browser-check",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks a port and writes it to DevToolsActivePort
)


class Tab:
    """One page target: ``send`` a command, ``wait_event`` for an event; ``problems`` lists
    every console error, exception and browser-log error or warning seen so far."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[dict[str, Any]] = []
        self._new_event = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                future = self._replies.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._events.append(data)
                self._new_event.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ident] = future
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        async with asyncio.timeout(30):
            reply = await future
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def wait_event(self, method: str, since: int = 0, timeout: float = 30) -> int:
        """Index (in the event list) of the first ``method`` event at or after ``since``."""
        async with asyncio.timeout(timeout):
            while True:
                for i in range(since, len(self._events)):
                    if self._events[i]["method"] == method:
                        return i
                self._new_event.clear()
                await self._new_event.wait()

    def mark(self) -> int:
        return len(self._events)

    @property
    def problems(self) -> list[str]:
        out = []
        for e in self._events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning"):
                out.append("console: " + " ".join(str(a.get("value")) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                entry = p["entry"]
                out.append(f"log ({entry.get('source')}): {entry.get('text')}")
        return out

    async def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        since = self.mark()
        await self.send("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired", since)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path, whole: bool = True) -> None:
        """The whole page, or (``whole=False``) what the viewport shows."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": whole}
        if whole:  # Chromium otherwise cuts at the viewport's height
            css = (await self.send("Page.getLayoutMetrics"))["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": css["width"], "height": css["height"]}
            params["clip"]["scale"] = 1
        shot = await self.send("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))

    async def viewport(self, width: int, height: int, dark: bool = False) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=width < 600,
        )  # fmt: skip
        scheme = "dark" if dark else "light"
        await self.send(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": scheme}],
        )

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


class Chromium:
    """``async with Chromium() as tab:`` — a fresh headless browser with one open tab."""

    def __init__(self) -> None:
        self.binary = require_binary("chromium", "chromium")
        self._profile = tempfile.TemporaryDirectory(prefix="dms-agent-chromium-")
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.tab: Tab | None = None

    async def _devtools_port(self) -> int:
        active = Path(self._profile.name) / "DevToolsActivePort"
        async with asyncio.timeout(60):
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise RuntimeError(f"chromium exited with {self.proc.returncode}")
                if active.exists() and active.read_text().count("\n") >= 1:
                    return int(active.read_text().split()[0])
                await asyncio.sleep(0.05)  # polling a file Chromium writes once, with a deadline

    async def __aenter__(self) -> Tab:
        argv = [*FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"]
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, *argv, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        port = await self._devtools_port()
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self.tab = Tab(ws)
        for domain in ("Page", "Runtime", "Log"):
            await self.tab.send(f"{domain}.enable")
        return self.tab

    async def __aexit__(self, *exc: object) -> None:
        if self.tab is not None:
            await self.tab.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None:
            await self._stop_group(self.proc)
        self._profile.cleanup()

    @staticmethod
    async def _stop_group(proc: asyncio.subprocess.Process) -> None:
        """Chromium's own children (zygote, renderers) share the session it was started in:
        stop them all, and wait until none is left writing into the profile."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if proc.returncode is None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.1):
                            await proc.wait()
                    continue
                try:
                    os.killpg(proc.pid, 0)  # is any of the group still there?
                except ProcessLookupError:
                    return
                await asyncio.sleep(0.05)  # children exiting after their parent, with a deadline
