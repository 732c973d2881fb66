"""DMS's native files: tolerant parsing with line numbers, canonical writing, round trips."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.dms import files
from agent.errors import InvalidDocument

HASH = "{SHA512-CRYPT}$6$salt$abcdefghijklmnopqrstuvwxyz0123456789./ABCDEFGHIJ"


def test_accounts_round_trip_identical() -> None:
    text = (
        f"alice@example.com|{HASH}\n"
        "bob@example.com|{BLF-CRYPT}$2b$12$abcdefghij|userdb_quota_rule=*:storage=1G\n"
    )
    parsed = files.parse_accounts(text)
    assert parsed.errors == []
    assert [e.address for e in parsed.entries] == ["alice@example.com", "bob@example.com"]
    assert parsed.entries[0].hash == HASH
    assert parsed.entries[0].extra is None
    assert parsed.entries[1].extra == "userdb_quota_rule=*:storage=1G"
    assert [e.line for e in parsed.entries] == [1, 2]
    assert files.write_accounts(parsed.entries) == text


def test_accounts_hash_never_in_repr() -> None:
    (entry,) = files.parse_accounts(f"a@b.c|{HASH}").raise_on_error()
    assert HASH not in repr(entry)


def test_tolerant_of_comments_blank_lines_crlf_trailing_space_and_no_final_newline() -> None:
    text = (
        f"# managed by hand\r\n\r\n  \nalice@example.com|{HASH}   \r\n"
        f"   # indented comment\nb@c.d|{HASH}"
    )
    parsed = files.parse_accounts(text)
    assert parsed.errors == []
    assert [(e.address, e.line) for e in parsed.entries] == [
        ("alice@example.com", 4),
        ("b@c.d", 6),
    ]
    # writing gives the canonical form
    assert files.write_accounts(parsed.entries) == f"alice@example.com|{HASH}\nb@c.d|{HASH}\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("alice@example.com", "expected `email|{SCHEME}hash`"),
        ("alice@example.com|$6$nohashscheme", "must be `{SCHEME}hash`"),
        ("alice@example.com|{SHA512-CRYPT}", "must be `{SCHEME}hash`"),
        ("|{SHA512-CRYPT}$6$x", "address field"),
        ("al ice@example.com|{SHA512-CRYPT}$6$x", "address field"),
        ("alice@example.com|{SHA512-CRYPT}$6$ x", "whitespace"),
    ],
)
def test_accounts_bad_line_located(line: str, message: str) -> None:
    text = f"# header\nok@example.com|{HASH}\n{line}\nz@example.com|{HASH}\n"
    parsed = files.parse_accounts(text, "cfg/postfix-accounts.cf")
    assert [e.address for e in parsed.entries] == ["ok@example.com", "z@example.com"]
    (err,) = parsed.errors
    assert err.file == "cfg/postfix-accounts.cf"
    assert err.line == 3
    assert message in err.message
    with pytest.raises(InvalidDocument) as exc:
        parsed.raise_on_error()
    assert str(exc.value).startswith("cfg/postfix-accounts.cf:3: ")


def test_accounts_duplicate_case_insensitive_names_first_line() -> None:
    parsed = files.parse_accounts(f"a@b.cd|{HASH}\n\nA@B.cd|{HASH}\n")
    (err,) = parsed.errors
    assert err.line == 3
    assert "line 1" in err.message


def test_virtual_round_trip_and_key_forms() -> None:
    text = (
        "postmaster@example.com alice@example.com\n"
        "@example.org alice@example.com,bob@example.com\n"
        "abuse alice@example.com\n"
    )
    parsed = files.parse_virtual(text)
    assert parsed.errors == []
    assert [(e.alias, e.recipients) for e in parsed.entries] == [
        ("postmaster@example.com", ("alice@example.com",)),
        ("@example.org", ("alice@example.com", "bob@example.com")),
        ("abuse", ("alice@example.com",)),
    ]
    assert files.write_virtual(parsed.entries) == text


def test_virtual_tolerates_postfix_spacing_and_continuation_lines() -> None:
    text = "a@x.org\tb@x.org, c@x.org ,\n   d@x.org\n# c\ne@x.org f@x.org"
    parsed = files.parse_virtual(text)
    assert parsed.errors == []
    assert [(e.alias, e.recipients, e.line) for e in parsed.entries] == [
        ("a@x.org", ("b@x.org", "c@x.org", "d@x.org"), 1),
        ("e@x.org", ("f@x.org",), 4),
    ]


def test_virtual_errors() -> None:
    parsed = files.parse_virtual("a@x.org\nb@x.org ,\nc@x.org d@x.org\nC@X.org e@x.org\n")
    assert [(e.line, e.message.split(" ")[0]) for e in parsed.errors] == [
        (1, "expected"),
        (2, "no"),
        (4, "'C@X.org'"),
    ]


def test_quotas_round_trip_and_errors() -> None:
    text = "alice@example.com:2G\nbob@example.com:0\n"
    parsed = files.parse_quotas(text)
    assert [(e.address, e.quota) for e in parsed.entries] == [
        ("alice@example.com", "2G"),
        ("bob@example.com", "0"),
    ]
    assert files.write_quotas(parsed.entries) == text
    bad = files.parse_quotas("alice@example.com 2G\n:1G\nx@y.z:\nx@y.z:1 G\n")
    assert [e.line for e in bad.errors] == [1, 2, 3, 4]
    assert bad.entries == []


def test_access_round_trip_and_tolerance() -> None:
    text = "alice@example.com \t\t REJECT\nbob@example.com \t\t REJECT\n"  # as DMS writes
    parsed = files.parse_access(text, files.SEND_ACCESS_FILE)
    assert [(e.address, e.action) for e in parsed.entries] == [
        ("alice@example.com", "REJECT"),
        ("bob@example.com", "REJECT"),
    ]
    assert files.write_access(parsed.entries) == text
    # written by hand or by older agents: tabs only, trailing blanks
    loose = files.parse_access("carol@example.com\t\tREJECT \n")
    assert [(e.address, e.action) for e in loose.entries] == [("carol@example.com", "REJECT")]
    bad = files.parse_access("\n\nlonely@example.com\n")
    assert [(e.line, e.file) for e in bad.errors] == [(3, files.SEND_ACCESS_FILE)]


def test_empty_files() -> None:
    for parse in (files.parse_accounts, files.parse_virtual, files.parse_quotas):
        assert parse("").entries == []
        assert parse("\n# only a comment\n").errors == []
    assert files.write_accounts([]) == ""


def _word(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=1, max_size=max_size)


_address = st.builds(
    "{}@{}.{}".format,
    _word("abcxyz019._+-", 10),
    _word("abcxyz019-", 10),
    _word("comrg", 4),
)
_hash = st.builds("{{{}}}{}".format, _word("ABCZ019-", 12), _word("abcXYZ019$./", 40))


@given(st.dictionaries(_address, st.tuples(_hash, st.one_of(st.none(), _address))))
@settings(max_examples=60, deadline=None)
def test_accounts_round_trip_property(data: dict[str, tuple[str, str | None]]) -> None:
    entries = [files.AccountLine(a, h, x) for a, (h, x) in data.items()]
    text = files.write_accounts(entries)
    parsed = files.parse_accounts(text)
    assert parsed.errors == []
    assert files.write_accounts(parsed.entries) == text


@given(st.dictionaries(_address, st.lists(_address, min_size=1, max_size=4)))
@settings(max_examples=60, deadline=None)
def test_virtual_round_trip_property(data: dict[str, list[str]]) -> None:
    entries = [files.AliasLine(a, tuple(r)) for a, r in data.items()]
    text = files.write_virtual(entries)
    assert files.write_virtual(files.parse_virtual(text).raise_on_error()) == text


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_garbage_never_crashes_and_errors_are_located(text: str) -> None:
    for parse in (
        files.parse_accounts,
        files.parse_virtual,
        files.parse_quotas,
        files.parse_access,
    ):
        parsed = parse(text, "f.cf")
        n_lines = text.count("\n") + 1
        for err in parsed.errors:
            assert err.file == "f.cf"
            assert err.line is not None and 1 <= err.line <= n_lines


def test_utf8_bytes_read_line_by_line_as_the_decoded_text() -> None:
    """The file applier reads DMS's files as bytes, a line at a time: same entries, same
    located errors as the text (a BOM, CR, comments, continuations, non-ASCII included)."""
    text = (
        "\ufeffa@x.org|{PLAIN}é\r\n# note\nbroken line\n\n"
        "l@x.org a@x.org,\n  b@x.org\nA@x.org|{PLAIN}a\nq@x.org:1G\n"
    )
    data = text.encode()
    for entries in (files.iter_accounts, files.iter_virtual, files.iter_quotas):
        assert list(entries(data, "f")) == list(entries(text, "f"))
        assert list(entries(io.BytesIO(data), "f")) == list(entries(text, "f"))  # a file's lines
    with pytest.raises(UnicodeDecodeError):
        list(files.iter_accounts(b"a@x.org|{PLAIN}a\n\xff\n", "f"))
