"""The DER notAfter reader against certificates made by the real openssl."""

from __future__ import annotations

import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.checks.tlscert import CertificateParseError, not_after
from tests.rig.ca import TestCA
from tests.rig.proc import require_binary


def openssl_not_after(openssl: str, cert: Path) -> datetime:
    out = subprocess.run(
        [openssl, "x509", "-in", str(cert), "-noout", "-enddate"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # notAfter=Apr 12 10:16:40 2054 GMT
    return datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z").replace(
        tzinfo=UTC
    )


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_v3_certificates_utctime_and_generalizedtime(test_ca: TestCA) -> None:
    openssl = require_binary("openssl", "openssl")
    for days in (30, 10000):  # 10000 days ends after 2049: GeneralizedTime
        cert, _ = test_ca.issue(["localhost"], days=days)
        assert not_after(der(cert)) == openssl_not_after(openssl, cert)
    expired, _ = test_ca.issue(["localhost"], expired=True)
    assert not_after(der(expired)) < datetime.now(UTC)


def test_v1_certificate_without_version_field(tmp_path: Path) -> None:
    openssl = require_binary("openssl", "openssl")
    key, csr, cert = tmp_path / "k.pem", tmp_path / "r.csr", tmp_path / "c.pem"
    subprocess.run(
        [openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=v1"],
        capture_output=True, check=True,
    )  # fmt: skip
    subprocess.run(
        [openssl, "x509", "-req", "-in", csr, "-signkey", key, "-days", "3", "-out", cert],
        capture_output=True, check=True,
    )  # fmt: skip
    assert not_after(der(cert)) == openssl_not_after(openssl, cert)


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x04\x02ab", b"\x30\x84\xff\xff\xff\xff"])
def test_malformed_input_raises_a_parse_error(data: bytes) -> None:
    with pytest.raises(CertificateParseError):
        not_after(data)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_date_or_a_parse_error(data: bytes) -> None:
    try:
        not_after(data)
    except CertificateParseError:
        pass


def test_every_truncation_of_a_real_certificate_gives_a_parse_error(test_ca: TestCA) -> None:
    cert, _ = test_ca.issue(["localhost"])
    data = der(cert)
    for cut in range(len(data)):
        with pytest.raises(CertificateParseError):
            not_after(data[:cut])
