"""The throwaway test CA issues certificates that a real TLS client accepts or rejects."""

from __future__ import annotations

import asyncio
import ssl

from tests.rig.ca import TestCA


async def _handshake(test_ca: TestCA, cert: str, key: str) -> str | None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=str(test_ca.ca_cert_path))
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        writer.close()
        return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message
    finally:
        server.close()
        await server.wait_closed()


async def test_valid_certificate_verifies(test_ca: TestCA) -> None:
    cert, key = test_ca.issue(["localhost", "127.0.0.1"])
    assert await _handshake(test_ca, str(cert), str(key)) is None


async def test_expired_certificate_is_rejected_as_expired(test_ca: TestCA) -> None:
    cert, key = test_ca.issue(["localhost"], expired=True)
    assert await _handshake(test_ca, str(cert), str(key)) == "certificate has expired"


def test_issue_is_cached(test_ca: TestCA) -> None:
    assert test_ca.issue(["localhost"], days=5) == test_ca.issue(["localhost"], days=5)
