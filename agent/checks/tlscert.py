"""Read a peer certificate's notAfter from its DER bytes, without verifying it.

The checks connect to the pod's loopback, where certificate names rarely match, so the TLS
handshake is usually unverified and ``ssl`` then gives only the DER bytes. Parsing the few
fields up to ``validity`` (RFC 5280 section 4.1) is a short walk over DER, cheaper than a
crypto library dependency.
"""

from __future__ import annotations

from datetime import UTC, datetime

_SEQUENCE = 0x30
_CONTEXT_0 = 0xA0
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18


class CertificateParseError(ValueError):
    pass


def _read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise CertificateParseError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise CertificateParseError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise CertificateParseError("truncated DER")
    return tag, pos, pos + length


def _parse_time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == _UTC_TIME:  # YYMMDDHHMMSSZ; RFC 5280: YY >= 50 means 19YY
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise CertificateParseError("validity is not a time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def not_after(der: bytes) -> datetime:
    """The certificate's notAfter (UTC). Raises CertificateParseError on malformed input."""
    tag, pos, _ = _read_tlv(der, 0)  # Certificate
    if tag != _SEQUENCE:
        raise CertificateParseError("not a certificate")
    tag, pos, _ = _read_tlv(der, pos)  # tbsCertificate
    if tag != _SEQUENCE:
        raise CertificateParseError("no tbsCertificate")
    cursor = pos
    tag, _, end = _read_tlv(der, cursor)
    if tag == _CONTEXT_0:  # explicit version (absent in v1 certificates)
        cursor = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, cursor = _read_tlv(der, cursor)
    tag, start, _ = _read_tlv(der, cursor)  # validity
    if tag != _SEQUENCE:
        raise CertificateParseError("no validity")
    _, _, after_start = _read_tlv(der, start)  # notBefore
    tag, value_start, value_end = _read_tlv(der, after_start)  # notAfter
    try:
        return _parse_time(tag, der[value_start:value_end])
    except (UnicodeDecodeError, ValueError) as exc:
        raise CertificateParseError(f"bad notAfter: {exc}") from None
