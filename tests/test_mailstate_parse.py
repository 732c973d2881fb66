"""State and passwords documents, one at a time: every rule, each error on its own line."""

from __future__ import annotations

import pytest

from agent.errors import InvalidDocument, LocatedError
from agent.mailstate.model import DkimSpec
from agent.mailstate.parse import parse_passwords, parse_state
from agent.mailstate.syntax import check_address, check_alias_key, check_domain
from agent.yamlloc import load_yaml

HEAD = "apiVersion: dms-agent/v1\n"


def state_errors(text: str) -> list[LocatedError]:
    with pytest.raises(InvalidDocument) as exc:
        parse_state(load_yaml(text, "s.yaml"))
    return exc.value.errors


def one_error(text: str) -> LocatedError:
    errors = state_errors(text)
    assert len(errors) == 1, errors
    return errors[0]


def test_valid_document_gives_model_values() -> None:
    frag = parse_state(
        load_yaml(
            HEAD
            + "domains:\n"
            + "  Example.com:\n"
            + "    dkim: {selector: s2024, keyType: ed25519}\n"
            + "  example.org: {dkim: {}}\n"
            + "  example.net:\n"
            + "accounts:\n"
            + "  Alice@Example.com: {quota: 2G, restrict: [send, receive]}\n"
            + "  bob@example.com:\n"
            + "  carol@example.com: {quota: 0}\n"
            + "aliases:\n"
            + "  postmaster@example.com: [Alice@example.com, bob@example.com]\n"
            + "  '@example.org': [alice@example.com]\n"
            + "  abuse: [bob@example.com]\n"
            + "policy: {prune: false, deleteMailData: true}\n",
            "s.yaml",
        )
    )
    assert frag.domains["example.com"][0].dkim == DkimSpec("s2024", "ed25519", 2048)
    assert frag.domains["example.org"][0].dkim == DkimSpec()
    assert frag.domains["example.net"][0].dkim is None
    alice, origin = frag.accounts["alice@example.com"]
    assert (alice.quota, alice.restrict, origin) == ("2G", {"send", "receive"}, ("s.yaml", 8))
    assert frag.accounts["bob@example.com"][0].quota is None
    assert frag.accounts["carol@example.com"][0].quota == "0"
    assert frag.aliases["postmaster@example.com"] == (
        ("alice@example.com", "bob@example.com"),
        ("s.yaml", 12),
    )
    assert frag.aliases["@example.org"][0] == ("alice@example.com",)
    assert frag.aliases["abuse"][0] == ("bob@example.com",)
    assert frag.policy is not None
    assert (frag.policy.prune, frag.policy.delete_mail_data) == (False, True)
    assert frag.settings[("alice@example.com", "quota")] == ("s.yaml", 8)
    assert frag.warnings == []


