"""DKIM lifecycle end to end: the `setup` double makes keys with the real opendkim-genkey,
the real Knot DNS server publishes (or does not publish) the records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.app import AgentContext
from agent.dkim.keys import read_public_keys
from agent.dkim.manager import DkimManager
from agent.executor import LocalExecutor
from agent.mailstate.model import DkimSpec, Domain
from agent.settings import Settings
from agent.status import State, StatusRegistry
from tests.dms_double.fixtures import DmsDouble
from tests.rig.knot import KnotServer

Knot = Callable[[dict[str, str | None]], KnotServer]


def make_manager(
    dms: DmsDouble, nameserver: str, tmp_path: Path, grace: float = 3600.0, **extra: Any
) -> tuple[DkimManager, StatusRegistry]:
    etc = tmp_path / "etc-opendkim"
    etc.mkdir(exist_ok=True)
    reload_log = tmp_path / "reloads.log"
    # stands in for DMS's own start-up copy + `supervisorctl restart opendkim`
    reload = [
        "sh",
        "-c",
        f"cp -a {dms.config_dir}/opendkim/. {etc}/ && echo restart >> {reload_log}",
    ]
    settings = Settings.model_validate(
        {
            "dms": {
                "configDir": str(dms.config_dir),
                "setupCommand": dms.setup_argv,
                "executor": {"kind": "local"},
                "environment": {"ENABLE_RSPAMD": dms.env["ENABLE_RSPAMD"],
                                "ENABLE_OPENDKIM": dms.env["ENABLE_OPENDKIM"]},
            },
            "dkim": {"nameservers": [nameserver], "gracePeriod": grace, "dnsTimeout": 2,
                     "opendkimReload": reload, **extra},
        }
    )  # fmt: skip
    status = StatusRegistry()
    ctx = AgentContext(settings=settings, status=status, executor=LocalExecutor())
    return DkimManager(ctx), status


def dkim_calls(dms: DmsDouble) -> list[list[str]]:
    return [c["argv"] for c in dms.calls() if c["argv"][:2] == ["config", "dkim"]]


def zone_with(dms: DmsDouble, domain: str, selector: str) -> str:
    key = read_public_keys(dms.config_dir, "opendkim")[(domain, selector)]
    return f'{selector}._domainkey IN TXT "{key.record}"\n'


def domains(**selectors: str) -> dict[str, Domain]:
    out = {}
    for name, sel in selectors.items():
        d = name.replace("_", ".")
        out[d] = Domain(d, DkimSpec(selector=sel, key_type="rsa", key_size=1024))
    return out


async def test_opendkim_new_domains_then_a_rotation_held_until_dns_publishes(
    make_dms: Callable[..., DmsDouble], knot_factory: Knot, tmp_path: Path
) -> None:
    dms = make_dms()
    empty_dns = knot_factory({"example.com": "", "example.org": ""})
    manager, status = make_manager(dms, empty_dns.nameserver, tmp_path, grace=0.5)

    # a new domain gets a key and signs with it; keys go live in place (no container restart)
    await manager.run_pass(domains(example_com="s1"))
    assert dkim_calls(dms) == [["config", "dkim", "keysize", "1024", "selector", "s1",
                                "domain", "example.com"]]  # fmt: skip
    signing = dms.config_dir / "opendkim" / "SigningTable"
    assert signing.read_text() == "*@example.com s1._domainkey.example.com\n"
    assert (tmp_path / "etc-opendkim" / "keys" / "example.com" / "s1.private").exists()
    assert (tmp_path / "reloads.log").read_text().count("restart") == 1
    record = status.component("dkim").details["domains"]["example.com"]["records"][0]
    assert record["zoneLine"].startswith("s1._domainkey.example.com. IN TXT")
    assert record["published"] is False

    # a second domain: one more call, for that domain only
    await manager.run_pass(domains(example_com="s1", example_org="s1"))
    assert len(dkim_calls(dms)) == 2
    assert dkim_calls(dms)[1][-1] == "example.org"

    # rotation: a new selector gets a key, but signing stays on s1 while DNS lacks s2
    await manager.run_pass(domains(example_com="s2", example_org="s1"))
    assert dkim_calls(dms)[2][5:] == ["s2", "domain", "example.com"]
    assert "*@example.com s1._domainkey.example.com" in signing.read_text()
    com = status.component("dkim").details["domains"]["example.com"]
    assert com["rotation"] == "waiting"

    # DNS now serves s2 (and still s1): signing switches, s1 stays valid through its grace
    zone = zone_with(dms, "example.com", "s1") + zone_with(dms, "example.com", "s2")
    published = knot_factory({"example.com": zone, "example.org": ""})
    manager, status = make_manager(dms, published.nameserver, tmp_path, grace=0.5)
    await manager.run_pass(domains(example_com="s2", example_org="s1"))
    assert "*@example.com s2._domainkey.example.com" in signing.read_text()
    keytable = (dms.config_dir / "opendkim" / "KeyTable").read_text()
    assert "s1._domainkey.example.com" in keytable  # old selector still verifiable
    com = status.component("dkim").details["domains"]["example.com"]
    assert (com["signing"], com["retiring"], com["rotation"]) == ("s2", "s1", "grace")

    # after the grace period the old selector is retired: its key moved aside, not deleted
    async with asyncio.timeout(20):
        while "s1._domainkey.example.com" in keytable:
            await asyncio.sleep(0.1)
            await manager.run_pass(domains(example_com="s2", example_org="s1"))
            keytable = (dms.config_dir / "opendkim" / "KeyTable").read_text()
    assert not (dms.config_dir / "opendkim" / "keys" / "example.com" / "s1.private").exists()
    retired = dms.config_dir / "dms-agent-retired-dkim" / "example.com" / "s1.private"
    assert retired.exists()
    state = json.loads((dms.config_dir / "dms-agent-dkim.json").read_text())
    assert state["domains"]["example.com"]["retiring"] is None


async def test_invalid_key_size_is_refused_before_dms_sees_it(
    make_dms: Callable[..., DmsDouble], knot_factory: Knot, tmp_path: Path
) -> None:
    dms = make_dms()
    server = knot_factory({"example.com": ""})
    manager, status = make_manager(dms, server.nameserver, tmp_path)
    bad = {"example.com": Domain("example.com", DkimSpec("mail", "rsa", 1234))}
    await manager.run_pass(bad)
    assert dkim_calls(dms) == []
    entry = status.component("dkim")
    assert entry.state is State.DEGRADED
    assert entry.details["domains"]["example.com"]["rotation"] == "mismatch"


async def test_rspamd_keys_made_as_one_batch_without_setup_and_signing_config(
    make_dms: Callable[..., DmsDouble], knot_factory: Knot, tmp_path: Path
) -> None:
    """DMS's `config dkim` with Rspamd restarts Rspamd on every call: the agent makes the batch
    itself (DMS's file names and modes), written one right after the other, so only DMS's
    change detector (it watches rspamd/**) restarts Rspamd for the batch."""
    dms = make_dms(rspamd=True)
    server = knot_factory({"a.test": "", "b.test": ""})
    manager, status = make_manager(dms, server.nameserver, tmp_path)
    specs = {
        "a.test": Domain("a.test", DkimSpec("mail", "rsa", 2048)),
        "b.test": Domain("b.test", DkimSpec("ed", "ed25519")),
    }
    await manager.run_pass(specs)
    assert dkim_calls(dms) == []  # no `setup config dkim`: no restart per key
    keys = dms.config_dir / "rspamd" / "dkim"
    for stem in ("rsa-2048-mail-a.test", "ed25519-ed-b.test"):
        private = keys / f"{stem}.private.txt"
        assert private.stat().st_mode & 0o777 == 0o600 and b"PRIVATE KEY" in private.read_bytes()
        assert (keys / f"{stem}.public.dns.txt").read_text().startswith("v=DKIM1;")
    conf = (dms.config_dir / "rspamd" / "override.d" / "dkim_signing.conf").read_text()
    assert 'selector = "mail";' in conf and 'selector = "ed";' in conf
    assert "/rspamd/dkim/ed25519-ed-b.test.private.txt" in conf
    assert not (tmp_path / "reloads.log").exists()  # Rspamd reloads itself
    assert status.component("dkim").state is State.OK


async def test_without_setup_new_keys_are_reported_not_faked(
    make_dms: Callable[..., DmsDouble], knot_factory: Knot, tmp_path: Path
) -> None:
    dms = make_dms()
    server = knot_factory({"example.com": ""})
    manager, status = make_manager(dms, server.nameserver, tmp_path)
    manager.ctx.executor = None
    await manager.run_pass(domains(example_com="mail"))
    entry = status.component("dkim")
    assert entry.state is State.DEGRADED
    assert "need DMS's setup" in entry.message


async def test_file_mode_makes_keys_in_dms_layout_without_dms(
    tmp_path: Path, knot_factory: Knot
) -> None:
    server = knot_factory({"example.com": ""})
    settings = Settings.model_validate(
        {"dms": {"configDir": str(tmp_path), "executor": {"kind": "file"}},
         "dkim": {"nameservers": [server.nameserver]}}
    )  # fmt: skip
    status = StatusRegistry()
    manager = DkimManager(AgentContext(settings=settings, status=status))
    await manager.run_pass(domains(example_com="mail"))
    key = read_public_keys(tmp_path, "opendkim")[("example.com", "mail")]
    assert key.bits == 1024
    assert (tmp_path / "opendkim" / "SigningTable").read_text().startswith("*@example.com mail.")
    # no DMS to reload: the agent says a restart is needed rather than pretending
    assert status.component("dkim").details["restartRequired"] is True
