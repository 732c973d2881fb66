"""A loopback TCP relay in front of the real API server that can go silent on cue.

``freeze()`` makes every connection open at that moment stop passing the server's bytes on
(the connection stays open: a silently stalled watch, which a real API server cannot be made
to do); connections opened later pass everything, so a client that gives up and reconnects
gets through — unless ``freeze(also_new=True)``: then they are silent from the start (a request
whose answer never comes, not even its head) until ``thaw_new()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class FreezingRelay:
    target_port: int
    port: int = 0
    freeze_new: bool = False  # connections opened now are silent from the start
    _server: asyncio.Server | None = None
    _live: set[asyncio.Event] = field(default_factory=set)  # set: frozen
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self, also_new: bool = False) -> int:
        """Silence every open connection (``also_new``: and every one opened until
        ``thaw_new``); returns how many were open."""
        self.freeze_new = also_new
        for frozen in self._live:
            frozen.set()
        return len(self._live)

    def thaw_new(self) -> None:
        """Connections opened from now on pass everything again."""
        self.freeze_new = False

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        frozen = asyncio.Event()
        if self.freeze_new:
            frozen.set()
        self._live.add(frozen)
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, None)),
            asyncio.create_task(self._pump(up_reader, writer, frozen)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            self._live.discard(frozen)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    @staticmethod
    async def _pump(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, frozen: asyncio.Event | None
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if frozen is not None and frozen.is_set():
                    await asyncio.Event().wait()  # hold it: nothing more reaches the client
                dst.write(data)
                await dst.drain()
