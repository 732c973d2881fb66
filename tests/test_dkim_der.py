"""A DKIM key's size without a crypto library (agent/dkim/der.py): the sizes ``cryptography``
reads, and every corruption ``cryptography`` refuses is refused."""

from __future__ import annotations

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.dkim.der import rsa_key_bits

KEYS = {
    (bits, e): rsa.generate_private_key(public_exponent=e, key_size=bits).public_key()
    for bits, e in ((1024, 65537), (2048, 65537), (1024, 3))
}
FORMATS = (PublicFormat.SubjectPublicKeyInfo, PublicFormat.PKCS1)


def cryptography_bits(der: bytes) -> int | None:
    try:
        key = load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


def our_bits(der: bytes) -> int | None:
    try:
        return rsa_key_bits(der)
    except ValueError:
        return None


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
@pytest.mark.parametrize("fmt", FORMATS)
def test_sizes_equal_cryptographys(bits: int, fmt: PublicFormat) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    assert rsa_key_bits(key.public_bytes(Encoding.DER, fmt)) == bits


def test_other_algorithms_and_garbage_are_refused() -> None:
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    for der in (ed.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), b"", b"\x30"):
        with pytest.raises(ValueError):
            rsa_key_bits(der)


@settings(max_examples=400, deadline=None)
@given(
    key=st.sampled_from(sorted(KEYS)),
    fmt=st.sampled_from(FORMATS),
    cut=st.integers(0, 600),
    flips=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=3),
    tail=st.binary(max_size=3),
)
def test_corrupted_keys_read_as_cryptography_reads_them(
    key: tuple[int, int],
    fmt: PublicFormat,
    cut: int,
    flips: list[tuple[int, int]],
    tail: bytes,
) -> None:
    der = bytearray(KEYS[key].public_bytes(Encoding.DER, fmt))
    for at, value in flips:
        der[at % len(der)] = value
    mutated = bytes(der[: max(1, len(der) - cut % 40)] if cut >= 300 else der) + tail
    assert our_bits(mutated) == cryptography_bits(mutated)
