"""Bring your own DKIM keys: private keys from a mounted Secret, written into DMS's layout.

Files in the folder are named ``<selector>._domainkey.<domain>.pem``. Each is validated (the
name is a DNS selector plus a domain, so it cannot point outside ``keys/``; the domain declares
``dkim:`` in the mail state unless undeclared domains are allowed; PEM parses, RSA >= 1024 bits
or Ed25519, matches the declared key type) before anything is written; a bad file is a located
error and writes nothing. Keys already on disk are never overwritten.
"""

from __future__ import annotations

import base64
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from agent.dkim.keys import Backend
from agent.errors import LocatedError
from agent.fsio import write_file
from agent.mailstate.model import DkimSpec
from agent.mailstate.syntax import SELECTOR_RE, check_domain

SUFFIX = ".pem"
SEPARATOR = "._domainkey."


@dataclass(frozen=True, slots=True)
class ByoKey:
    domain: str
    selector: str
    key_type: str
    bits: int
    private_pem: bytes  # never logged; only written to the key file
    record: str

    def __repr__(self) -> str:
        return f"ByoKey({self.selector}._domainkey.{self.domain}, {self.key_type}/{self.bits})"


def load_byo_keys(
    folder: Path, specs: dict[str, DkimSpec], allow_undeclared: bool = False
) -> tuple[list[ByoKey], list[LocatedError]]:
    keys: list[ByoKey] = []
    errors: list[LocatedError] = []
    if not folder.is_dir():
        return keys, errors
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        key, error = _load_one(path, specs, allow_undeclared)
        if error:
            errors.append(error)
        elif key:
            keys.append(key)
    return keys, errors


def generate_key(domain: str, spec: DkimSpec) -> ByoKey:
    """A new key made here, for the no-DMS ``file`` executor (DMS's `setup` is not there).
    Blocking (RSA generation): call it in a thread."""
    if spec.key_type == "ed25519":
        private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = (
            ed25519.Ed25519PrivateKey.generate()
        )
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=spec.key_size)
    key, _ = _from_private(private, domain, spec.selector)
    assert key is not None
    return key


def _load_one(
    path: Path, specs: dict[str, DkimSpec], allow_undeclared: bool
) -> tuple[ByoKey | None, LocatedError | None]:
    def fail(field: str, message: str) -> tuple[None, LocatedError]:
        return None, LocatedError(str(path), None, field, message)

    name = path.name
    if not name.endswith(SUFFIX) or SEPARATOR not in name:
        return fail("name", f"expected <selector>{SEPARATOR}<domain>{SUFFIX}")
    selector, _, domain = name[: -len(SUFFIX)].partition(SEPARATOR)
    domain, selector = domain.lower(), selector.lower()
    if problem := check_domain(domain):
        return fail("name", problem)
    if not SELECTOR_RE.fullmatch(selector):
        return fail("name", f"selector {selector!r} must be DNS labels (a-z, 0-9, -)")
    if domain not in specs and not allow_undeclared:
        return fail(
            "name",
            f"{domain} does not declare dkim: in the mail state "
            "(dkim.byoAllowUndeclared: true imports it anyway)",
        )
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        return fail("key", f"not an unencrypted PEM private key ({exc})")
    byo, problem = _from_private(key, domain, selector)
    if byo is None:
        return fail("key", problem)
    spec = specs.get(domain)
    if spec is not None and spec.selector == selector and spec.key_type != byo.key_type:
        return fail(
            "key", f"the state declares {spec.key_type} for {domain}, this is {byo.key_type}"
        )
    return byo, None


def _from_private(key: object, domain: str, selector: str) -> tuple[ByoKey | None, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        key_type, bits = "rsa", key.key_size
        if bits < 1024:
            return None, f"RSA key of {bits} bits: DKIM verifiers refuse under 1024"
        der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        key_type, bits = "ed25519", 256
        der = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:
        return None, f"unsupported key type {type(key).__name__}: use RSA or Ed25519"
    # opendkim-genkey writes PKCS#1 ("RSA PRIVATE KEY"); Ed25519 only exists as PKCS#8
    fmt = PrivateFormat.TraditionalOpenSSL if key_type == "rsa" else PrivateFormat.PKCS8
    pem = key.private_bytes(Encoding.PEM, fmt, NoEncryption())
    record = f"v=DKIM1; k={key_type}; p={base64.b64encode(der).decode()}"
    return ByoKey(domain, selector, key_type, bits, pem, record), ""


def install_byo_key(config_dir: Path, backend: Backend, key: ByoKey) -> bool:
    """Write ``key`` in DMS's layout with DMS's modes; False if a key is already there."""
    if backend == "opendkim":
        folder = config_dir / "opendkim" / "keys" / key.domain
        private, public = folder / f"{key.selector}.private", folder / f"{key.selector}.txt"
        public_text = (
            f'{key.selector}._domainkey\tIN\tTXT\t( "{key.record}" )'
            f"  ; ----- DKIM key {key.selector} for {key.domain}\n"
        )
        owner = "opendkim"
    else:
        folder = config_dir / "rspamd" / "dkim"
        stem = f"{key.key_type}-{key.bits}" if key.key_type == "rsa" else key.key_type
        base = folder / f"{stem}-{key.selector}-{key.domain}"
        private = base.with_name(base.name + ".private.txt")
        public = base.with_name(base.name + ".public.dns.txt")
        public_text = key.record + "\n"
        owner = "_rspamd"
    if private.exists():
        return False
    write_file(private, key.private_pem, mode=0o600, make_parents=True)
    write_file(public, public_text, mode=0o644, make_parents=True)
    _chown_if_known(owner, private, public)
    return True


def _chown_if_known(user: str, *paths: Path) -> None:
    """DMS's owners exist inside the mailserver image; where they don't (tests, an agent
    image), the numeric owner stays and the mailserver's start-up fixes it."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)
