"""The DNS checks' test world: zones for knotd, DKIM keys in a DMS config folder, a test CA and
an HTTPS server on loopback serving MTA-STS policies.

One correct domain (``good.test``) and one domain per deliberate mistake. The MX host is
``mail.hosting.test`` (192.0.2.25, 2001:db8::25: documentation ranges); its reverse zone
``2.0.192.in-addr.arpa`` is served by the same knotd.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from agent.dns.tlsa import association
from tests.rig.proc import free_port, require_binary

MX = "mail.hosting.test"
V4, V6 = "192.0.2.25", "2001:db8::25"
SPF_OK = f'"v=spf1 ip4:{V4} -all"'
GOOD_POLICY = f"version: STSv1\nmode: enforce\nmx: {MX}\nmax_age: 86400\n"
# an ed25519 DKIM public key is the raw 32 bytes (RFC 8463); any 32 bytes serve the comparison
ED25519_P = base64.b64encode(bytes(range(32))).decode()
BAD_POLICY = "version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n"


def run(argv: list[str], cwd: Path | None = None) -> bytes:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True).stdout


def rsa_public_b64(bits: int, workdir: Path, name: str) -> str:
    """An RSA public key as DKIM's p= (base64 DER SubjectPublicKeyInfo), made by openssl."""
    openssl = require_binary("openssl", "openssl")
    key = workdir / f"{name}.key"
    run([openssl, "genrsa", "-out", str(key), str(bits)])
    der = run([openssl, "rsa", "-in", str(key), "-pubout", "-outform", "DER"])
    key.unlink()  # tests need the public half only
    return base64.b64encode(der).decode()


def split_txt(value: str, size: int = 200) -> str:
    """A TXT value as several quoted character-strings (as zones must for > 255 bytes)."""
    return " ".join(f'"{value[i : i + size]}"' for i in range(0, len(value), size))


def base_records(domain: str, extra_spf: str | None = None) -> str:
    spf = extra_spf or SPF_OK
    return (
        f"@ MX 10 {MX}.\n"
        f"@ TXT {spf}\n"
        f'_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@{domain}"\n'
        f'_mta-sts TXT "v=STSv1; id=20261125"\n'
        f'_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls@{domain}"\n'
    )


@dataclass
class Keys:
    good_opendkim_txt: str  # opendkim-genkey's own <sel>.txt for good.test
    split_p: str  # Rspamd-style key for dkimsplit.test
    other_p: str  # published for dkimbad.test, not the key DMS holds
    bad_disk_p: str
    small_p: str  # 1024 bits


def make_keys(config_dir: Path, workdir: Path) -> Keys:
    genkey = require_binary("opendkim-genkey", "opendkim-tools")
    keydir = config_dir / "opendkim" / "keys" / "good.test"
    keydir.mkdir(parents=True)
    run([genkey, "-b", "2048", "-d", "good.test", "-s", "mail", "-D", str(keydir)])
    (keydir / "mail.private").unlink()  # the checks never need it; prove they never read it
    keys = Keys(
        good_opendkim_txt=(keydir / "mail.txt").read_text(),
        split_p=rsa_public_b64(2048, workdir, "split"),
        other_p=rsa_public_b64(2048, workdir, "other"),
        bad_disk_p=rsa_public_b64(2048, workdir, "bad"),
        small_p=rsa_public_b64(1024, workdir, "small"),
    )
    rspamd = config_dir / "rspamd" / "dkim"
    rspamd.mkdir(parents=True)
    (rspamd / "ed25519-mail-dkimed.test.public.dns.txt").write_text(
        f"v=DKIM1; k=ed25519; p={ED25519_P}\n"
    )
    for name, p in [
        ("rsa-2048-dkim-dkimsplit.test", keys.split_p),
        ("rsa-2048-mail-dkimbad.test", keys.bad_disk_p),
        ("rsa-1024-mail-dkim1024.test", keys.small_p),
    ]:
        (rspamd / f"{name}.public.dns.txt").write_text(f"v=DKIM1; k=rsa; p={p}\n")
        (rspamd / f"{name}.private.txt").write_text("not a key: the checks must not read this\n")
    # the zone-file flavour that Rspamd also writes: public.txt (must give the same value)
    (rspamd / "rsa-2048-dkim-dkimsplit.test.public.txt").write_text(
        f'dkim._domainkey IN TXT ( "v=DKIM1; k=rsa; "\n\t"p={keys.split_p}" ) ;\n'
    )
    return keys


