"""MTA-STS (RFC 8461): fetch ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` and parse it.

The policy host's address is looked up through our own resolver (the configured nameservers,
like every other check), not the system's. For tests, ``dns.mtaSts.connectTo`` pins every policy
host to a loopback address and ``port`` replaces 443; TLS still verifies the real host name
against ``caBundle``. Redirects are not followed (RFC 8461 3.3).

The policy parser is hand-written: the format is a handful of ``key: value`` lines, and no
maintained library on PyPI parses it without also pulling its own resolver and daemon.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from agent.dns.resolver import Lookup, LookupFailed

MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3 lets a client stop there


class PolicyError(Exception):
    """The policy could not be fetched or is invalid; ``temporary`` for network trouble."""

    def __init__(self, message: str, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    mode: str
    max_age: int
    mx: tuple[str, ...] = field(default_factory=tuple)

    def covers(self, host: str) -> bool:
        """Whether an ``mx:`` pattern matches ``host`` (a ``*.`` wildcard covers one label)."""
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            pattern = pattern.lower().rstrip(".")
            if pattern.startswith("*."):
                head, _, rest = host.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_policy(text: str) -> Policy:
    values: dict[str, str] = {}
    mx: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"line {number} is not 'key: value': {line[:60]!r}")
        key, value = key.strip(), value.strip()
        if key == "mx":
            mx.append(value)
        else:
            values.setdefault(key, value)
    if values.get("version") != "STSv1":
        raise PolicyError(f"version must be STSv1, found {values.get('version')!r}")
    mode = values.get("mode", "")
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"mode must be enforce, testing or none, found {mode!r}")
    max_age_text = values.get("max_age", "")
    if not max_age_text.isdigit():
        raise PolicyError(f"max_age must be a number of seconds, found {max_age_text!r}")
    if mode != "none" and not mx:
        raise PolicyError("no mx: line")
    return Policy("STSv1", mode, int(max_age_text), tuple(mx))


class LookupResolver(AbstractResolver):
    """aiohttp name resolution through our Lookup, or pinned to ``connect_to`` (tests)."""

    def __init__(self, lookup: Lookup, connect_to: str | None = None) -> None:
        self._lookup = lookup
        self._connect_to = connect_to

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._connect_to is not None:
            addresses = [self._connect_to]
        else:
            try:
                v4, v6 = await self._lookup.addresses(host)
            except LookupFailed as exc:
                raise OSError(f"cannot resolve {host}: {exc.kind}") from None
            addresses = [*v4, *v6]
        if not addresses:
            raise OSError(f"{host} has no A/AAAA record")
        return [_result(host, address, port) for address in addresses]

    async def close(self) -> None:
        return None


def _result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(
        hostname=host,
        host=address,
        port=port,
        family=family,
        proto=0,
        flags=socket.AI_NUMERICHOST,
    )


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Blocking (reads the CA file): build it once per run, in a thread."""
    return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)


def policy_url(domain: str, port: int) -> str:
    netloc = f"mta-sts.{domain}" + ("" if port == 443 else f":{port}")
    return f"https://{netloc}/.well-known/mta-sts.txt"


async def fetch_policy(
    session: aiohttp.ClientSession, domain: str, port: int, timeout: float
) -> Policy:
    url = policy_url(domain, port)
    try:
        async with session.get(
            url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            if response.status != 200:
                raise PolicyError(f"{url} answered HTTP {response.status}")
            ctype = response.headers.get("Content-Type", "")
            if not ctype.lower().startswith("text/plain"):
                raise PolicyError(f"{url} is served as {ctype or 'no type'}, not text/plain")
            body = await response.content.read(MAX_POLICY_BYTES + 1)
    except aiohttp.ClientConnectorCertificateError as exc:
        reason = getattr(exc.certificate_error, "verify_message", "") or exc.certificate_error
        raise PolicyError(f"certificate of mta-sts.{domain} rejected: {reason}") from None
    except aiohttp.ClientSSLError as exc:
        raise PolicyError(f"TLS with mta-sts.{domain} failed: {exc}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise PolicyError(f"cannot fetch {url}: {exc or type(exc).__name__}", True) from None
    if len(body) > MAX_POLICY_BYTES:
        raise PolicyError(f"{url} is larger than 64 KiB")
    return parse_policy(body.decode("utf-8", "replace"))
