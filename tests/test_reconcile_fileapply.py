"""The file applier op by op: each error it refuses with, and what each op leaves in DMS's
files (found by bench/mutation.py; the formats against real doveadm are in test_reconcile_units).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.dms import files
from agent.dms.fileapply import FileApplier, FileApplyError, FileResult, hash_password
from agent.mailstate.model import PasswordIntent, Secret
from agent.reconcile.plan import Op


def hashed(value: str) -> PasswordIntent:
    return PasswordIntent("hash", Secret(value))


def seeded(tmp_path: Path) -> FileApplier:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / files.ACCOUNTS_FILE).write_text("a@x.org|{PLAIN}a\nb@x.org|{PLAIN}b\n")
    (cfg / files.QUOTAS_FILE).write_text("a@x.org:1G\nb@x.org:2G\n")
    (cfg / files.VIRTUAL_FILE).write_text("l@x.org a@x.org,b@x.org\nsolo@x.org a@x.org\n")
    return FileApplier(cfg, tmp_path / "mail")


def text(fa: FileApplier, name: str) -> str:
    path = fa.config_dir / name
    return path.read_text() if path.exists() else ""


def test_hash_password_keeps_a_hash_and_bcrypts_a_plain_one() -> None:
    assert hash_password(hashed("{SHA512-CRYPT}$6$x")) == "{SHA512-CRYPT}$6$x"
    made = hash_password(PasswordIntent("plain", Secret("pw")))
    assert made.startswith("{BLF-CRYPT}$2b$10$")  # cost 10
    assert made != hash_password(PasswordIntent("plain", Secret("pw")))  # salted


def test_account_ops_and_their_errors(tmp_path: Path) -> None:
    fa = seeded(tmp_path)
    assert fa.apply(Op("account_add", "c@x.org", password=hashed("{PLAIN}c"))) == FileResult(
        "{PLAIN}c"
    )
    assert text(fa, files.ACCOUNTS_FILE).endswith("c@x.org|{PLAIN}c\n")
    with pytest.raises(FileApplyError, match=r"^a@x.org already exists$"):
        fa.apply(Op("account_add", "a@x.org", password=hashed("{PLAIN}x")))
    with pytest.raises(FileApplyError, match=r"^d@x.org: no password to write$"):
        fa.apply(Op("account_add", "d@x.org"))
    assert fa.apply(Op("password_update", "b@x.org", password=hashed("{PLAIN}new"))) == (
        FileResult("{PLAIN}new")
    )
    assert "b@x.org|{PLAIN}new\n" in text(fa, files.ACCOUNTS_FILE)
    assert "a@x.org|{PLAIN}a\n" in text(fa, files.ACCOUNTS_FILE)  # the others untouched
    with pytest.raises(FileApplyError, match=r"^z@x.org does not exist$"):
        fa.apply(Op("password_update", "z@x.org", password=hashed("{PLAIN}z")))
    with pytest.raises(FileApplyError, match=r"^b@x.org: no password to write$"):
        fa.apply(Op("password_update", "b@x.org"))
    with pytest.raises(FileApplyError, match=r"^z@x.org does not exist$"):
        fa.apply(Op("account_del", "z@x.org"))
    with pytest.raises(FileApplyError, match=r"^dkim_add needs DMS's `setup`"):
        fa.apply(Op("dkim_add", "x.org", "s"))


def test_account_removal_cleans_aliases_and_quota_and_keeps_mail_unless_asked(
    tmp_path: Path,
) -> None:
    fa = seeded(tmp_path)
    for who in ("a", "b"):
        (tmp_path / "mail" / "x.org" / who).mkdir(parents=True)
    fa.apply(Op("account_del", "a@x.org"))
    assert text(fa, files.ACCOUNTS_FILE) == "b@x.org|{PLAIN}b\n"
    assert text(fa, files.VIRTUAL_FILE) == "l@x.org b@x.org\n"  # emptied alias gone
    assert text(fa, files.QUOTAS_FILE) == "b@x.org:2G\n"
    assert (tmp_path / "mail" / "x.org" / "a").is_dir()
    fa.apply(Op("account_del", "b@x.org", delete_mail_data=True))
    assert not (tmp_path / "mail" / "x.org" / "b").exists()
    assert (tmp_path / "mail" / "x.org").is_dir()  # only that mailbox
    assert text(fa, files.ACCOUNTS_FILE) == "" and text(fa, files.VIRTUAL_FILE) == ""


def test_quota_ops(tmp_path: Path) -> None:
    fa = seeded(tmp_path)
    fa.apply(Op("quota_set", "a@x.org", "5G"))
    assert text(fa, files.QUOTAS_FILE) == "a@x.org:5G\nb@x.org:2G\n"  # replaced where it stood
    fa.apply(Op("quota_del", "b@x.org"))
    assert text(fa, files.QUOTAS_FILE) == "a@x.org:5G\n"
    before = (fa.config_dir / files.QUOTAS_FILE).stat().st_ino
    fa.apply(Op("quota_del", "b@x.org"))  # no quota: nothing rewritten
    assert (fa.config_dir / files.QUOTAS_FILE).stat().st_ino == before
    for kind in ("quota_set", "quota_del"):
        with pytest.raises(FileApplyError, match=r"^z@x.org does not exist$"):
            fa.apply(Op(kind, "z@x.org", "1G"))  # type: ignore[arg-type]


def test_restriction_ops(tmp_path: Path) -> None:
    fa = seeded(tmp_path)
    fa.apply(Op("restrict_add", "a@x.org", "send"))
    fa.apply(Op("restrict_add", "a@x.org", "send"))  # once only
    fa.apply(Op("restrict_add", "b@x.org", "receive"))
    assert text(fa, files.SEND_ACCESS_FILE) == "a@x.org \t\t REJECT\n"  # as DMS writes it
    assert text(fa, files.RECEIVE_ACCESS_FILE) == "b@x.org \t\t REJECT\n"
    fa.apply(Op("restrict_del", "a@x.org", "send"))
    assert text(fa, files.SEND_ACCESS_FILE) == ""
    before = (fa.config_dir / files.RECEIVE_ACCESS_FILE).stat().st_ino
    fa.apply(Op("restrict_del", "a@x.org", "receive"))  # not restricted: nothing rewritten
    assert (fa.config_dir / files.RECEIVE_ACCESS_FILE).stat().st_ino == before


def test_alias_ops_and_their_errors(tmp_path: Path) -> None:
    fa = seeded(tmp_path)
    fa.apply(Op("alias_add", "l@x.org", "c@y.org"))
    fa.apply(Op("alias_add", "new@x.org", "a@x.org"))
    assert text(fa, files.VIRTUAL_FILE) == (
        "l@x.org a@x.org,b@x.org,c@y.org\nsolo@x.org a@x.org\nnew@x.org a@x.org\n"
    )
    with pytest.raises(FileApplyError, match=r"^l@x.org already forwards to b@x.org$"):
        fa.apply(Op("alias_add", "l@x.org", "b@x.org"))
    with pytest.raises(FileApplyError, match=r"^alias a@x.org is an account$"):
        fa.apply(Op("alias_add", "a@x.org", "c@y.org"))
    fa.apply(Op("alias_del", "l@x.org", "a@x.org"))
    fa.apply(Op("alias_del", "solo@x.org", "a@x.org"))  # its last recipient: the alias goes
    assert text(fa, files.VIRTUAL_FILE) == "l@x.org b@x.org,c@y.org\nnew@x.org a@x.org\n"


def test_a_fresh_nested_folder_a_missing_maildir_and_a_located_refusal(tmp_path: Path) -> None:
    fa = FileApplier(tmp_path / "new" / "cfg", tmp_path / "mail")
    fa.apply(Op("account_add", "a@x.org", password=hashed("{PLAIN}a")))  # folders made
    fa.apply(Op("account_del", "a@x.org", delete_mail_data=True))  # no maildir: fine
    assert text(fa, files.ACCOUNTS_FILE) == ""
    broken = fa.config_dir / files.ACCOUNTS_FILE
    broken.write_text("b@x.org|{PLAIN}b\nthis line is broken\n")
    with pytest.raises(FileApplyError) as caught:
        fa.apply(Op("account_add", "c@x.org", password=hashed("{PLAIN}c")))
    assert str(caught.value).startswith(f"not rewriting {files.ACCOUNTS_FILE}: {broken}:2")


def test_a_removal_checks_every_file_before_rewriting_any(tmp_path: Path) -> None:
    fa = seeded(tmp_path)
    (fa.config_dir / files.QUOTAS_FILE).write_text("a@x.org:1G\nA@x.org:2G\n")  # a repeat
    before = {n: (fa.config_dir / n).stat().st_ino for n in files.NATIVE_FILES[:3]}
    with pytest.raises(FileApplyError, match=r"^not rewriting dovecot-quotas.cf: .*:2: "):
        fa.apply(Op("account_del", "a@x.org"))
    assert {n: (fa.config_dir / n).stat().st_ino for n in files.NATIVE_FILES[:3]} == before


def test_a_big_file_is_rewritten_whole_in_dms_form(tmp_path: Path) -> None:
    fa = seeded(tmp_path)
    lines = [f"u{i}@x.org|{{PLAIN}}{i}\n" for i in range(5000)]
    path = fa.config_dir / files.ACCOUNTS_FILE
    path.write_text("# a comment DMS's files may hold\n" + "".join(lines).replace("\n", "\r\n", 1))
    fa.apply(Op("password_update", "u2500@x.org", password=hashed("{PLAIN}new")))
    lines[2500] = "u2500@x.org|{PLAIN}new\n"
    assert path.read_text() == "".join(lines)  # canonical: no comment, no CR


def test_a_line_appended_between_check_and_rewrite_stops_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both passes read one descriptor; DMS appending (`>>`) in between is seen, not lost: an
    unreadable appended line refuses the write and the file keeps everything."""
    fa = seeded(tmp_path)
    path = fa.config_dir / files.ACCOUNTS_FILE
    check = FileApplier._scan

    def check_then_append(self: FileApplier, *args: object) -> object:
        found = check(self, *args)  # type: ignore[arg-type]
        with path.open("a") as f:
            f.write("not an account line\n")
        return found

    monkeypatch.setattr(FileApplier, "_scan", check_then_append)
    inode = path.stat().st_ino
    # the line is named by the file's name (the check names its full path)
    with pytest.raises(
        FileApplyError, match=r"^not rewriting postfix-accounts\.cf: postfix-accounts\.cf:3: "
    ):
        fa.apply(Op("account_add", "c@x.org", password=hashed("{PLAIN}c")))
    assert path.stat().st_ino == inode
    assert path.read_text() == "a@x.org|{PLAIN}a\nb@x.org|{PLAIN}b\nnot an account line\n"
