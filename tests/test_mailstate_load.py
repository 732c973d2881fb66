"""Several documents into one desired state: classification, merge, cross-document rules."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import InvalidDocument, LocatedError
from agent.mailstate import load
from agent.mailstate.load import NO_PASSWORD, desired_from_documents, find_loops, generation
from agent.sources.document import SourceDocument

HEAD = "apiVersion: dms-agent/v1\n"
HASH = "{SHA512-CRYPT}$6$salt$0123456789abcdefghijklmnopqrstuvwxyz"


def doc(name: str, text: str, origin: str | None = None, secret: bool = False) -> SourceDocument:
    return SourceDocument(origin or f"cm[{name}]", name, text, secret)


def errors_of(*docs: SourceDocument) -> list[LocatedError]:
    with pytest.raises(InvalidDocument) as exc:
        desired_from_documents(docs)
    return exc.value.errors


def test_state_plus_passwords_with_skew_is_valid_with_warnings_and_pending() -> None:
    desired = desired_from_documents(
        [
            doc("mailserver.yaml", HEAD + "accounts:\n  alice@x.com: {}\n  bob@x.com: {}\n"),
            doc(
                "passwords.yaml",
                "alice@x.com: {password: pw}\nghost@x.com: {password: boo}\n",
                secret=True,
            ),
        ]
    )
    assert set(desired.state.accounts) == {"alice@x.com", "bob@x.com"}
    assert set(desired.state.passwords) == {"alice@x.com"}
    assert desired.pending == {"bob@x.com": NO_PASSWORD}
    (warning,) = desired.warnings
    assert warning.startswith("cm[passwords.yaml]:2: ghost@x.com: ")
    assert desired.state.origins["alice@x.com"] == "cm[mailserver.yaml]:3"
    assert len(desired.generation) == 16


def test_account_declared_in_two_documents_names_both() -> None:
    a = doc("a.yaml", HEAD + "accounts:\n  alice@x.com: {}\n", "configmap mail/a[a.yaml]")
    b = doc("b.yml", HEAD + "# b\naccounts:\n  bob@x.com: {}\n  ALICE@x.com: {}\n", "cm/b")
    (err,) = errors_of(a, b)
    assert (err.file, err.line, err.field) == ("cm/b", 5, "alice@x.com")
    assert "configmap mail/a[a.yaml]:3" in err.message
    assert str(err).startswith("cm/b:5: alice@x.com: account declared twice")


def test_alias_and_password_declared_twice_name_both() -> None:
    errors = errors_of(
        doc("a.yaml", HEAD + "aliases:\n  p@x.com: [a@y.com]\n"),
        doc("b.yaml", HEAD + "aliases:\n  P@x.com: [b@y.com]\n"),
        doc("passwords.yaml", "a@x.com: {password: one}\n"),
        doc("more-passwords.yaml", "\n\na@x.com: {password: two}\n"),
    )
    assert [(e.file, e.line, e.message) for e in errors] == [
        ("cm[b.yaml]", 3, "alias declared twice: here and at cm[a.yaml]:3"),
        ("cm[more-passwords.yaml]", 3, "password declared twice: here and at cm[passwords.yaml]:1"),
    ]
    assert "one" not in str(errors) and "two" not in str(errors)


def test_domains_may_repeat_identically_but_not_differently() -> None:
    same = HEAD + "domains:\n  x.com: {dkim: {}}\n"
    desired_from_documents([doc("a.yaml", same), doc("b.yaml", same)])
    (err,) = errors_of(
        doc("a.yaml", same), doc("b.yaml", HEAD + "domains:\n  x.com: {dkim: {keySize: 4096}}\n")
    )
    assert (err.file, err.line) == ("cm[b.yaml]", 3)
    assert "cm[a.yaml]:3" in err.message


def test_alias_equal_to_account_even_across_documents() -> None:
    (err,) = errors_of(
        doc("a.yaml", HEAD + "accounts:\n  alice@x.com: {}\n"),
        doc("b.yaml", HEAD + "aliases:\n  Alice@X.com: [bob@y.com]\n"),
    )
    assert (err.file, err.line, err.field) == ("cm[b.yaml]", 3, "alice@x.com")
    assert "cm[a.yaml]:3" in err.message


@pytest.mark.parametrize(
    ("aliases", "loop"),
    [
        ("  a@x.com: [a@x.com]\n", "a@x.com -> a@x.com"),
        ("  a@x.com: [b@x.com]\n  b@x.com: [c@x.com]\n  c@x.com: [a@x.com]\n", "a@x.com -> b@x"),
    ],
)
def test_alias_loops_are_errors(aliases: str, loop: str) -> None:
    errors = errors_of(doc("s.yaml", HEAD + "aliases:\n" + aliases))
    assert len(errors) == 1
    assert loop in errors[0].message
    assert errors[0].line == 3


@pytest.mark.parametrize(
    ("aliases", "loop"),
    [
        ("  '@x.com': [info@x.com]\n", "@x.com -> @x.com"),
        ("  a@x.com: [z@y.com]\n  '@y.com': [a@x.com]\n", "@y.com -> a@x.com -> @y.com"),
    ],
)
def test_loops_through_a_catch_all_warn(aliases: str, loop: str) -> None:
    desired = desired_from_documents([doc("s.yaml", HEAD + "aliases:\n" + aliases)])
    assert any(f"alias loop through a catch-all: {loop}" in w for w in desired.warnings)


def test_catch_all_to_an_account_in_its_domain_is_no_loop() -> None:
    desired = desired_from_documents(
        [doc("s.yaml", HEAD + "accounts:\n  info@x.com: {}\naliases:\n  '@x.com': [info@x.com]\n")]
    )
    assert desired.state.aliases == {"@x.com": ("info@x.com",)}


def test_find_loops_long_chain_is_iterative() -> None:
    edges = {f"a{i}": [f"a{i + 1}"] for i in range(5000)}
    assert find_loops(edges) == []
    edges["a5000"] = ["a0"]
    (loop,) = find_loops(edges)
    assert len(loop) == 5001


def test_dangling_recipient_in_a_local_domain_warns() -> None:
    desired = desired_from_documents(
        [
            doc(
                "s.yaml",
                HEAD
                + "accounts:\n  a@x.com: {}\naliases:\n  p@x.com: [typo@x.com, ext@gmail.com]\n",
            )
        ]
    )
    (warning,) = [w for w in desired.warnings if "typo" in w]
    assert warning.startswith("cm[s.yaml]:5: p@x.com: ")
    assert not any("gmail" in w for w in desired.warnings)


def test_policy_can_only_tighten() -> None:
    def policy(*values: str) -> tuple[bool | None, bool | None]:
        docs = [doc(f"{i}.yaml", HEAD + v) for i, v in enumerate(values)]
        p = desired_from_documents(docs).state.policy
        return p.prune, p.delete_mail_data

    assert policy("") == (None, None)
    assert policy("policy: {prune: true}\n") == (True, None)
    assert policy("policy: {prune: true}\n", "policy: {prune: false}\n") == (False, None)
    assert policy("policy: {deleteMailData: true}\n", "policy: {}\n") == (None, True)


def test_native_files_as_desired_source() -> None:
    desired = desired_from_documents(
        [
            doc("postfix-accounts.cf", f"Alice@x.com|{HASH}\nbob@x.com|{HASH}|userdb_x=1\n"),
            doc(
                "postfix-virtual.cf", "# aliases\npostmaster@x.com alice@x.com\n@y.com bob@x.com\n"
            ),
            doc("dovecot-quotas.cf", "alice@x.com:2G\n"),
            doc("postfix-send-access.cf", "bob@x.com\t\tREJECT\n"),
            doc("postfix-receive-access.cf", "bob@x.com\t\tREJECT\n"),
        ]
    )
    state = desired.state
    assert state.accounts["alice@x.com"].quota == "2G"
    assert state.accounts["bob@x.com"].restrict == {"send", "receive"}
    assert state.aliases == {"postmaster@x.com": ("alice@x.com",), "@y.com": ("bob@x.com",)}
    assert {a: (p.kind, p.secret.value) for a, p in state.passwords.items()} == {
        "alice@x.com": ("hash", HASH),
        "bob@x.com": ("hash", HASH),
    }
    assert desired.pending == {}
    assert any("extra Dovecot field" in w for w in desired.warnings)
    assert state.origins["postmaster@x.com"] == "cm[postfix-virtual.cf]:2"


def test_native_and_state_conflicts_name_both() -> None:
    errors = errors_of(
        doc("s.yaml", HEAD + "accounts:\n  alice@x.com: {quota: 1G, restrict: [send]}\n"),
        doc("dovecot-quotas.cf", "alice@x.com:2G\nnobody@x.com:1G\n"),
        doc("postfix-send-access.cf", "\nalice@x.com\t\tREJECT\n"),
        doc("postfix-accounts.cf", f"alice@x.com|{HASH}\n"),
    )
    assert sorted((e.file, e.line, e.message) for e in errors) == [
        ("cm[dovecot-quotas.cf]", 1, "quota set twice: here and at cm[s.yaml]:3"),
        ("cm[dovecot-quotas.cf]", 2, "quota for an account no document declares"),
        ("cm[postfix-accounts.cf]", 1, "account declared twice: here and at cm[s.yaml]:3"),
        ("cm[postfix-send-access.cf]", 2, "send set twice: here and at cm[s.yaml]:3"),
    ]


def test_native_syntax_errors_are_located() -> None:
    errors = errors_of(
        doc("postfix-accounts.cf", f"ok@x.com|{HASH}\nbad@|{HASH}\nnohash@x.com|plain\n"),
        doc("postfix-virtual.cf", "a@x.com b@\n"),
        doc("dovecot-quotas.cf", "ok@x.com:12\n"),
        doc("postfix-send-access.cf", "ok@x.com\t\tOK\n"),
    )
    assert [(e.file, e.line) for e in errors] == [
        ("cm[postfix-accounts.cf]", 2),
        ("cm[postfix-accounts.cf]", 3),
        ("cm[postfix-virtual.cf]", 1),
        ("cm[dovecot-quotas.cf]", 1),
        ("cm[postfix-send-access.cf]", 1),
    ]


def test_classification_by_name() -> None:
    desired = desired_from_documents(
        [
            doc("README.md", "# not state"),
            doc("mailserver.YML", HEAD + "accounts:\n  a@x.com: {}\n"),
            doc("secret.yaml", "a@x.com: {password: pw}\n", secret=True),
            doc("pw.yml", HEAD + "b@x.com: {password: pw}\n", secret=True),
            doc("in-secret.yml", HEAD + "accounts:\n  b@x.com: {}\n", secret=True),
        ]
    )
    assert set(desired.state.passwords) == {"a@x.com", "b@x.com"}
    assert set(desired.state.accounts) == {"a@x.com", "b@x.com"}
    assert desired.warnings == ["cm[README.md]: (document): not a state document; ignored"]
    # a YAML document that is neither: the missing apiVersion is the error
    (err,) = errors_of(doc("other.yaml", "a@x.com: {password: pw}\nb@x.com: {password: p}\n"))
    assert (err.field, err.line) == ("", 1)
    assert "apiVersion" in err.message and "password" in err.message


def test_every_document_error_is_reported_and_nothing_applies() -> None:
    errors = errors_of(
        doc("a.yaml", HEAD + "accounts:\n  a@: {}\n"),
        doc("b.yaml", "apiVersion: [\n"),
        doc("passwords.yaml", "a@x.com: pw\n"),
    )
    assert [e.file for e in errors] == ["cm[a.yaml]", "cm[b.yaml]", "cm[passwords.yaml]"]


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts of the documents parsed (not found in the cache), in order."""
    texts: list[str] = []
    real = load._parse_document

    def counting(d: SourceDocument) -> Any:
        texts.append(d.text)
        return real(d)

    monkeypatch.setattr(load, "_parse_document", counting)
    return texts