@pytest.mark.parametrize(
    ("body", "line", "field", "fragment"),
    [
        ("accounts:\n  a@: {}\n", 3, "accounts.a@", "empty domain"),
        ("accounts:\n  x@y@z.com: {}\n", 3, "accounts.x@y@z.com", "exactly one @"),
        ("accounts:\n  a..b@x.com: {}\n", 3, "accounts.a..b@x.com", "dot"),
        ("accounts:\n  a|b@x.com: {}\n", 3, "accounts.a|b@x.com", "only letters"),
        ("accounts:\n  a@localhost: {}\n", 3, "accounts.a@localhost", "two labels"),
        ("accounts:\n  a@10.0.0.1: {}\n", 3, "accounts.a@10.0.0.1", "IP"),
        ("accounts:\n  a@b\u00e9.com: {}\n", 3, "accounts.a@b\u00e9.com", "xn--"),
        ("accounts:\n  ok@x.com:\n    quota: 10\n", 4, "accounts.ok@x.com.quota", "must match"),
        ("accounts:\n  ok@x.com: {quota: 2g}\n", 3, "accounts.ok@x.com.quota", "must match"),
        ("accounts:\n  ok@x.com: {quota: [1]}\n", 3, "accounts.ok@x.com.quota", "string"),
        ("accounts:\n  ok@x.com:\n    size: 1\n", 4, "accounts.ok@x.com.size", "unknown key"),
        (
            "accounts:\n  ok@x.com:\n    restrict:\n      - send\n      - relay\n",
            6,
            "accounts.ok@x.com.restrict[1]",
            "'send' or 'receive'",
        ),
        (
            "accounts:\n  ok@x.com: {restrict: [send, send]}\n",
            3,
            "accounts.ok@x.com.restrict[1]",
            "twice",
        ),
        ("accounts:\n  ok@x.com: 5\n", 3, "accounts.ok@x.com", "mapping"),
        ("accounts: [a@x.com]\n", 2, "accounts", "mapping"),
        (
            "accounts:\n  a@x.com: {}\n  b@x.com: {}\n  A@X.com: {}\n",
            5,
            "accounts.A@X.com",
            "line 3",
        ),
        ("domains:\n  bad_name.com: {}\n", 3, "domains.bad_name.com", "label 'bad_name'"),
        ("domains:\n  x.com: {dkim: {keyType: dsa}}\n", 3, "domains.x.com.dkim.keyType", ""),
        (
            "domains:\n  x.com:\n    dkim:\n      keyType: ed25519\n      keySize: 256\n",
            6,
            "domains.x.com.dkim.keySize",
            "fixed size",
        ),
        (
            "domains:\n  x.com:\n    dkim: {keySize: 1000}\n",
            4,
            "domains.x.com.dkim.keySize",
            "2048",
        ),
        ("domains:\n  x.com: {dkim: {keySize: '2048'}}\n", 3, "domains.x.com.dkim.keySize", ""),
        (
            "domains:\n  x.com:\n    dkim: {selector: mail_2024}\n",
            4,
            "domains.x.com.dkim.selector",
            "DNS labels",
        ),
        ("aliases:\n  a@x.com: []\n", 3, "aliases.a@x.com", "at least one"),
        ("aliases:\n  a@x.com: b@x.com\n", 3, "aliases.a@x.com", "list"),
        ("aliases:\n  '@': [b@x.com]\n", 3, "aliases.@", "empty domain"),
        ("aliases:\n  a@x.com:\n    - b@x.com\n    - c@\n", 5, "aliases.a@x.com[1]", "recipient"),
        (
            "aliases:\n  a@x.com: [b@x.com, B@x.com]\n",
            3,
            "aliases.a@x.com[1]",
            "twice",
        ),
        ("policy:\n  prune: 'no'\n", 3, "policy.prune", "boolean"),
        ("policy:\n  dryRun: true\n", 3, "policy.dryRun", "prune, deleteMailData"),
        ("colour: blue\n", 2, "colour", "unknown key"),
    ],
)
def test_each_rule_gives_one_located_error(body: str, line: int, field: str, fragment: str) -> None:
    err = one_error(HEAD + body)
    assert (err.file, err.line, err.field) == ("s.yaml", line, field)
    assert fragment in err.message


def test_api_version_missing_or_wrong() -> None:
    err = one_error("accounts: {}\n")
    assert (err.line, err.field) == (1, "")
    assert "dms-agent/v1" in err.message
    err = one_error("# c\napiVersion: dms-agent/v9\n")
    assert (err.line, err.field, err.message) == (2, "apiVersion", "must be dms-agent/v1")
    err = one_error("")
    assert err.line == 1 and "mapping" in err.message
    err = one_error("- a\n")
    assert err.line == 1


def test_all_errors_reported_together_in_line_order() -> None:
    errors = state_errors(
        "apiVersion: dms-agent/v1\n"
        "accounts:\n"
        "  a@: {quota: 10}\n"
        "  good@x.com: {}\n"
        "  bad@x.com: {restrict: [bogus]}\n"
        "aliases:\n"
        "  x@: []\n"
    )
    assert [(e.line, e.field) for e in errors] == [
        (3, "accounts.a@"),
        (3, "accounts.a@.quota"),
        (5, "accounts.bad@x.com.restrict[0]"),
        (7, "aliases.x@"),
        (7, "aliases.x@"),
    ]
    assert str(errors[0]).startswith("s.yaml:3: accounts.a@: ")


def test_weak_rsa_is_a_warning() -> None:
    frag = parse_state(load_yaml(HEAD + "domains:\n  x.com:\n    dkim: {keySize: 1024}\n", "s"))
    assert frag.domains["x.com"][0].dkim == DkimSpec("mail", "rsa", 1024)
    (warning,) = frag.warnings
    assert (warning.line, warning.field) == (4, "domains.x.com.dkim.keySize")


def passwords_errors(text: str) -> list[LocatedError]:
    with pytest.raises(InvalidDocument) as exc:
        parse_passwords(load_yaml(text, "p.yaml"))
    return exc.value.errors


