"""The size of a DKIM RSA public key, read from its DER bytes without a crypto library.

The agent reads every key's size on every DKIM pass; ``cryptography`` (or dkimpy, which brings
dnspython) would stay in its memory all day for that one integer. A DKIM ``p=`` holds a
SubjectPublicKeyInfo (RFC 5280 4.1, what opendkim-genkey and Rspamd write) or, from some
generators, a bare PKCS#1 RSAPublicKey (RFC 8017 A.1.1): both are a few nested DER values.
This reader is strict: definite minimal lengths, the rsaEncryption algorithm with NULL
parameters, a positive modulus, an odd exponent of at least 3, no trailing bytes. Anything
else is a ValueError (tests/test_dkim_worker.py holds it to cryptography's reading).
"""

from __future__ import annotations

SEQUENCE, INTEGER, BIT_STRING, NULL, OID = 0x30, 0x02, 0x03, 0x05, 0x06
RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1


def rsa_key_bits(der: bytes) -> int:
    """Bits of the RSA modulus in ``der`` (SubjectPublicKeyInfo or RSAPublicKey)."""
    body = _only(der, SEQUENCE)
    first, _ = _value(body, 0)
    if first[0] == SEQUENCE:  # SubjectPublicKeyInfo: algorithm, then the key as a BIT STRING
        algorithm, rest = _value(body, 0)
        key, rest = _value(body, rest)
        if rest != len(body) or key[0] != BIT_STRING:
            raise ValueError("not a SubjectPublicKeyInfo")
        oid, after = _value(algorithm[1], 0)
        params, after = _value(algorithm[1], after)
        if (oid[0], oid[1]) != (OID, RSA_ENCRYPTION) or params != (NULL, b""):
            raise ValueError("not an RSA key (algorithm is not rsaEncryption)")
        if after != len(algorithm[1]) or not key[1] or key[1][0] != 0:
            raise ValueError("malformed SubjectPublicKeyInfo")
        body = _only(key[1][1:], SEQUENCE)
    modulus, rest = _value(body, 0)
    exponent, rest = _value(body, rest)
    if rest != len(body) or modulus[0] != INTEGER or exponent[0] != INTEGER:
        raise ValueError("not an RSAPublicKey (two INTEGERs)")
    n, e = _positive(modulus[1]), _positive(exponent[1])
    if e < 3 or e % 2 == 0 or e >= n:
        raise ValueError("not a valid RSA public key (modulus or exponent)")
    return n.bit_length()


def _only(data: bytes, tag: int) -> bytes:
    """The contents of the single ``tag`` value that is all of ``data``."""
    (found, contents), end = _value(data, 0)
    if found != tag or end != len(data):
        raise ValueError("malformed DER")
    return contents


def _value(data: bytes, at: int) -> tuple[tuple[int, bytes], int]:
    """The (tag, contents) of the DER value at ``at``, and where the next one starts."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length, at = data[at], data[at + 1], at + 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes hold the length
        count = length & 0x7F
        raw = data[at : at + count]
        if not 0 < count <= 4 or len(raw) != count or raw[0] == 0:
            raise ValueError("bad DER length")
        length, at = int.from_bytes(raw, "big"), at + count
        if length < 0x80:
            raise ValueError("bad DER length (not minimal)")
    if at + length > len(data):
        raise ValueError("truncated DER")
    return (tag, data[at : at + length]), at + length


def _positive(contents: bytes) -> int:
    if not contents or contents[0] & 0x80:
        raise ValueError("negative or empty INTEGER")
    if len(contents) > 1 and contents[0] == 0 and not contents[1] & 0x80:
        raise ValueError("INTEGER not minimally encoded")
    return int.from_bytes(contents, "big")
