"""DKIM building blocks with real keys from opendkim-genkey and openssl."""

from __future__ import annotations

import base64
import stat
import subprocess
from pathlib import Path

import pytest

from agent.dkim.byo import install_byo_key, load_byo_keys
from agent.dkim.keys import read_public_keys, split_selector_domain, zone_txt_value
from agent.dkim.manager import generate_commands
from agent.dkim.rotation import DomainState, Facts, after_switch, next_step
from agent.dkim.signing import read_signing, write_signing
from agent.mailstate.model import DkimSpec
from tests.rig.proc import require_binary


def genkey(config: Path, domain: str, selector: str, bits: int = 2048) -> Path:
    exe = require_binary("opendkim-genkey", "opendkim-tools")
    folder = config / "opendkim" / "keys" / domain
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [exe, "-b", str(bits), "-s", selector, "-d", domain, "-D", str(folder)], check=True
    )
    return folder / f"{selector}.txt"


def openssl_key(path: Path, kind: str = "rsa", bits: int = 2048) -> Path:
    exe = require_binary("openssl", "openssl")
    if kind == "rsa":
        cmd = [exe, "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}"]
    else:
        cmd = [exe, "genpkey", "-algorithm", "ED25519"]
    subprocess.run([*cmd, "-out", str(path)], check=True, capture_output=True)
    return path


def test_reads_opendkim_genkey_output(tmp_path: Path) -> None:
    txt = genkey(tmp_path, "example.com", "mail", 1024)
    keys = read_public_keys(tmp_path, "opendkim")
    key = keys[("example.com", "mail")]
    assert key.bits == 1024
    assert key.key_type == "rsa"
    assert key.record == zone_txt_value(txt.read_text())
    assert key.zone_line().startswith('mail._domainkey.example.com. IN TXT ( "v=DKIM1;')


def test_rspamd_names_with_hyphens_resolve_against_declared_domains() -> None:
    known = frozenset({"my-domain.com"})
    assert split_selector_domain("mail-my-domain.com", known) == ("mail", "my-domain.com")
    assert split_selector_domain("mail-example.com", frozenset()) == ("mail", "example.com")
    assert split_selector_domain("nodomain", frozenset()) is None


