"""pytest fixtures for the DMS v15.1.0 `setup` double (``tests/dms_double/setup``).

``dms`` gives a fresh, empty DMS config folder and mail folder, and ``setup_argv``: a wrapper
script that exports the double's environment and execs it, so any executor (local subprocess,
the Kubernetes test API server's exec, …) runs ``[*dms.setup_argv, "email", "list"]`` with no
environment plumbing. ``make_dms(rspamd=True, quotas=False, …)`` makes variants.
``doveadm_hash`` / ``doveadm_verify`` use the real ``doveadm pw`` (skipped without it, failing
under CI=true).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.proc import require_binary

DOUBLE = Path(__file__).resolve().with_name("setup")

# Defaults of DMS v15.1.0 (OpenDKIM on, Rspamd off, quotas on, accounts from files).
DEFAULT_SETTINGS = {
    "ENABLE_RSPAMD": "0",
    "ENABLE_OPENDKIM": "1",
    "ENABLE_QUOTAS": "1",
    "ACCOUNT_PROVISIONER": "FILE",
    "OVERRIDE_HOSTNAME": "mail.example.test",
    "LOG_LEVEL": "info",
    "DMS_DOUBLE_DELAY": "0",
}


def python() -> str:
    """The system interpreter starts in ~15 ms (a pyenv shim takes ~130 ms); stdlib only."""
    system = Path("/usr/bin/python3")
    return str(system) if system.exists() else sys.executable


class DmsDouble:
    """One DMS instance as the double sees it: folders, environment and a runnable `setup`."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.config_dir = root / "config"
        self.mail_dir = root / "mail"
        self.state_dir = root / "state"
        self.wrapper = root / "bin" / "setup"
        for folder in (self.config_dir, self.mail_dir, self.state_dir, self.wrapper.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {
            **DEFAULT_SETTINGS,
            "DMS_DOUBLE_CONFIG_DIR": str(self.config_dir),
            "DMS_DOUBLE_MAIL_DIR": str(self.mail_dir),
            "DMS_DOUBLE_STATE_DIR": str(self.state_dir),
        }
        self.set_env(**settings)

    @property
    def setup_argv(self) -> list[str]:
        return [str(self.wrapper)]

    @property
    def bin_dir(self) -> Path:
        """Holds the wrapper named `setup`: put it first on PATH to run `setup …` by name
        (e.g. `timeout -k 5 N setup …` in an exec'd container)."""
        return self.wrapper.parent

    def path_env(self) -> str:
        return f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"

    # -- settings ---------------------------------------------------------------------------
    def set_env(
        self,
        *,
        rspamd: bool | None = None,
        opendkim: bool | None = None,
        quotas: bool | None = None,
        provisioner: str | None = None,
        hostname: str | None = None,
        delay: float | None = None,
        **extra: str,
    ) -> None:
        """Change DMS settings; the wrapper script is rewritten so `setup_argv` follows."""
        if rspamd is not None:
            self.env["ENABLE_RSPAMD"] = "1" if rspamd else "0"
            if opendkim is None:  # DMS's docs: Rspamd for DKIM means OpenDKIM off
                self.env["ENABLE_OPENDKIM"] = "0" if rspamd else "1"
        if opendkim is not None:
            self.env["ENABLE_OPENDKIM"] = "1" if opendkim else "0"
        if quotas is not None:
            self.env["ENABLE_QUOTAS"] = "1" if quotas else "0"
        if provisioner is not None:
            self.env["ACCOUNT_PROVISIONER"] = provisioner
        if hostname is not None:
            self.env["OVERRIDE_HOSTNAME"] = hostname
        if delay is not None:
            self.env["DMS_DOUBLE_DELAY"] = str(delay)
        self.env.update(extra)
        self._write_wrapper()

    def use_rspamd(self) -> None:
        self.set_env(rspamd=True)

    def use_opendkim(self) -> None:
        self.set_env(rspamd=False, opendkim=True)

    def _write_wrapper(self) -> None:
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(self.env.items()))
        self.wrapper.write_text(
            "#!/bin/sh\n# DMS v15.1.0 `setup` double with its environment (tests/dms_double).\n"
            f'{exports}exec {shlex.quote(python())} -I {shlex.quote(str(DOUBLE))} "$@"\n'
        )
        self.wrapper.chmod(0o755)

    # -- running ----------------------------------------------------------------------------
    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `setup ARGS` with stdin (closed when None); never raises on a non-zero exit."""
        return subprocess.run(
            [*self.setup_argv, *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- files ------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.config_dir / name

    def read(self, name: str) -> str:
        path = self.file(name)
        return path.read_text() if path.exists() else ""

    def write(self, name: str, text: str) -> Path:
        path = self.file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def seed(self, *addresses: str, password: str = "pw") -> None:
        """Write accounts straight into postfix-accounts.cf (real hash, one doveadm call per
        password per session): for tests whose subject is not `email add` itself."""
        with self.file("postfix-accounts.cf").open("a") as fh:
            for address in addresses:
                fh.write(f"{address}|{_cached_hash(password)}\n")

    def accounts(self) -> dict[str, str]:
        """postfix-accounts.cf as {address: hash} (a third field, if any, stays in the hash)."""
        result = {}
        for line in self.read("postfix-accounts.cf").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                address, _, rest = line.partition("|")
                result[address] = rest
        return result

    def aliases(self) -> dict[str, list[str]]:
        result = {}
        for line in self.read("postfix-virtual.cf").splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and not parts[0].startswith("#"):
                result[parts[0]] = parts[1].split(",")
        return result

    def quotas(self) -> dict[str, str]:
        lines = self.read("dovecot-quotas.cf").splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def maildir(self, address: str) -> Path:
        """Where DMS keeps the mail: /var/mail/<domain>/<local part>."""
        local, domain = address.rsplit("@", 1)[0], address.split("@", 1)[1]
        return self.mail_dir / domain / local

    def create_maildir(self, address: str, message: bytes = b"") -> Path:
        """What Dovecot does on first delivery or login (DMS's `email add` does not)."""
        path = self.maildir(address)
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if message:
            (path / "cur" / "1.test:2,S").write_bytes(message)
        return path

    def calls(self) -> list[dict[str, Any]]:
        """One entry per `setup` call: argv, stdin_bytes, start, end, exit."""
        log = self.state_dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line]

    def owners(self) -> dict[str, str]:
        """Intended owners of files DMS would chown (when the user does not exist here)."""
        table = self.state_dir / "owners.tsv"
        if not table.exists():
            return {}
        return dict(line.split("\t", 1) for line in table.read_text().splitlines() if line)


