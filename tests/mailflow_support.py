"""A scripted SMTP relay for the mail-flow tests: Postfix relays to it, and the recipient's
local part decides the answer (``ok`` 250, ``defer`` 451, ``bounce`` 550)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

REPLIES = {
    "ok": b"250 2.1.5 ok\r\n",
    "defer": b"451 4.3.0 <{rcpt}>: greylisted, try again later\r\n",
    "bounce": b"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n",
}


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 relay.test ESMTP scripted\r\n")
    accepted = 0
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-relay.test\r\n250 8BITMIME\r\n")
            elif verb == b"RCPT":
                rcpt = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                kind = rcpt.split("@")[0].split("-")[0]
                reply = REPLIES.get(kind, REPLIES["ok"])
                accepted += reply.startswith(b"250")
                writer.write(reply.replace(b"{rcpt}", rcpt.encode()))
            elif verb == b"DATA":
                if not accepted:
                    writer.write(b"554 5.5.1 no valid recipients\r\n")
                    continue
                writer.write(b"354 go ahead\r\n")
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                break
            elif verb == b"RSET":
                accepted = 0
                writer.write(b"250 2.0.0 ok\r\n")
            else:  # HELO, MAIL, NOOP
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def scripted_relay() -> AsyncIterator[int]:
    server = await asyncio.start_server(_session, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()