def zones(keys: Keys, smtp_cert_der: bytes) -> dict[str, str | None]:
    good_dkim = keys.good_opendkim_txt  # opendkim-genkey's record, as an operator pastes it
    spki = association(smtp_cert_der, 1, 1).hex()
    z: dict[str, str | None] = {
        "broken.test": None,  # configured, never loaded: knotd answers SERVFAIL
        "hosting.test": (
            f"mail A {V4}\nmail AAAA {V6}\nwrong-a A 192.0.2.99\n"
            "other A 192.0.2.99\n"
            'good.test._report._dmarc.reports TXT "v=DMARC1"\n'
            # DANE: MX hosts on loopback, where the test's STARTTLS server listens
            f"dane-ok A 127.0.0.1\n_25._tcp.dane-ok TLSA 3 1 1 {spki}\n"
            f"dane-bad A 127.0.0.1\n_25._tcp.dane-bad TLSA 3 1 1 {'ab' * 32}\n"
        ),
        "2.0.192.in-addr.arpa": f"25 PTR {MX}.\n26 PTR other.hosting.test.\n",
        "elsewhere.test": "mx A 198.51.100.7\n",
        "good.test": (
            base_records("good.test").replace(
                "rua=mailto:dmarc@good.test", "rua=mailto:dmarc@reports.hosting.test"
            )
            + "mta-sts A 127.0.0.1\n"  # where the test's policy server listens
            + good_dkim
            + "\n"
        ),
        "nomx.test": base_records("nomx.test").replace(f"@ MX 10 {MX}.\n", ""),
        "mxelse.test": base_records("mxelse.test").replace(MX, "mx.elsewhere.test"),
        "nullmx.test": base_records("nullmx.test").replace(f"MX 10 {MX}.", "MX 0 ."),
        "sendonly.test": '@ MX 0 .\n@ TXT "v=spf1 ip4:192.0.2.25 -all"\n'
        '_dmarc TXT "v=DMARC1; p=reject"\n',
        "twospf.test": base_records("twospf.test") + '@ TXT "v=spf1 mx -all"\n',
        "spf11.test": base_records(
            "spf11.test",  # over 255 bytes: several character-strings, as zones must
            split_txt(
                "v=spf1 ip4:192.0.2.25 "
                + " ".join(f"include:i{i}.spf11.test" for i in range(11))
                + " -all"
            ),
        )
        + "".join(f'i{i} TXT "v=spf1 ip4:198.51.100.{i} -all"\n' for i in range(11)),
        "spfvoid.test": base_records(
            "spfvoid.test",
            '"v=spf1 ip4:192.0.2.25 a:v1.spfvoid.test a:v2.spfvoid.test a:v3.spfvoid.test -all"',
        ),
        "spfloop.test": base_records(
            "spfloop.test", '"v=spf1 ip4:192.0.2.25 include:loop.spfloop.test -all"'
        )
        + 'loop TXT "v=spf1 include:spfloop.test -all"\n',
        "spfmiss.test": base_records("spfmiss.test", '"v=spf1 ip4:198.51.100.1 -all"'),
        "dkimsplit.test": base_records("dkimsplit.test")
        + f"dkim._domainkey TXT {split_txt('v=DKIM1; k=rsa; p=' + keys.split_p, 97)}\n",
        "dkimbad.test": base_records("dkimbad.test")
        + f"mail._domainkey TXT {split_txt('v=DKIM1; k=rsa; p=' + keys.other_p)}\n",
        "dkim1024.test": base_records("dkim1024.test")
        + f"mail._domainkey TXT {split_txt('v=DKIM1; k=rsa; p=' + keys.small_p)}\n",
        "dkimed.test": base_records("dkimed.test")
        + f'mail._domainkey TXT "v=DKIM1; k=ed25519; p={ED25519_P}"\n',
        "dkimrevoked.test": base_records("dkimrevoked.test")
        + 'mail._domainkey TXT "v=DKIM1; p="\n',
        "dmarcnone.test": base_records("dmarcnone.test").replace("p=reject", "p=none"),
        "nodmarc.test": "\n".join(
            line for line in base_records("nodmarc.test").splitlines() if "DMARC" not in line
        ),
        "twodmarc.test": base_records("twodmarc.test") + '_dmarc TXT "v=DMARC1; p=none"\n',
        "stsbad.test": base_records("stsbad.test"),
        "tlsrptbad.test": base_records("tlsrptbad.test").replace(
            "rua=mailto:tls@tlsrptbad.test", "rua=ftp://reports.tlsrptbad.test"
        ),
    }
    return z


# ---------------------------------------------------------------- test CA (openssl)


