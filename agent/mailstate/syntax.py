"""Syntax rules for addresses, domains, quotas, selectors and password values.

Stricter than DMS (which takes anything holding an ``@``). The local part is a conservative
subset of RFC 5322's dot-atom: characters that DMS's sed-based scripts and its ``|``/``:``/``,``
separated files handle safely, and that make a sane mail folder name. Domains are ASCII host
names with at least two labels (IDNs in their ``xn--`` form); the top label must hold a letter,
so an IP address is refused.

Each check returns None when the value is fine, else a message for a located error. Every
caller lower-cases first: DMS stores addresses lower-case too.
"""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = rf"(?=.{{1,253}}$)(?:{_LABEL}\.)+(?=[a-z0-9-]*[a-z])(?:{_LABEL})"
_ATOM = r"[a-z0-9_+='-]+"
# DMS's `setup` passes the address as a bare argument: one starting with '-' reads as options
# (`email del -y@x` parses -y), so such an account could be created but never removed.
_NO_DASH = "(?!-)"

ADDRESS_RE = re.compile(rf"(?=[^@]{{1,64}}@){_NO_DASH}{_ATOM}(?:\.{_ATOM})*@{_DOMAIN}")
_DOMAIN_RE = re.compile(_DOMAIN)
_LOCAL_RE = re.compile(rf"(?=.{{1,64}}$){_NO_DASH}{_ATOM}(?:\.{_ATOM})*")
_LABEL_ONLY_RE = re.compile(rf"{_LABEL}$")
QUOTA_RE = re.compile(r"([0-9]+(B|k|M|G|T)|0)")
_UNIT = {"B": 1, "k": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MAX_QUOTA_BYTES = (1 << 63) - 1  # Dovecot keeps a quota limit as a signed 64-bit byte count
SELECTOR_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
HASH_RE = re.compile(r"\{([A-Z0-9][A-Z0-9._-]*)\}([^\s|:]+)")

# Dovecot's password schemes (doveadm pw -l); another scheme is only a warning.
KNOWN_SCHEMES = frozenset(
    """ARGON2I ARGON2ID BLF-CRYPT CLEAR CLEARTEXT CRAM-MD5 CRYPT DES-CRYPT DIGEST-MD5 LANMAN
    LDAP-MD5 MD5 MD5-CRYPT NTLM OTP PBKDF2 PLAIN PLAIN-MD4 PLAIN-MD5 PLAIN-TRUNC RPA
    SCRAM-SHA-1 SCRAM-SHA-256 SHA SHA1 SHA256 SHA256-CRYPT SHA512 SHA512-CRYPT SKEY SMD5
    SSHA SSHA256 SSHA512""".split()
)
PLAINTEXT_SCHEMES = frozenset({"PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC"})


def check_domain(domain: str) -> str | None:
    if _DOMAIN_RE.fullmatch(domain):
        return None
    if not domain:
        return "empty domain"
    if not domain.isascii():
        return f"domain {domain!r}: write an internationalised domain in its xn-- form"
    if len(domain) > 253:
        return f"domain {domain!r}: longer than 253 characters"
    labels = domain.split(".")
    if len(labels) < 2:
        return f"domain {domain!r}: needs at least two labels (like example.com)"
    for label in labels:
        if not _LABEL_ONLY_RE.match(label):
            return (
                f"domain {domain!r}: label {label!r} must be 1-63 letters, digits or inner hyphens"
            )
    return f"domain {domain!r}: the top-level label needs a letter (no IP addresses)"


def check_local(local: str) -> str | None:
    if _LOCAL_RE.fullmatch(local):
        return None
    if not local:
        return "empty local part (before the @)"
    if len(local) > 64:
        return f"local part {local!r}: longer than 64 characters"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return f"local part {local!r}: a dot may not start, end or repeat"
    if local.startswith("-"):
        return (
            f"local part {local!r}: may not start with '-' (DMS's setup would read it as an "
            "option, so the account or alias could never be deleted)"
        )
    return f"local part {local!r}: only letters, digits and . _ + = ' - are allowed"


def check_address(address: str) -> str | None:
    """``address`` must already be lower-case."""
    if ADDRESS_RE.fullmatch(address):
        return None
    if address.count("@") != 1:
        return f"{address!r} is not an address: it needs exactly one @"
    local, _, domain = address.partition("@")
    return check_local(local) or check_domain(domain) or f"{address!r} is not a valid address"


def check_alias_key(key: str) -> str | None:
    """An alias key as DMS allows it: ``user@domain``, ``@domain`` (catch-all) or ``user``."""
    if key.startswith("@"):
        return check_domain(key[1:])
    if "@" not in key:
        return check_local(key)
    return check_address(key)


def check_quota(value: object) -> tuple[str | None, str | None]:
    """(normalised quota, error): YAML may give the ``0`` as an integer."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, "quota must be a string like 2G or 500M, or 0"
    text = str(value)
    if not QUOTA_RE.fullmatch(text):
        return None, f"quota {text!r} must match ^([0-9]+(B|k|M|G|T)|0)$ (e.g. 500M, 2G, 0)"
    if text != "0" and (len(text) > 20 or int(text[:-1]) * _UNIT[text[-1]] > MAX_QUOTA_BYTES):
        return None, (
            f"quota {text[:24]!r}{'…' if len(text) > 24 else ''} is larger than Dovecot can "
            f"hold (at most {MAX_QUOTA_BYTES >> 40}T)"
        )
    return text, None


def check_password(value: str) -> str | None:
    """Never echo the value: the message goes to logs."""
    if not value:
        return "the password is empty"
    if "\n" in value or "\r" in value:
        return "the password holds a line break (setup reads it line by line)"
    if "\x00" in value:
        return "the password holds a NUL character"
    if value.strip() != value:
        return "the password starts or ends with whitespace (DMS would silently strip it)"
    return None


def check_hash(value: str) -> tuple[str | None, str | None]:
    """(scheme, error) for a ``{SCHEME}hash`` value; never echo the value."""
    m = HASH_RE.fullmatch(value)
    if m is None:
        if not value.startswith("{") or "}" not in value:
            return None, "the hash needs a {SCHEME} prefix, e.g. {SHA512-CRYPT}$6$..."
        return None, (
            "the hash must be {SCHEME}value: an upper-case scheme, then no whitespace, "
            "| or : (they would break DMS's files)"
        )
    return m.group(1), None