@pytest.fixture
def make_dms(tmp_path: Path) -> Iterator[Callable[..., DmsDouble]]:
    """Factory: ``make_dms(rspamd=True, quotas=False, provisioner="LDAP", delay=1)``."""
    require_binary("doveadm", "dovecot-core")
    counter = iter(range(1_000_000))

    def make(**settings: Any) -> DmsDouble:
        return DmsDouble(tmp_path / f"dms{next(counter)}", **settings)

    yield make


@pytest.fixture
def dms(make_dms: Callable[..., DmsDouble]) -> DmsDouble:
    """A DMS double with v15.1.0's defaults (OpenDKIM, quotas on, FILE provisioner)."""
    return make_dms()


# -- real password hashes ---------------------------------------------------------------------


def doveadm_hash(email: str, password: str, scheme: str = "SHA512-CRYPT") -> str:
    """`doveadm pw -s SCHEME -u EMAIL -p PASSWORD` (test helper: the password is an argument)."""
    doveadm = require_binary("doveadm", "dovecot-core")
    proc = subprocess.run(
        [doveadm, "pw", "-s", scheme, "-u", email, "-p", password],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def doveadm_verify(hashed: str, password: str, email: str | None = None) -> bool:
    """`doveadm pw -t HASH -p PASSWORD`: True when Dovecot accepts the password."""
    doveadm = require_binary("doveadm", "dovecot-core")
    argv = [doveadm, "pw", "-t", hashed, "-p", password]
    if email:
        argv += ["-u", email]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode == 0 and "(verified)" in proc.stdout


@functools.cache
def _cached_hash(password: str) -> str:
    return doveadm_hash("seed@example.test", password)


class Doveadm:
    hash = staticmethod(doveadm_hash)
    verify = staticmethod(doveadm_verify)


@pytest.fixture
def doveadm() -> Doveadm:
    """``doveadm.hash(email, pw)`` and ``doveadm.verify(hash, pw)`` with the real doveadm."""
    require_binary("doveadm", "dovecot-core")
    return Doveadm()


__all__ = ["DmsDouble", "Doveadm", "dms", "doveadm", "doveadm_hash", "doveadm_verify", "make_dms"]
