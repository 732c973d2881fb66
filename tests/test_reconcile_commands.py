"""The `setup` argv and stdin for each op (pure; the double runs them in test_reconcile_apply).

What matters for safety: a password is only ever on stdin, every question DMS asks is answered
on stdin (a Kubernetes exec cannot close it), and ``-y`` (delete the mail too) is used only when
asked for and the mail is there to delete."""

from __future__ import annotations

import pytest

from agent.dms.commands import Command, CommandError, command_for, list_commands
from agent.mailstate.model import DkimSpec, PasswordIntent, Secret
from agent.reconcile.plan import Op

SETUP = ["kubectl", "exec", "mail", "--", "setup"]
SECRET = "pa ss\tword"


def plain() -> PasswordIntent:
    return PasswordIntent("plain", Secret(SECRET))


def test_passwords_go_on_stdin_twice_never_in_argv() -> None:
    for kind, verb in (("account_add", "add"), ("password_update", "update")):
        cmd = command_for(Op(kind, "a@x.org", password=plain()), SETUP)  # type: ignore[arg-type]
        assert cmd.argv == [*SETUP, "email", verb, "a@x.org"]
        assert cmd.stdin == f"{SECRET}\n{SECRET}\n"
        assert SECRET not in cmd.show() and SECRET not in repr(cmd)
        assert cmd.show() == " ".join(cmd.argv)


@pytest.mark.parametrize("kind", ["account_add", "password_update"])
def test_a_pre_hashed_or_missing_password_has_no_setup_form(kind: str) -> None:
    hashed = PasswordIntent("hash", Secret("{SHA512-CRYPT}$6$x"))
    for password in (hashed, None):
        with pytest.raises(CommandError, match=f"{kind} a@x.org: a pre-hashed password"):
            command_for(Op(kind, "a@x.org", password=password), SETUP)  # type: ignore[arg-type]


def test_account_removal_always_answers_the_mail_question() -> None:
    keep = command_for(Op("account_del", "a@x.org"), SETUP)
    assert (keep.argv, keep.stdin) == ([*SETUP, "email", "del", "a@x.org"], "n\n")
    # deleteMailData, mail present: -y, nothing to answer
    purge = command_for(Op("account_del", "a@x.org", delete_mail_data=True), SETUP, keep_mail=False)
    assert (purge.argv, purge.stdin) == ([*SETUP, "email", "del", "-y", "a@x.org"], "")
    # deleteMailData but the maildir is missing: -y would fail, "n" removes the account
    missing = command_for(Op("account_del", "a@x.org", delete_mail_data=True), SETUP)
    assert (missing.argv, missing.stdin) == ([*SETUP, "email", "del", "a@x.org"], "n\n")
    # not asked to delete mail: never -y
    assert "-y" not in command_for(Op("account_del", "a@x.org"), SETUP, keep_mail=False).argv


def test_quota_restriction_and_alias_argv() -> None:
    def argv(op: Op) -> list[str]:
        cmd = command_for(op, ["setup"])
        assert cmd.stdin is None
        return cmd.argv[1:]

    assert argv(Op("quota_set", "a@x.org", "2G")) == ["quota", "set", "a@x.org", "2G"]
    assert argv(Op("quota_del", "a@x.org")) == ["quota", "del", "a@x.org"]
    assert argv(Op("restrict_add", "a@x.org", "send")) == [
        "email",
        "restrict",
        "add",
        "send",
        "a@x.org",
    ]
    assert argv(Op("restrict_del", "a@x.org", "receive")) == [
        "email",
        "restrict",
        "del",
        "receive",
        "a@x.org",
    ]
    assert argv(Op("alias_add", "l@x.org", "t@y.org")) == ["alias", "add", "l@x.org", "t@y.org"]
    assert argv(Op("alias_del", "l@x.org", "t@y.org")) == ["alias", "del", "l@x.org", "t@y.org"]


def test_dkim_argv_per_backend() -> None:
    rsa = Op("dkim_add", "x.org", "s1", dkim=DkimSpec("s1", "rsa", 1024))
    ed = Op("dkim_add", "x.org", "s2", dkim=DkimSpec("s2", "ed25519"))
    opendkim = command_for(rsa, ["setup"]).argv
    assert opendkim == [
        *("setup", "config", "dkim", "keysize", "1024"),
        *("selector", "s1", "domain", "x.org"),
    ]
    assert command_for(rsa, ["setup"], "rspamd").argv == [
        *("setup", "config", "dkim", "keytype", "rsa", "keysize", "1024"),
        *("selector", "s1", "domain", "x.org"),
    ]
    # Rspamd refuses a keysize with ed25519
    assert command_for(ed, ["setup"], "rspamd").argv == [
        *("setup", "config", "dkim", "keytype", "ed25519"),
        *("selector", "s2", "domain", "x.org"),
    ]
    with pytest.raises(CommandError, match=r"dkim_add x\.org: OpenDKIM makes RSA keys only"):
        command_for(ed, ["setup"], "opendkim")
    with pytest.raises(CommandError, match=r"dkim_add x\.org: no DKIM spec"):
        command_for(Op("dkim_add", "x.org", "s1"), ["setup"])


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(CommandError, match="no setup command for nonsense"):
        command_for(Op("nonsense", "x"), ["setup"])  # type: ignore[arg-type]


def test_list_commands_are_read_only() -> None:
    assert list_commands(["s"]) == {
        "email": Command(["s", "email", "list"]),
        "alias": Command(["s", "alias", "list"]),
        "send": Command(["s", "email", "restrict", "list", "send"]),
        "receive": Command(["s", "email", "restrict", "list", "receive"]),
    }
