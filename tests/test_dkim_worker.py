"""The DKIM work that needs ``cryptography`` runs in a worker process (agent/dkim/worker.py):
BYO keys imported and keys made there, refusals located, a crash located in /status, no
private key in a request, a log line or argv — and the agent reads key sizes without
``cryptography`` (dkimpy's parser), with the sizes ``cryptography`` reads."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_private_key,
)

from agent.app import AgentContext
from agent.dkim import worker
from agent.dkim.keys import key_bits, read_public_keys
from agent.dkim.manager import DkimManager
from agent.mailstate.model import DkimSpec, Domain
from agent.metrics import REGISTRY
from agent.settings import Settings
from agent.status import State, StatusRegistry
from tests.rig.knot import KnotServer
from tests.test_dkim_units import genkey, openssl_key

Knot = Callable[[dict[str, str | None]], KnotServer]
ROOT = Path(__file__).resolve().parent.parent


def file_mode_manager(config: Path, nameserver: str, **dkim: Any) -> DkimManager:
    settings = Settings.model_validate(
        {"dms": {"configDir": str(config), "executor": {"kind": "file"}},
         "dkim": {"nameservers": [nameserver], "opendkimReload": [], **dkim}}
    )  # fmt: skip
    return DkimManager(AgentContext(settings=settings, status=StatusRegistry()))


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def emit(self, reason: str, message: str, type: str = "Normal") -> None:
        self.seen.append((reason, message, type))


def imports_ok() -> float:
    labels = {"action": "import", "result": "ok"}
    return REGISTRY.get_sample_value("dms_agent_dkim_actions_total", labels) or 0.0


async def test_byo_keys_are_imported_by_the_worker_and_refusals_located(
    tmp_path: Path, knot_factory: Knot, caplog: pytest.LogCaptureFixture
) -> None:
    server = knot_factory({"example.com": ""})
    byo, config = tmp_path / "byo", tmp_path / "config"
    byo.mkdir()
    good = openssl_key(byo / "s1._domainkey.example.com.pem")
    (byo / "s2._domainkey.example.com.pem").write_text("-----BEGIN PRIVATE KEY-----\nbroken\n")
    manager = file_mode_manager(config, server.nameserver, byoKeysDir=str(byo))
    events = Events()
    manager.ctx.events = events  # type: ignore[assignment]
    before = imports_ok()
    caplog.set_level(logging.DEBUG)
    spec = DkimSpec("s1", "rsa", 2048)
    await manager.run_pass({"example.com": Domain("example.com", spec)})

    private = config / "opendkim" / "keys" / "example.com" / "s1.private"
    assert load_pem_private_key(private.read_bytes(), None).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    ) == load_pem_private_key(good.read_bytes(), None).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    assert read_public_keys(config, "opendkim")[("example.com", "s1")].bits == 2048
    assert imports_ok() == before + 1
    refused = f"{byo / 's2._domainkey.example.com.pem'}: key: not an unencrypted PEM private key"
    assert any(
        r == "Invalid" and m.startswith(f"DKIM key refused: {refused}") for r, m, _ in events.seen
    )
    entry = manager.status
    assert entry.state is State.DEGRADED and refused in entry.message
    secret = good.read_text().splitlines()[1]  # a line of the key's base64
    assert secret not in caplog.text and secret not in json.dumps(entry.as_dict())


def test_requests_name_files_never_key_material(tmp_path: Path) -> None:
    key = openssl_key(tmp_path / "s1._domainkey.example.com.pem")
    specs = {"example.com": DkimSpec("s1")}
    for req in (
        worker.import_request(tmp_path, "opendkim", tmp_path, specs, False),
        worker.generate_request(tmp_path, "rspamd", specs),
    ):
        text = json.dumps(req)
        assert "PRIVATE KEY" not in text and key.read_text().splitlines()[1] not in text


async def test_a_crashing_worker_is_located_in_the_dkim_status(
    tmp_path: Path, knot_factory: Knot, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = knot_factory({"example.com": ""})
    manager = file_mode_manager(tmp_path, server.nameserver)
    real = worker.generate_request

    def broken(*args: Any) -> dict[str, Any]:
        req = real(*args)
        req["specs"]["example.com"]["keySize"] = "big"  # the worker's RSA call raises
        return req

    monkeypatch.setattr(worker, "generate_request", broken)
    await manager.run_pass({"example.com": Domain("example.com", DkimSpec("mail"))})
    entry = manager.status
    assert entry.state is State.DEGRADED
    assert "DKIM generate failed: agent.dkim.worker: exited with 1: TypeError" in entry.message
    assert "agent/dkim/byo.py:" in entry.message  # where it failed
    assert read_public_keys(tmp_path, "opendkim") == {}

    monkeypatch.setattr(worker, "generate_request", real)
    await manager.run_pass({"example.com": Domain("example.com", DkimSpec("mail"))})
    assert manager.status.state is State.OK, manager.status.message


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
def test_key_sizes_read_without_cryptography_match_cryptography(tmp_path: Path, bits: int) -> None:
    txt = genkey(tmp_path, "example.com", "mail", bits)  # opendkim-genkey's own record
    key = read_public_keys(tmp_path, "opendkim")[("example.com", "mail")]
    assert txt.exists() and key.bits == bits
    der = base64.b64decode(key.p)
    assert load_der_public_key(der).key_size == key_bits("rsa", key.p)  # type: ignore[union-attr]
    pkcs1 = load_der_public_key(der).public_bytes(Encoding.DER, PublicFormat.PKCS1)
    assert key_bits("rsa", base64.b64encode(pkcs1).decode()) == bits


@pytest.mark.parametrize(
    "p", ["", "bm90IGEga2V5", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", "not base64!"]
)
def test_broken_public_keys_are_refused(p: str) -> None:
    with pytest.raises(ValueError, match="p= is not"):
        key_bits("rsa", p)


def test_the_agent_process_keeps_the_rare_libraries_out() -> None:
    """Every component the agent builds, imported: cryptography, dnspython, dkimpy and pyspf
    are the workers' alone."""
    code = (
        "import sys\n"
        "from agent.app import BUILDERS, resolve_builder\n"
        "import agent.server, agent.kube.exec, agent.kube.events, agent.sources.kube\n"
        "for entry in BUILDERS: resolve_builder(entry)\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = set(out.stdout.split())
    for module in ("cryptography", "dns", "dkim", "spf", "agent.dns.runner", "agent.dkim.byo"):
        assert module not in loaded, module
    assert "agent.dkim.manager" in loaded and "agent.dns.component" in loaded


def published(domain: str, selector: str) -> float | None:
    labels = {"domain": domain, "selector": selector}
    return REGISTRY.get_sample_value("dms_agent_dkim_published", labels)


async def test_publication_is_asked_in_the_worker_and_unknown_when_it_fails(
    tmp_path: Path, knot_factory: Knot, monkeypatch: pytest.MonkeyPatch
) -> None:
    genkey(tmp_path, "example.com", "mail", 1024)
    key = read_public_keys(tmp_path, "opendkim")[("example.com", "mail")]
    server = knot_factory({"example.com": f'mail._domainkey IN TXT "{key.record}"\n'})
    manager = file_mode_manager(tmp_path, server.nameserver)
    domains = {"example.com": Domain("example.com", DkimSpec("mail", "rsa", 1024))}
    await manager.run_pass(domains)
    assert published("example.com", "mail") == 1.0
    assert manager.status.state is State.OK, manager.status.message

    real = worker.published_request
    monkeypatch.setattr(worker, "published_request", lambda *a: {**real(*a), "keys": [[1]]})
    await manager.run_pass(domains)
    assert published("example.com", "mail") == -1.0  # unknown, never "not published"
    assert manager.status.state is State.DEGRADED
    assert "DKIM published failed: agent.dkim.worker: exited with 1: ValueError" in (
        manager.status.message
    )


async def test_an_unchanged_byo_folder_starts_no_worker_and_keeps_its_refusals(
    tmp_path: Path, knot_factory: Knot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passes run every dkim.interval: the import job (and cryptography) only when the folder,
    the declarations or the imported keys changed."""
    from agent.dkim import manager as manager_module

    server = knot_factory({"example.com": ""})
    byo, config = tmp_path / "byo", tmp_path / "config"
    byo.mkdir()
    openssl_key(byo / "s1._domainkey.example.com.pem")
    (byo / "s2._domainkey.example.com.pem").write_text("not a key\n")
    manager = file_mode_manager(config, server.nameserver, byoKeysDir=str(byo))
    jobs: list[str] = []
    real_run = manager_module.run_worker

    async def counting(module: str, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        jobs.append(request["job"])
        return await real_run(module, request, deadline)

    monkeypatch.setattr(manager_module, "run_worker", counting)
    domains = {"example.com": Domain("example.com", DkimSpec("s1", "rsa", 2048))}
    await manager.run_pass(domains)
    assert jobs.count("import") == 1
    await manager.run_pass(domains)
    assert jobs.count("import") == 1  # nothing changed: no worker
    assert "s2._domainkey.example.com.pem: key: not an unencrypted PEM" in manager.status.message

    for name in ("s1.private", "s1.txt"):  # an imported key gone: imported again
        (config / "opendkim" / "keys" / "example.com" / name).unlink()
    await manager.run_pass(domains)
    assert jobs.count("import") == 2
    assert ("example.com", "s1") in read_public_keys(config, "opendkim")

    openssl_key(byo / "s3._domainkey.example.com.pem")  # a new file: a new job
    await manager.run_pass(domains)
    assert jobs.count("import") == 3
    assert ("example.com", "s3") in read_public_keys(config, "opendkim")
