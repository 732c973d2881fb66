"""A throwaway test certificate authority (the real `openssl` binary) for TLS fixtures.

Self-contained: any test or fixture module may use it.

    def test_x(test_ca):
        cert, key = test_ca.issue(["localhost", "127.0.0.1"])            # valid for 30 days
        old, old_key = test_ca.issue(["localhost"], expired=True)        # notAfter in the past
        ctx = ssl.create_default_context(cafile=test_ca.ca_cert_path)

Keys are EC P-256 (fast to make). Leaf certificates are signed with ``openssl ca`` because it is
the only OpenSSL 3.0 command that takes explicit start and end dates, which an expired
certificate needs. ``issue`` caches by its arguments, so fixtures can share certificates.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.rig.proc import require_binary

_CA_CONFIG = """\
[ca]
default_ca = test_ca

[test_ca]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir/issued
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none

[policy_any]
commonName = supplied
"""


def _asn1_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def _san(hostnames: Sequence[str]) -> str:
    entries = []
    for name in hostnames:
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return ",".join(entries)


class TestCA:
    """A CA living in ``workdir``: ``ca_cert_path`` (PEM) and ``issue()``."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, workdir: Path, openssl: str = "openssl") -> None:
        self.workdir = workdir
        self.openssl = openssl
        (workdir / "issued").mkdir(parents=True, exist_ok=True)
        (workdir / "index.txt").write_text("")
        (workdir / "serial").write_text("1000\n")
        self.config_path = workdir / "ca.cnf"
        self.config_path.write_text(_CA_CONFIG.format(dir=workdir))
        self.ca_key_path = workdir / "ca.key"
        self.ca_cert_path = workdir / "ca.crt"
        self._cache: dict[tuple[tuple[str, ...], int, bool], tuple[Path, Path]] = {}
        self._count = 0
        self._run(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.ca_key_path, "-out", self.ca_cert_path, "-days", "3650",
            "-subj", "/CN=dms-agent throwaway test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def _run(self, *args: str | Path) -> None:
        argv = [self.openssl, *map(str, args)]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.workdir)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr}")

    def issue(
        self, hostnames: Sequence[str], days: int = 30, expired: bool = False
    ) -> tuple[Path, Path]:
        """Issue a server certificate for ``hostnames`` (DNS names or IPs): (cert, key) paths.

        ``expired=True`` gives a certificate whose validity ended ``days`` days ago (at least
        one), otherwise it is valid from an hour ago for ``days`` days.
        """
        key = (tuple(hostnames), days, expired)
        if key in self._cache:
            return self._cache[key]
        if not hostnames:
            raise ValueError("a server certificate needs at least one hostname")
        self._count += 1
        stem = self.workdir / f"leaf{self._count}"
        now = datetime.now(UTC)
        if expired:
            start, end = now - timedelta(days=days + 30), now - timedelta(days=max(days, 1))
        else:
            start, end = now - timedelta(hours=1), now + timedelta(days=days)
        ext = stem.with_suffix(".ext")
        ext.write_text(
            "[leaf]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage = serverAuth\nsubjectAltName = {_san(hostnames)}\n"
        )
        key_path, csr, cert_path = (stem.with_suffix(s) for s in (".key", ".csr", ".crt"))
        self._run(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key_path, "-out", csr, "-subj", f"/CN={hostnames[0]}",
        )  # fmt: skip
        self._run(
            "ca", "-batch", "-notext", "-config", self.config_path, "-in", csr, "-out", cert_path,
            "-startdate", _asn1_time(start), "-enddate", _asn1_time(end),
            "-extfile", ext, "-extensions", "leaf",
        )  # fmt: skip
        self._cache[key] = (cert_path, key_path)
        return cert_path, key_path


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCA]:
    openssl = require_binary("openssl", "openssl")
    yield TestCA(tmp_path_factory.mktemp("test-ca"), openssl)