def test_rspamd_public_dns_file(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    pem = openssl_key(tmp_path / "k.pem").read_bytes()
    der = (
        load_pem_private_key(pem, None)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    folder = tmp_path / "rspamd" / "dkim"
    folder.mkdir(parents=True)
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    (folder / "rsa-2048-mail-my-domain.com.public.dns.txt").write_text(record + "\n")
    keys = read_public_keys(tmp_path, "rspamd", frozenset({"my-domain.com"}))
    assert keys[("my-domain.com", "mail")].bits == 2048


SPEC = DkimSpec(selector="s2", key_type="rsa", key_size=2048)
RSA = ("rsa", 2048)


def test_rotation_generates_a_key_under_the_new_selector() -> None:
    step = next_step(SPEC, DomainState(signing="s1"), Facts({"s1": RSA}), 60, True)
    assert (step.kind, step.selector) == ("generate", "s2")


def test_rotation_holds_signing_until_published() -> None:
    st = DomainState(signing="s1")
    for published in (False, None):
        step = next_step(SPEC, st, Facts({"s1": RSA, "s2": RSA}, {"s2": published}), 60, True)
        assert step.kind == "wait"
    step = next_step(SPEC, st, Facts({"s1": RSA, "s2": RSA}, {"s2": True}), 60, True)
    assert (step.kind, step.selector) == ("switch", "s2")
    forced = DomainState(signing="s1", force=True)
    assert next_step(SPEC, forced, Facts({"s1": RSA, "s2": RSA}), 60, True).kind == "switch"


def test_rotation_retires_the_old_selector_after_the_grace_period() -> None:
    st = after_switch(DomainState(signing="s1"), "s2", now=1000, grace=60)
    assert (st.signing, st.retiring, st.retire_after) == ("s2", "s1", 1060)
    facts = Facts({"s1": RSA, "s2": RSA}, {}, now=1059)
    assert next_step(SPEC, st, facts, 60, True).kind == "none"
    facts = Facts({"s1": RSA, "s2": RSA}, {}, now=1060)
    step = next_step(SPEC, st, facts, 60, True)
    assert (step.kind, step.selector) == ("retire", "s1")


def test_never_rotates_in_place_and_refuses_what_dms_would_not_check() -> None:
    st = DomainState(signing="s2")
    step = next_step(SPEC, st, Facts({"s2": ("rsa", 1024)}), 60, True)
    assert step.kind == "mismatch"
    assert "NEW selector" in step.reason
    bad = DkimSpec(selector="s2", key_type="rsa", key_size=1234)
    assert next_step(bad, st, Facts(), 60, True).kind == "mismatch"


def test_opendkim_takes_several_domains_per_call_rspamd_one() -> None:
    specs = {"a.com": SPEC, "b.com": SPEC, "c.com": DkimSpec("x", "ed25519")}
    cmds = generate_commands(["setup"], "opendkim", specs)
    assert ["setup", "config", "dkim", "keysize", "2048", "selector", "s2",
            "domain", "a.com,b.com"] in cmds  # fmt: skip
    cmds = generate_commands(["setup"], "rspamd", specs)
    assert len(cmds) == 3
    assert cmds[2] == ["setup", "config", "dkim", "keytype", "ed25519", "selector", "x",
                       "domain", "c.com"]  # fmt: skip


def test_signing_tables_round_trip(tmp_path: Path) -> None:
    genkey(tmp_path, "a.com", "s1", 1024)
    genkey(tmp_path, "a.com", "s2", 1024)
    keys = read_public_keys(tmp_path, "opendkim")
    write_signing(tmp_path, "opendkim", {"a.com": "s2"}, keys, "/tmp/docker-mailserver")
    table = (tmp_path / "opendkim" / "KeyTable").read_text().splitlines()
    assert "s1._domainkey.a.com a.com:s1:/etc/opendkim/keys/a.com/s1.private" in table
    assert (tmp_path / "opendkim" / "SigningTable").read_text() == "*@a.com s2._domainkey.a.com\n"
    assert read_signing(tmp_path, "opendkim") == {"a.com": "s2"}


def test_byo_key_installed_with_dms_modes(tmp_path: Path) -> None:
    byo = tmp_path / "byo"
    byo.mkdir()
    openssl_key(byo / "old._domainkey.example.com.pem")
    openssl_key(byo / "ed._domainkey.example.org.pem", kind="ed25519")
    keys, errors = load_byo_keys(byo, {}, allow_undeclared=True)
    assert errors == []
    config = tmp_path / "config"
    for key in keys:
        assert install_byo_key(config, "opendkim", key)
        assert not install_byo_key(config, "opendkim", key)  # never overwrites
    private = config / "opendkim" / "keys" / "example.com" / "old.private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    found = read_public_keys(config, "opendkim")
    assert found[("example.com", "old")].bits == 2048
    assert found[("example.org", "ed")].key_type == "ed25519"
    assert all("PRIVATE" not in repr(k) for k in keys)  # repr never shows the key


def test_byo_rspamd_layout(tmp_path: Path) -> None:
    byo = tmp_path / "byo"
    byo.mkdir()
    openssl_key(byo / "mail._domainkey.example.com.pem")
    (key,), _ = load_byo_keys(byo, {"example.com": DkimSpec()})
    assert install_byo_key(tmp_path, "rspamd", key)
    folder = tmp_path / "rspamd" / "dkim"
    private = folder / "rsa-2048-mail-example.com.private.txt"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert read_public_keys(tmp_path, "rspamd")[("example.com", "mail")].bits == 2048


@pytest.mark.parametrize(
    ("name", "content", "field", "message"),
    [
        ("mail._domainkey.example.com.pem", "-----BEGIN PRIVATE KEY-----\ngarbage\n", "key",
         "not an unencrypted PEM private key"),
        ("mail.example.com.pem", None, "name", "expected <selector>._domainkey.<domain>.pem"),
        ("small._domainkey.example.com.pem", "rsa512", "key", "RSA key of 512 bits"),
        ("mail._domainkey.typed.com.pem", "ed", "key", "the state declares rsa for typed.com"),
        # the name must say a DNS selector and domain: `..` would write outside keys/
        ("mail._domainkey....pem", None, "name", "domain '..'"),
        ("m_l._domainkey.typed.com.pem", None, "name", "selector 'm_l' must be DNS labels"),
        ("mail._domainkey.undeclared.org.pem", None, "name", "undeclared.org does not declare"),
    ],
)  # fmt: skip
def test_corrupt_byo_key_is_a_located_error_and_writes_nothing(
    tmp_path: Path, name: str, content: str | None, field: str, message: str
) -> None:
    byo = tmp_path / "byo"
    byo.mkdir()
    path = byo / name
    if content == "rsa512":
        openssl_key(path, bits=512)
    elif content == "ed":
        openssl_key(path, kind="ed25519")
    elif content is None:
        openssl_key(path)
    else:
        path.write_text(content)
    specs = {d: DkimSpec("mail", "rsa", 2048) for d in ("typed.com", "example.com")}
    keys, errors = load_byo_keys(byo, specs)
    assert keys == []
    (err,) = errors
    assert (err.file, err.field) == (str(path), field)
    assert message in err.message
    assert str(err).startswith(f"{path}: {field}: ")