@dataclass
class TestCA:
    ca_pem: Path
    cert: Path  # one certificate naming every host: the STARTTLS server's, the policy default
    key: Path
    # each policy host's own certificate and key, served by SNI as real hosts serve theirs
    hosts: dict[str, tuple[Path, Path]] = field(default_factory=dict)


EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_ca(workdir: Path, names: list[str]) -> TestCA:
    """A throwaway CA, one server certificate for all ``names`` and one more per name, made
    with the openssl CLI."""
    openssl = require_binary("openssl", "openssl")
    run(
        [
            *[openssl, "req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.pem"],
            *["-days", "2", "-subj", "/CN=dms-agent dns test CA"],
            *["-addext", "basicConstraints=critical,CA:TRUE"],
            *["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ],
        cwd=workdir,
    )
    run(
        [
            openssl,
            "req",
            *EC_KEY,
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            f"/CN={names[0]}",
        ],
        cwd=workdir,
    )
    san = ",".join(f"DNS:{n}" for n in names)
    (workdir / "ext.cnf").write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    run(
        [
            *[openssl, "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key"],
            *["-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf"],
        ],
        cwd=workdir,
    )
    hostdir = workdir / "hosts"
    hostdir.mkdir()
    # a few openssl processes at a time: the bench's 200 hosts in well under a second
    with ThreadPoolExecutor(4) as pool:
        issued = list(pool.map(lambda name: host_cert(openssl, workdir, hostdir, name), names))
    return TestCA(workdir / "ca.pem", workdir / "srv.pem", workdir / "srv.key", dict(issued))


def host_cert(
    openssl: str, workdir: Path, hostdir: Path, name: str
) -> tuple[str, tuple[Path, Path]]:
    """A certificate naming ``name`` alone, signed by the CA in ``workdir``."""
    cert, key = hostdir / f"{name}.pem", hostdir / f"{name}.key"
    run(
        [
            *[openssl, "req", "-x509", *EC_KEY, "-keyout", str(key), "-out", str(cert)],
            *["-days", "2", "-subj", f"/CN={name}", "-CA", "ca.pem", "-CAkey", "ca.key"],
            *["-addext", f"subjectAltName=DNS:{name}", "-addext", "basicConstraints=CA:FALSE"],
            *["-addext", "extendedKeyUsage=serverAuth"],
        ],
        cwd=workdir,
    )
    return name, (cert, key)


# ---------------------------------------------------------------- MTA-STS HTTPS server


class PolicyServer:
    """aiohttp over TLS on 127.0.0.1 in its own thread (and loop), serving a policy per host.

    A host in ``ca.hosts`` gets its own certificate, chosen by the name the client sends
    (SNI), as each real policy host has its own; any other name gets ``ca.cert``."""

    def __init__(self, ca: TestCA, policies: dict[str, str]) -> None:
        self.port = free_port()
        self._policies = policies
        self._ctx = server_context(ca.cert, ca.key)
        self._by_name = {name: server_context(*pair) for name, pair in ca.hosts.items()}
        self._ctx.sni_callback = self._pick_certificate
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def _pick_certificate(
        self, conn: ssl.SSLObject, name: str | None, _default: ssl.SSLContext
    ) -> None:
        own = self._by_name.get((name or "").lower())
        if own is not None:
            conn.context = own

    async def _policy(self, request: web.Request) -> web.Response:
        host = request.host.rsplit(":", 1)[0].lower()
        domain = host.removeprefix("mta-sts.")
        text = self._policies.get(domain)
        if text is None:
            raise web.HTTPNotFound()
        return web.Response(text=text, content_type="text/plain")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/mta-sts.txt", self._policy)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ctx).start()

    def __enter__(self) -> PolicyServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context serving ``cert`` (no client certificates asked for)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


async def starttls_server(ca: TestCA) -> asyncio.Server:
    """A minimal SMTP responder on 127.0.0.1: banner, EHLO offering STARTTLS, then TLS.

    A stand-in: the TLSA check only needs the certificate served after STARTTLS."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(ca.cert, ca.key)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 dane.test ESMTP\r\n")
            while line := await reader.readline():
                verb = line.strip().upper()
                if verb.startswith(b"EHLO"):
                    writer.write(b"250-dane.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                elif verb == b"STARTTLS":
                    writer.write(b"220 go ahead\r\n")
                    await writer.drain()
                    await writer.start_tls(ctx)
                else:
                    writer.write(b"221 bye\r\n")
                    break
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(session, "127.0.0.1", 0)


def cert_der(ca: TestCA) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ca.cert.read_text())


def policy_server(ca: TestCA) -> Iterator[PolicyServer]:
    with PolicyServer(ca, {"good.test": GOOD_POLICY, "stsbad.test": BAD_POLICY}) as server:
        yield server
