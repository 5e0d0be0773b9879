"""Payload kinds: every field rule holds for decoding (peer error) and encoding
(caller error) alike, exactly at its limit."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import canonical
from storage.errors import InvalidArgument, LocalError, MalformedEntry, RemoteError
from storage.payloads import (
    KNOWN_KINDS,
    MAX_BIO_CHARS,
    MAX_CW_CHARS,
    MAX_EMOJI_CHARS,
    MAX_MENTIONS,
    MAX_NAME_CHARS,
    MAX_PAYLOAD_SIZE,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
    Block,
    Delete,
    Follow,
    Payload,
    Post,
    Profile,
    React,
    Repost,
    Unblock,
    Unfollow,
    UnknownPayload,
    decode_payload_untrusted,
    encode_payload,
)

ID_A = bytes(range(32))
ID_B = bytes(range(1, 33))


def ids(count: int) -> list[bytes]:
    return [n.to_bytes(32, "big") for n in range(count)]


def decode(kind: str, fields: object) -> Payload:
    return decode_payload_untrusted(kind, canonical.packb(fields))


def from_fields(kind: str, fields: dict[str, Any]) -> Payload:
    """The payload object a caller would build with these field values."""
    classes: dict[str, Any] = {
        "post": Post,
        "repost": Repost,
        "react": React,
        "follow": Follow,
        "unfollow": Unfollow,
        "block": Block,
        "unblock": Unblock,
        "profile": Profile,
        "delete": Delete,
    }
    args = {
        key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()
    }
    payload: Payload = classes[kind](**args)
    return payload


EXAMPLES: list[Payload] = [
    Post("hello"),
    Post("line one\nline two\tand a tab"),
    Post("a reply", root=ID_A, parent=ID_B),
    Post("a reply to the root", root=ID_A, parent=ID_A),
    Post("all fields", root=ID_A, parent=ID_B, mentions=(ID_A, ID_B), tags=("x", "y"), cw="cw"),
    Post("\u00e9\u4e2d\U0001f600 unicode"),
    Repost(entry=ID_A, author=ID_B),
    React(entry=ID_A, author=ID_B, emoji="\u2764\ufe0f"),
    Follow(feed=ID_A),
    Unfollow(feed=ID_A),
    Block(feed=ID_B),
    Unblock(feed=ID_B),
    Profile(name="Ada", bio="Counts.\nAlso computes."),
    Profile(name="only a name"),
    Profile(bio="only a bio"),
    Profile(),
    Delete(entry=ID_A),
    UnknownPayload(kind="poll", fields={"options": ["a", "b"], "n": 2}),
    UnknownPayload(kind="x", fields={}),
]


@pytest.mark.parametrize("payload", EXAMPLES, ids=repr)
def test_every_kind_round_trips(payload: Payload) -> None:
    data = encode_payload(payload)
    assert decode_payload_untrusted(payload.kind, data) == payload


def test_examples_cover_every_known_kind() -> None:
    assert {payload.kind for payload in EXAMPLES} >= KNOWN_KINDS


def test_optional_fields_are_left_out_not_written_as_nil() -> None:
    assert canonical.unpack_untrusted(encode_payload(Post("x")), max_size=99, what="t") == {
        "text": "x"
    }
    assert encode_payload(Profile(name="n")) == canonical.packb({"name": "n"})


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"text": "x", "root": None, "parent": None}, "post"),
        ({"text": "x", "mentions": []}, "post"),
        ({"text": "x", "tags": []}, "post"),
        ({"name": None}, "profile"),
    ],
    ids=repr,
)
def test_nil_or_empty_optional_fields_are_rejected(fields: dict[str, Any], kind: str) -> None:
    with pytest.raises(MalformedEntry) as info:
        decode(kind, fields)
    assert info.value.problem == "bad-payload"


# --- bounds: (kind, fields) exactly at a limit, and the same one past it ------------

AT_LIMIT: list[tuple[str, dict[str, Any]]] = [
    ("post", {"text": "a" * MAX_TEXT_CHARS}),
    ("post", {"text": "\U0001f600" * (MAX_PAYLOAD_SIZE // 4 - 4)}),  # chars, not bytes
    ("post", {"text": "x", "cw": "c" * MAX_CW_CHARS}),
    ("post", {"text": "x", "tags": [f"t{n}" for n in range(MAX_TAGS)]}),
    ("post", {"text": "x", "tags": ["t" * MAX_TAG_CHARS]}),
    ("post", {"text": "x", "tags": ["caf\u00e9", "a-b_c", "\u4e2d"]}),
    # Only ASCII capitals are refused, so that the rule does not depend on the
    # Unicode version of the Python that checks it.
    ("post", {"text": "x", "tags": ["\u00c9t\u00c9", "\u0130"]}),
    ("post", {"text": "x", "mentions": ids(MAX_MENTIONS)}),
    ("react", {"entry": ID_A, "author": ID_B, "emoji": "e" * MAX_EMOJI_CHARS}),
    ("profile", {"name": "n" * MAX_NAME_CHARS}),
    ("profile", {"bio": "b" * MAX_BIO_CHARS}),
    ("profile", {"bio": "two\nlines\tand a tab"}),
]

PAST_LIMIT: list[tuple[str, dict[str, Any]]] = [
    ("post", {"text": "a" * (MAX_TEXT_CHARS + 1)}),
    ("post", {"text": ""}),
    ("post", {"text": "x", "cw": "c" * (MAX_CW_CHARS + 1)}),
    ("post", {"text": "x", "cw": ""}),
    ("post", {"text": "x", "tags": [f"t{n}" for n in range(MAX_TAGS + 1)]}),
    ("post", {"text": "x", "tags": ["t" * (MAX_TAG_CHARS + 1)]}),
    ("post", {"text": "x", "tags": [""]}),
    ("post", {"text": "x", "tags": ["Upper"]}),
    ("post", {"text": "x", "tags": ["ideographic\u3000space"]}),
    ("post", {"text": "x", "tags": ["line\u2028separator"]}),
    ("post", {"text": "x", "tags": ["ogham\u1680space"]}),
    ("post", {"text": "x", "tags": ["#hash"]}),
    ("post", {"text": "x", "tags": ["two words"]}),
    ("post", {"text": "x", "tags": ["nb\u00a0sp"]}),
    ("post", {"text": "x", "tags": ["dup", "dup"]}),
    ("post", {"text": "x", "tags": [7]}),
    ("post", {"text": "x", "mentions": ids(MAX_MENTIONS + 1)}),
    ("post", {"text": "x", "mentions": [ID_A, ID_B, ID_A]}),
    ("post", {"text": "x", "mentions": [ID_A[:31]]}),
    ("post", {"text": "x", "mentions": [ID_A + b"\x00"]}),
    ("post", {"text": "x", "root": ID_A}),
    ("post", {"text": "x", "parent": ID_A}),
    ("post", {"text": "x", "root": ID_A[:31], "parent": ID_B}),
    ("post", {"text": b"bytes are not text"}),
    ("post", {"text": 5}),
    ("repost", {"entry": ID_A, "author": ID_B[:31]}),
    ("repost", {"entry": "a" * 32, "author": ID_B}),
    ("react", {"entry": ID_A, "author": ID_B, "emoji": "e" * (MAX_EMOJI_CHARS + 1)}),
    ("react", {"entry": ID_A, "author": ID_B, "emoji": ""}),
    ("follow", {"feed": ID_A[:31]}),
    ("unfollow", {"feed": ID_A + b"\x00"}),
    ("block", {"feed": None}),
    ("unblock", {"feed": "feed"}),
    ("delete", {"entry": ID_A[:16]}),
    ("profile", {"name": "n" * (MAX_NAME_CHARS + 1)}),
    ("profile", {"name": ""}),
    ("profile", {"bio": "b" * (MAX_BIO_CHARS + 1)}),
    ("profile", {"name": "two\nlines"}),
    ("profile", {"name": "a\ttab"}),
]

CONTROL = ["\x00", "\x07", "\x1b", "\r", "\x7f", "\x85", "\x9b"]

for char in CONTROL:
    PAST_LIMIT += [
        ("post", {"text": f"before{char}after"}),
        ("post", {"text": "x", "cw": f"c{char}"}),
        ("post", {"text": "x", "tags": [f"t{char}"]}),
        ("react", {"entry": ID_A, "author": ID_B, "emoji": char}),
        ("profile", {"name": f"n{char}"}),
        ("profile", {"bio": f"b{char}"}),
    ]
for char in "\n\t":
    PAST_LIMIT += [
        ("post", {"text": "x", "cw": f"c{char}w"}),
        ("react", {"entry": ID_A, "author": ID_B, "emoji": char}),
    ]


def _case_id(case: tuple[str, dict[str, Any]]) -> str:
    kind, fields = case
    return f"{kind}-{repr(fields)[:60]}"


@pytest.mark.parametrize("case", AT_LIMIT, ids=_case_id)
def test_value_at_its_limit_is_accepted(case: tuple[str, dict[str, Any]]) -> None:
    kind, fields = case
    payload = decode(kind, fields)
    assert payload == from_fields(kind, fields)
    assert encode_payload(payload) == canonical.packb(fields)


@pytest.mark.parametrize("case", PAST_LIMIT, ids=_case_id)
def test_value_past_its_limit_is_rejected_by_decoder(case: tuple[str, dict[str, Any]]) -> None:
    kind, fields = case
    with pytest.raises(MalformedEntry) as info:
        decode(kind, fields)
    assert info.value.problem == "bad-payload"
    assert isinstance(info.value, RemoteError)


@pytest.mark.parametrize("case", PAST_LIMIT, ids=_case_id)
def test_value_past_its_limit_is_refused_by_encoder(case: tuple[str, dict[str, Any]]) -> None:
    kind, fields = case
    payload = from_fields(kind, fields)
    with pytest.raises(InvalidArgument) as info:
        encode_payload(payload)
    assert isinstance(info.value, LocalError)
    assert not isinstance(info.value, RemoteError)


def test_payload_size_is_bounded_in_bytes() -> None:
    # 4096 characters of 4 bytes each are within the character limit but not the size.
    text = "\U0001f600" * MAX_TEXT_CHARS
    with pytest.raises(InvalidArgument, match="bytes"):
        encode_payload(Post(text))
    with pytest.raises(MalformedEntry) as info:
        decode_payload_untrusted("post", canonical.packb({"text": text}))
    assert info.value.problem == "oversize"


def test_multiline_fields_accept_newline_and_tab_only() -> None:
    assert decode("post", {"text": "\n\t"}) == Post("\n\t")
    assert decode("profile", {"bio": "\n"}) == Profile(bio="\n")


def test_format_characters_are_not_control_characters() -> None:
    # Only category Cc is refused; zero-width joiners build emoji.
    emoji = "\U0001f469\u200d\U0001f4bb"
    payload = decode("react", {"entry": ID_A, "author": ID_B, "emoji": emoji})
    assert isinstance(payload, React)
    assert payload.emoji == emoji


# --- shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "reason"),
    [
        ("post", {}, "missing field 'text'"),
        ("post", {"cw": "x"}, "missing field 'text'"),
        ("repost", {"entry": ID_A}, "missing field 'author'"),
        ("react", {"entry": ID_A, "author": ID_B}, "missing field 'emoji'"),
        ("follow", {}, "missing field 'feed'"),
        ("unfollow", {"target": ID_A}, "missing field 'feed'"),
        ("block", {}, "missing field 'feed'"),
        ("unblock", {}, "missing field 'feed'"),
        ("delete", {}, "missing field 'entry'"),
        ("post", ["text"], "payload must be a map"),
        ("post", "text", "payload must be a map"),
        ("profile", None, "payload must be a map"),
        ("newkind", [1, 2], "payload must be a map"),
        ("post", {"text": "x", "tags": "t"}, "tags must be a non-empty array"),
        ("post", {"text": "x", "mentions": ID_A}, "mentions must be a non-empty array"),
    ],
    ids=repr,
)
def test_missing_fields_are_rejected(kind: str, fields: object, reason: str) -> None:
    with pytest.raises(MalformedEntry, match=reason) as info:
        decode(kind, fields)
    assert info.value.problem == "bad-payload"


@pytest.mark.parametrize(
    ("kind", "fields", "expected"),
    [
        ("post", {"text": "x", "extra": 1}, Post("x")),
        ("post", {"text": "x", "kind": "repost", "poll": [1, 2]}, Post("x")),
        ("repost", {"entry": ID_A, "author": ID_B, "x": None}, Repost(ID_A, ID_B)),
        ("follow", {"feed": ID_A, "seq": 1}, Follow(ID_A)),
        ("profile", {"nick": "x"}, Profile()),
        ("delete", {"entry": ID_A, "reason": "typo"}, Delete(ID_A)),
    ],
    ids=repr,
)
def test_fields_a_known_kind_does_not_define_are_ignored(
    kind: str, fields: dict[str, Any], expected: Payload
) -> None:
    # A later version may add optional fields; older nodes keep the bytes
    # (and so the entry and the rest of its log) and read what they know.
    data = canonical.packb(fields)
    assert decode_payload_untrusted(kind, data) == expected
    assert encode_payload(expected) != data


def test_unknown_fields_do_not_relax_the_known_ones() -> None:
    with pytest.raises(MalformedEntry) as info:
        decode("post", {"text": "", "extra": 1})
    assert info.value.problem == "bad-payload"


def test_encoder_refuses_an_unknown_payload_posing_as_a_known_kind() -> None:
    with pytest.raises(InvalidArgument, match="missing field 'text'"):
        encode_payload(UnknownPayload(kind="post", fields={"body": "x"}))


def test_encoder_refuses_unencodable_fields() -> None:
    with pytest.raises(InvalidArgument):
        encode_payload(UnknownPayload(kind="x", fields={"f": 1.5}))
    with pytest.raises(InvalidArgument):
        encode_payload(Post("lone \ud800 surrogate"))


def test_unknown_kind_keeps_its_fields() -> None:
    fields = {"a": [1, {"b": b"\x00"}], "z": None}
    assert decode("newkind", fields) == UnknownPayload(kind="newkind", fields=fields)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x81\xa4text\xd9\x01x", "non-canonical"),
        (b"\x82\xa4text\xa1x\xa2cw\xa1c", "non-canonical"),  # keys out of order
        (b"\x81\xa4text\xa1x\x00", "decode"),
        (b"", "decode"),
        (b"\xc0" * (MAX_PAYLOAD_SIZE + 1), "oversize"),
    ],
    ids=repr,
)
def test_payload_bytes_must_be_canonical(data: bytes, problem: str) -> None:
    with pytest.raises(MalformedEntry) as info:
        decode_payload_untrusted("post", data)
    assert info.value.problem == problem


# --- property --------------------------------------------------------------------

IDS = st.binary(min_size=32, max_size=32)
LINE = st.text(
    st.characters(exclude_categories=("Cc", "Cs")),
    min_size=1,
    max_size=20,
)
MULTILINE = st.text(
    st.one_of(st.characters(exclude_categories=("Cc", "Cs")), st.sampled_from("\n\t")),
    min_size=1,
    max_size=40,
)
TAG = st.text(st.sampled_from("abcxyz0-_\u00e9\u4e2d"), min_size=1, max_size=8)


@st.composite
def posts(draw: st.DrawFn) -> Post:
    reply = draw(st.booleans())
    return Post(
        text=draw(MULTILINE),
        root=draw(IDS) if reply else None,
        parent=draw(IDS) if reply else None,
        mentions=tuple(draw(st.lists(IDS, max_size=3, unique=True))),
        tags=tuple(draw(st.lists(TAG, max_size=4, unique=True))),
        cw=draw(st.none() | LINE),
    )


PAYLOADS: st.SearchStrategy[Payload] = st.one_of(
    posts(),
    st.builds(Repost, entry=IDS, author=IDS),
    st.builds(React, entry=IDS, author=IDS, emoji=LINE.filter(lambda s: len(s) <= 16)),
    st.builds(Follow, feed=IDS),
    st.builds(Unfollow, feed=IDS),
    st.builds(Block, feed=IDS),
    st.builds(Unblock, feed=IDS),
    st.builds(Profile, name=st.none() | LINE, bio=st.none() | MULTILINE),
    st.builds(Delete, entry=IDS),
    st.builds(
        UnknownPayload,
        kind=st.from_regex(r"[a-z][a-z0-9]{0,8}\Z").filter(lambda k: k not in KNOWN_KINDS),
        fields=st.dictionaries(st.text(max_size=5), st.integers(0, 9) | st.binary(max_size=4)),
    ),
)


@given(PAYLOADS)
def test_any_valid_payload_round_trips(payload: Payload) -> None:
    data = encode_payload(payload)
    assert decode_payload_untrusted(payload.kind, data) == payload
    assert encode_payload(decode_payload_untrusted(payload.kind, data)) == data


@given(st.sampled_from([*sorted(KNOWN_KINDS), "other"]), st.binary(max_size=80))
def test_decoding_arbitrary_bytes_raises_only_malformed_entry(kind: str, data: bytes) -> None:
    try:
        decode_payload_untrusted(kind, data)
    except MalformedEntry as exc:
        problem = exc.problem
    else:
        return
    assert problem in {"oversize", "decode", "non-canonical", "bad-payload"}
