"""TLSA (DANE, RFC 6698/7672): read the certificate the MX serves after STARTTLS and compare it
with ``_25._tcp.<mx>`` TLSA records.

The certificate is read without PKIX verification (DANE does not depend on it). Usages 1 and 3
(end-entity) are matched against the served certificate; usages 0 and 2 name a CA of the chain,
which Python 3.11's ssl module does not expose, so they are reported as not verifiable here.
X.509 parsing is done by ``cryptography``; the SMTP dialogue (banner, EHLO, STARTTLS) is a few
lines and hand-written.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass

SMTP_TIMEOUT = 10.0


class SmtpTlsError(Exception):
    """The certificate could not be read (no connection, no STARTTLS, handshake failed)."""


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


def association(cert_der: bytes, selector: int, mtype: int) -> bytes:
    """The certificate association data of ``cert_der`` for a selector and matching type."""
    if selector == 0:
        content = cert_der
    else:
        # imported here: only a TLSA record of selector 1 needs it, and importing it costs
        # every DNS run (a fresh worker process) tens of ms of CPU
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        cert = x509.load_der_x509_certificate(cert_der)
        content = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if mtype == 1:
        return hashlib.sha256(content).digest()
    if mtype == 2:
        return hashlib.sha512(content).digest()
    return content


def matches(record: Tlsa, cert_der: bytes) -> bool:
    if record.selector not in (0, 1) or record.mtype not in (0, 1, 2):
        return False
    return association(cert_der, record.selector, record.mtype) == record.data


def suggested(cert_der: bytes) -> str:
    """The ``3 1 1`` record for the served certificate (DANE-EE, SPKI, SHA-256)."""
    return f"3 1 1 {association(cert_der, 1, 1).hex()}"


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    """One SMTP reply: (code, lines), following ``250-`` continuation lines."""
    lines = []
    while True:
        raw = await reader.readline()
        if not raw:
            raise SmtpTlsError("connection closed during the SMTP dialogue")
        line = raw.decode("ascii", "replace").rstrip("\r\n")
        lines.append(line[4:])
        if len(line) < 4 or line[3] != "-":
            code = int(line[:3]) if line[:3].isdigit() else 0
            return code, lines


async def served_certificate(address: str, port: int, helo: str) -> bytes:
    """The leaf certificate (DER) the SMTP server at ``address:port`` shows after STARTTLS."""
    try:
        async with asyncio.timeout(SMTP_TIMEOUT):
            return await _starttls(address, port, helo)
    except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
        raise SmtpTlsError(f"{address}:{port}: {exc or type(exc).__name__}") from None


async def _starttls(address: str, port: int, helo: str) -> bytes:
    reader, writer = await asyncio.open_connection(address, port)
    try:
        code, _ = await _reply(reader)
        if code != 220:
            raise SmtpTlsError(f"banner {code}")
        writer.write(f"EHLO {helo}\r\n".encode())
        code, lines = await _reply(reader)
        if code != 250 or not any(x.upper().startswith("STARTTLS") for x in lines):
            raise SmtpTlsError("the server does not offer STARTTLS")
        writer.write(b"STARTTLS\r\n")
        code, _ = await _reply(reader)
        if code != 220:
            raise SmtpTlsError(f"STARTTLS refused ({code})")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # DANE, not PKIX, decides below
        await writer.start_tls(ctx, server_hostname=helo)
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj else None
        if not der:
            raise SmtpTlsError("no certificate after STARTTLS")
        writer.write(b"QUIT\r\n")
        return bytes(der)
    finally:
        writer.close()
