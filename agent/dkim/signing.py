"""Which selector signs each domain, written in the form each DKIM backend reads.

OpenDKIM: ``KeyTable`` names every live key; ``SigningTable``'s FIRST ``*@domain`` line picks the
key, so we write exactly one line per domain. Rspamd: ``override.d/dkim_signing.conf`` with one
``domain { <d> { path; selector; } }`` block per domain (DMS writes that file only when absent
and for one domain, so the agent owns it once it manages DKIM).
Files are replaced atomically (temp file, fsync, rename), as DMS's own ``sed -i`` does.
"""

from __future__ import annotations

import re
from pathlib import Path

from agent.dkim.keys import Backend, PublicKey
from agent.fsio import write_file


def write_signing(
    config_dir: Path,
    backend: Backend,
    signing: dict[str, str],
    live_keys: dict[tuple[str, str], PublicKey],
    container_config_dir: str,
) -> None:
    """Make ``signing`` (domain -> selector) effective; ``live_keys`` stay verifiable."""
    if backend == "opendkim":
        _write_opendkim(config_dir, signing, live_keys)
    else:
        _write_rspamd(config_dir, signing, live_keys, container_config_dir)


def _write_opendkim(
    config_dir: Path, signing: dict[str, str], live_keys: dict[tuple[str, str], PublicKey]
) -> None:
    folder = config_dir / "opendkim"
    key_lines = [
        f"{sel}._domainkey.{d} {d}:{sel}:/etc/opendkim/keys/{d}/{sel}.private"
        for d, sel in sorted(live_keys)
    ]
    sign_lines = [f"*@{d} {sel}._domainkey.{d}" for d, sel in sorted(signing.items())]
    write_file(folder / "KeyTable", "".join(f"{line}\n" for line in key_lines), make_parents=True)
    write_file(
        folder / "SigningTable", "".join(f"{line}\n" for line in sign_lines), make_parents=True
    )
    hosts = folder / "TrustedHosts"
    if not hosts.exists():
        write_file(hosts, "127.0.0.1\nlocalhost\n", make_parents=True)


def _write_rspamd(
    config_dir: Path,
    signing: dict[str, str],
    live_keys: dict[tuple[str, str], PublicKey],
    container_config_dir: str,
) -> None:
    blocks = []
    for domain, selector in sorted(signing.items()):
        key = live_keys.get((domain, selector))
        if key is None:
            continue
        private = key.source.name.replace(".public.dns.txt", ".private.txt")
        path = f"{container_config_dir}/rspamd/dkim/{private}"
        blocks.append(
            f'    {domain} {{\n        path = "{path}";\n        selector = "{selector}";\n    }}\n'
        )
    text = (
        "# Written by dms-agent: one block per domain, the selector that signs it.\n"
        "enabled = true;\nsign_authenticated = true;\nsign_local = true;\n"
        'use_domain = "header";\nuse_redis = false;\nuse_esld = true;\n'
        "check_pubkey = true;\n"
        "domain {\n" + "".join(blocks) + "}\n"
    )
    write_file(config_dir / "rspamd" / "override.d" / "dkim_signing.conf", text, make_parents=True)


_RSPAMD_BLOCK = re.compile(r"^\s*([A-Za-z0-9.-]+)\s*\{[^}]*?selector\s*=\s*\"([^\"]+)\"", re.M)


def read_signing(config_dir: Path, backend: Backend) -> dict[str, str]:
    """domain -> selector as the backend's files say today (for adopting an existing setup)."""
    if backend == "opendkim":
        from agent.dkim.keys import signing_selectors_opendkim

        return signing_selectors_opendkim(config_dir)
    conf = config_dir / "rspamd" / "override.d" / "dkim_signing.conf"
    if not conf.is_file():
        return {}
    return {d.lower(): s for d, s in _RSPAMD_BLOCK.findall(conf.read_text(errors="replace"))}