def test_passwords_valid() -> None:
    frag = parse_passwords(
        load_yaml(
            "apiVersion: dms-agent/v1\n"
            "Alice@x.com: {password: '{not a hash} but a password'}\n"
            "bob@x.com: {hash: '{BLF-CRYPT}$2b$12$abcdefghijklmnopqrstuv'}\n"
            "carol@x.com: {hash: '{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'}\n",
            "p.yaml",
        )
    )
    alice, origin = frag.passwords["alice@x.com"]
    assert (alice.kind, alice.secret.value, origin) == (
        "plain",
        "{not a hash} but a password",
        ("p.yaml", 2),
    )
    assert frag.passwords["bob@x.com"][0].kind == "hash"
    assert frag.passwords["carol@x.com"][0].kind == "hash"
    assert "{not a hash}" not in repr(frag.passwords)
    assert frag.warnings == []
    assert parse_passwords(load_yaml("", "p")).passwords == {}


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        ("a@x.com: hunter2\n", 1, "a@x.com", "never a bare string"),
        ("a@x.com: {password: 1234}\n", 1, "a@x.com.password", "quote"),
        ("a@x.com: {password: ' pw'}\n", 1, "a@x.com.password", "whitespace"),
        ('a@x.com: {password: "pw\\t"}\n', 1, "a@x.com.password", "whitespace"),
        ('a@x.com: {password: "p\\nw"}\n', 1, "a@x.com.password", "line break"),
        ("a@x.com:\n  password: |\n    pw\n", 2, "a@x.com.password", "line break"),
        ("a@x.com: {password: ''}\n", 1, "a@x.com.password", "empty"),
        ("a@x.com: {hash: '$6$salt$hash'}\n", 1, "a@x.com.hash", "{SCHEME}"),
        ("a@x.com: {hash: '{SHA512-CRYPT}$6$a b'}\n", 1, "a@x.com.hash", "whitespace"),
        ("a@x.com: {hash: '{SHA512-CRYPT}$6$a|b'}\n", 1, "a@x.com.hash", "|"),
        ("a@x.com: {password: a, hash: '{X}y'}\n", 1, "a@x.com", "not both"),
        ("a@x.com: {}\n", 1, "a@x.com", "needs"),
        ("a@x.com: {pass: a}\n", 1, "a@x.com.pass", "allowed here: password, hash"),
        ("x@y@z.com: {password: a}\n", 1, "x@y@z.com", "exactly one @"),
        ("ok@x.com: {password: a}\nOK@x.com: {password: b}\n", 2, "OK@x.com", "line 1"),
        ("apiVersion: v2\n", 1, "apiVersion", "dms-agent/v1"),
        ("- a@x.com\n", 1, "", "mapping"),
    ],
)
def test_passwords_rules(text: str, line: int, field: str, fragment: str) -> None:
    (err,) = passwords_errors(text)
    assert (err.file, err.line, err.field) == ("p.yaml", line, field)
    assert fragment in err.message


def test_password_errors_never_show_the_password() -> None:
    secret = " s3cr3t-value"
    (err,) = passwords_errors(f"a@x.com: {{password: '{secret}'}}\n")
    assert secret.strip() not in str(err)
    (err,) = passwords_errors("a@x.com: {password: 98765}\n")
    assert "98765" not in str(err)


def test_plaintext_and_unknown_schemes_warn() -> None:
    frag = parse_passwords(
        load_yaml("a@x.com: {hash: '{PLAIN}pw'}\nb@x.com: {hash: '{FOO}bar'}\n", "p.yaml")
    )
    assert [(w.line, "readable" in w.message) for w in frag.warnings] == [(1, True), (2, False)]
    assert "pw" not in str(frag.warnings[0]).replace("password", "")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a@example.com", True),
        ("first.last+tag@sub.example.co.uk", True),
        ("o'neil@example.com", True),
        ("a@xn--bcher-kva.example", True),
        ("a" * 64 + "@x.com", True),
        ("a" * 65 + "@x.com", False),
        ("a@" + ("b" * 63 + ".") * 4 + "com", False),
        ("a@b", False),
        ("@example.com", False),
        ("a@example.com.", False),
        ("a b@example.com", False),
        ("a/b@example.com", False),
    ],
)
def test_address_syntax(value: str, ok: bool) -> None:
    assert (check_address(value) is None) is ok


def test_alias_key_forms_and_domains() -> None:
    assert check_alias_key("@example.org") is None
    assert check_alias_key("abuse") is None
    assert check_alias_key("a@b.org") is None
    assert check_alias_key("ab use") is not None
    assert check_domain("example.com") is None
    assert check_domain("-x.com") is not None
    assert check_domain("x." + "a" * 64) is not None