def test_unchanged_documents_are_parsed_once_and_changes_are_seen(parsed: list[str]) -> None:
    state = doc("s.yaml", HEAD + "accounts:\n  a@x.com: {}\n# unique to this test\n")
    first = desired_from_documents([state, doc("passwords.yaml", "a@x.com: {password: one}\n")])
    second = desired_from_documents([state, doc("passwords.yaml", "a@x.com: {password: two}\n")])
    assert first.state.accounts == second.state.accounts
    assert parsed.count(state.text) == 1
    assert len(parsed) == 3
    assert first.state.passwords["a@x.com"].secret.value == "one"
    assert second.state.passwords["a@x.com"].secret.value == "two"
    # the same text under another origin is another document (origins appear in messages)
    moved = desired_from_documents([doc("s.yaml", state.text, "elsewhere")])
    assert moved.state.origins["a@x.com"] == "elsewhere:3"
    # a document turned invalid is rejected even though its old text parsed before
    with pytest.raises(InvalidDocument):
        desired_from_documents([doc("s.yaml", HEAD + "accounts:\n  a@: {}\n")])


def test_parsed_documents_kept_for_reuse_are_bounded_by_their_size(
    parsed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past generations of a big document are not kept: it is parsed again instead."""
    monkeypatch.setattr(load, "_CACHE", load._FragmentCache(chars=300))
    accounts = "".join(f"  u{i}@x.com: {{}}\n" for i in range(20))  # 300+ characters
    big = doc("big.yaml", HEAD + "accounts:\n" + accounts)
    small = doc("small.yaml", HEAD + "accounts:\n  s@x.com: {}\n")
    for _ in range(2):
        desired_from_documents([big, small])
    assert parsed.count(big.text) == 2 and parsed.count(small.text) == 1
    others = [doc(f"o{i}.yaml", HEAD + f"accounts:\n  o{i}@x.com: {{}}\n") for i in range(9)]
    desired_from_documents(others)  # 9 x ~50 characters: the oldest drop out, small first
    desired_from_documents([small])
    assert parsed.count(small.text) == 2


def test_generation_is_order_independent_and_content_sensitive() -> None:
    a = doc("a.yaml", HEAD)
    b = doc("b.yaml", HEAD + "accounts: {}\n")
    assert generation([a, b]) == generation([b, a])
    assert generation([a]) != generation([b])
    p1 = doc("passwords.yaml", "a@x.com: {password: one}\n", secret=True)
    # secret documents are keyed: the digest is not a plain hash of the password text
    assert generation([p1]) == generation([p1])
    assert desired_from_documents([a, p1]).generation == desired_from_documents([p1, a]).generation


_yamlish = st.lists(
    st.sampled_from([*"ab@.:-_ {}[]'\"#|,\n\t0123!&*?>", "apiVersion", "é", "  ", "\n  - "]),
    max_size=60,
).map("".join)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "s.yaml",
                    "passwords.yaml",
                    "postfix-accounts.cf",
                    "postfix-virtual.cf",
                    "dovecot-quotas.cf",
                ]
            ),
            _yamlish,
        ),
        max_size=3,
    )
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_never_crashes_and_errors_are_located(items: list[tuple[str, str]]) -> None:
    docs = [
        doc(name, HEAD + text if i % 2 else text, f"o{i}") for i, (name, text) in enumerate(items)
    ]
    try:
        desired_from_documents(docs)
    except InvalidDocument as exc:
        assert exc.errors
        for err in exc.errors:
            assert err.file in {d.origin for d in docs}
            lines = docs[int(err.file[1:])].text.count("\n") + 1
            assert err.line is not None and 1 <= err.line <= lines
            assert err.message


@given(
    st.dictionaries(
        st.text(alphabet="abAB@.-x1", min_size=1, max_size=12),
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.text(max_size=5))),
        max_size=6,
    )
)
@settings(max_examples=200, deadline=None)
def test_structured_garbage_accounts_never_crash(accounts: dict[str, object]) -> None:
    import yaml

    text = yaml.safe_dump({"apiVersion": "dms-agent/v1", "accounts": accounts})
    try:
        desired_from_documents([doc("s.yaml", text)])
    except InvalidDocument as exc:
        for err in exc.errors:
            assert err.line is not None and err.field


_NAMES = ["s.yaml", "passwords.yaml", "postfix-accounts.cf", "postfix-virtual.cf"]


@given(st.text(), st.sampled_from(_NAMES), st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_text_never_crashes_and_errors_name_a_real_line(
    text: str, name: str, head: bool
) -> None:
    if head:
        text = HEAD + text
    if name.endswith(".yaml"):  # YAML counts \r, NEL and the Unicode separators as breaks
        n_lines = len(re.split("\r\n|[\r\n\x85\u2028\u2029]", text))
    else:
        n_lines = text.count("\n") + 1
    try:
        desired_from_documents([doc(name, text, "o")])
    except InvalidDocument as exc:
        for err in exc.errors:
            assert err.file == "o"
            assert err.line is not None and 1 <= err.line <= n_lines
