"""DKIM keys as DMS lays them out on disk — public halves only.

OpenDKIM: ``opendkim/keys/<d>/<sel>.txt`` (a zone-file TXT stub) beside ``<sel>.private``, plus
``KeyTable`` and ``SigningTable``. Rspamd: ``rspamd/dkim/<type>[-<bits>]-<sel>-<d>.public.dns.txt``
(the record value) beside ``.private.txt``. This module never opens a private key.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

Backend = Literal["opendkim", "rspamd"]

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_RSPAMD_NAME = re.compile(r"^(?P<type>rsa-\d+|ed25519)-(?P<rest>.+)\.public\.dns\.txt$")


@dataclass(frozen=True, slots=True)
class PublicKey:
    domain: str
    selector: str
    key_type: Literal["rsa", "ed25519"]
    bits: int
    record: str  # the TXT value to publish: "v=DKIM1; k=rsa; p=..."
    source: Path

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def p(self) -> str:
        return record_tags(self.record).get("p", "")

    def zone_line(self) -> str:
        chunks = [self.record[i : i + 250] for i in range(0, len(self.record), 250)]
        return f"{self.name}. IN TXT ( {' '.join(f'{chr(34)}{c}{chr(34)}' for c in chunks)} )"


def record_tags(record: str) -> dict[str, str]:
    """Parse ``tag=value; tag=value`` (RFC 6376 3.2); whitespace inside values is dropped."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        if "=" in part:
            key, _, value = part.partition("=")
            tags[key.strip()] = "".join(value.split())
    return tags


def zone_txt_value(text: str) -> str:
    """The TXT value of a zone-file stub as opendkim-genkey writes it (quoted chunks joined)."""
    return "".join(m.group(1) for m in _QUOTED.finditer(text))


def key_bits(key_type: str, p: str) -> int:
    """Size of the public key in ``p=``; raises ValueError if it does not parse."""
    try:
        der = base64.b64decode(p, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"p= is not base64: {exc}") from None
    if key_type == "ed25519":
        if len(der) != 32:  # RFC 8463: the raw 32-byte key, not SubjectPublicKeyInfo
            raise ValueError(f"ed25519 p= must be 32 bytes, got {len(der)}")
        return 256
    key = load_der_public_key(der)
    if isinstance(key, rsa.RSAPublicKey):
        return key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 256
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def read_public_keys(
    config_dir: Path, backend: Backend, known_domains: frozenset[str] = frozenset()
) -> dict[tuple[str, str], PublicKey]:
    """Every (domain, selector) key with a readable public half; unreadable ones are skipped."""
    if backend == "opendkim":
        found = _opendkim_keys(config_dir)
    else:
        found = _rspamd_keys(config_dir, known_domains)
    return {(k.domain, k.selector): k for k in found}


def _opendkim_keys(config_dir: Path) -> list[PublicKey]:
    keys = []
    for txt in sorted((config_dir / "opendkim" / "keys").glob("*/*.txt")):
        record = zone_txt_value(txt.read_text(errors="replace"))
        key = _public_key(txt.parent.name, txt.stem, record, txt)
        if key is not None:
            keys.append(key)
    return keys


def split_selector_domain(rest: str, known_domains: frozenset[str]) -> tuple[str, str] | None:
    """``<sel>-<domain>`` is ambiguous when either has a hyphen (DMS's own naming): prefer a
    split whose domain is declared, else assume the selector has no hyphen."""
    splits = [(rest[:i], rest[i + 1 :]) for i, c in enumerate(rest) if c == "-"]
    splits = [(s, d) for s, d in splits if s and "." in d]
    for sel, domain in splits:
        if domain.lower() in known_domains:
            return sel, domain
    return splits[0] if splits else None


def _rspamd_keys(config_dir: Path, known_domains: frozenset[str]) -> list[PublicKey]:
    keys = []
    for path in sorted((config_dir / "rspamd" / "dkim").glob("*.public.dns.txt")):
        m = _RSPAMD_NAME.match(path.name)
        split = split_selector_domain(m["rest"], known_domains) if m else None
        if split is None:
            continue
        record = path.read_text(errors="replace").strip().strip('"')
        if '"' in record:  # some versions write quoted chunks
            record = zone_txt_value(record)
        key = _public_key(split[1], split[0], record, path)
        if key is not None:
            keys.append(key)
    return keys


def _public_key(domain: str, selector: str, record: str, source: Path) -> PublicKey | None:
    tags = record_tags(record)
    key_type = tags.get("k", "rsa")
    if key_type not in ("rsa", "ed25519") or not tags.get("p"):
        return None
    try:
        bits = key_bits(key_type, tags["p"])
    except ValueError:
        return None
    kt: Literal["rsa", "ed25519"] = "ed25519" if key_type == "ed25519" else "rsa"
    return PublicKey(domain.lower(), selector, kt, bits, record, source)


def signing_selectors_opendkim(config_dir: Path) -> dict[str, str]:
    """domain -> selector OpenDKIM signs with: the FIRST SigningTable match wins."""
    table = config_dir / "opendkim" / "SigningTable"
    out: dict[str, str] = {}
    if not table.is_file():
        return out
    for line in table.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[0].startswith("*@"):
            continue
        domain = parts[0][2:].lower()
        selector = parts[1].split("._domainkey.")[0]
        out.setdefault(domain, selector)
    return out
