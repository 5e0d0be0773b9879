"""Wire messages: every type round-trips, and anything else from a peer is a
BadMessage that names the problem."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip import wire
from gossip.wire import (
    MAX_IDS,
    MAX_RANGE,
    MAX_WIRE_MESSAGE,
    SQUARE,
    BadMessage,
    Choke,
    EntryBatch,
    EntryMessage,
    Graft,
    Heads,
    IDontWant,
    IHave,
    IWant,
    MessageBuffer,
    Prune,
    RawEntry,
    Subscribe,
    Unchoke,
    Unsubscribe,
    Want,
    WireMessage,
    decode_message_untrusted,
    encode_message,
    feed_topic,
    topic_feed,
)
from storage import InvalidArgument, canonical

ids = st.binary(min_size=32, max_size=32)
topics = st.one_of(st.just(SQUARE), ids.map(feed_topic))
topic_lists = st.lists(topics, min_size=1, max_size=8, unique=True).map(tuple)
id_lists = st.lists(ids, min_size=1, max_size=8).map(tuple)
raw_entries = st.builds(
    RawEntry,
    st.binary(min_size=1, max_size=200),
    st.binary(min_size=64, max_size=64),
    st.none() | st.binary(max_size=300),
)
seqs = st.integers(0, 2**53 - 1)


@st.composite
def wants(draw: st.DrawFn) -> Want:
    first = draw(st.integers(1, 10_000))
    return Want(
        request=draw(st.integers(0, 2**32 - 1)),
        feed=draw(ids),
        first=first,
        last=first + draw(st.integers(0, MAX_RANGE - 1)),
        newest_first=draw(st.booleans()),
    )


messages: st.SearchStrategy[WireMessage] = st.one_of(
    st.builds(Subscribe, topic_lists),
    st.builds(Unsubscribe, topic_lists),
    st.builds(Graft, topics),
    st.builds(Prune, topics, st.integers(0, 3600)),
    st.builds(
        IHave,
        st.dictionaries(topics, id_lists, min_size=1, max_size=4).map(
            lambda offers: tuple(offers.items())
        ),
    ),
    st.builds(IWant, id_lists),
    st.builds(IDontWant, id_lists),
    st.builds(Choke, topic_lists),
    st.builds(Unchoke, topic_lists),
    st.builds(EntryMessage, topic_lists, raw_entries),
    st.builds(Heads, st.dictionaries(ids, seqs, max_size=8).map(lambda d: tuple(d.items()))),
    wants(),
    st.builds(
        EntryBatch,
        st.integers(0, 2**32 - 1),
        st.lists(raw_entries, max_size=4).map(tuple),
        st.booleans(),
    ),
)


@given(messages)
def test_every_message_round_trips(message: WireMessage) -> None:
    framed = encode_message(message)
    assert int.from_bytes(framed[:4], "big") == len(framed) - 4
    assert decode_message_untrusted(framed[4:]) == message


@given(messages)
def test_messages_are_written_canonically(message: WireMessage) -> None:
    # The encoder builds the bytes without storage.canonical; they must be
    # what the canonical encoder writes (docs/protocol.md section 10).
    body = encode_message(message)[4:]
    assert canonical.unpack_untrusted(body, max_size=MAX_WIRE_MESSAGE, what="message") is not None


def test_a_message_need_not_be_canonical_but_its_fields_are_checked() -> None:
    # Keys out of order and an unknown field: read, since nothing is signed
    # at this level and newer nodes may add fields.
    data = msgpack.packb([1, "graft", {"zzz": 1.5, "topic": SQUARE}], use_bin_type=True)
    assert decode_message_untrusted(data) == Graft(SQUARE)
    # A float where an integer belongs is still refused.
    data = msgpack.packb([1, "prune", {"topic": SQUARE, "backoff": 1.0}], use_bin_type=True)
    with pytest.raises(BadMessage, match="wrong type"):
        decode_message_untrusted(data)
    with pytest.raises(BadMessage, match="not valid msgpack"):
        decode_message_untrusted(data + b"\x00")


@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_a_bad_message_or_a_message(data: bytes) -> None:
    with contextlib.suppress(BadMessage):
        decode_message_untrusted(data)


@given(
    st.sampled_from(
        [
            "sub",
            "unsub",
            "graft",
            "prune",
            "ihave",
            "iwant",
            "idontwant",
            "choke",
            "unchoke",
            "entry",
            "heads",
            "want",
            "entries",
            "nope",
        ]
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "topics",
                "topic",
                "ids",
                "entry",
                "heads",
                "request",
                "feed",
                "first",
                "last",
                "newest_first",
                "entries",
                "done",
                "backoff",
            ]
        ),
        st.none()
        | st.booleans()
        | st.integers(-5, 2**33)
        | st.binary(max_size=40)
        | st.text(max_size=70)
        | st.lists(st.binary(max_size=33) | st.text(max_size=70), max_size=3),
    ),
)
def test_arbitrary_bodies_are_refused_or_valid(kind: str, body: dict[str, object]) -> None:
    with contextlib.suppress(BadMessage):
        decode_message_untrusted(canonical.packb([1, kind, body]))


def _body(kind: str, body: object, version: object = 1) -> bytes:
    return canonical.packb([version, kind, body])


FEED = feed_topic(bytes(32))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_body("sub", {"topics": ["general"]}), "topic must be"),
        (_body("sub", {"topics": []}), "topic count"),
        (_body("sub", {"topics": [SQUARE, SQUARE]}), "repeat"),
        (_body("graft", {"topic": FEED.upper()}), "topic must be"),
        (_body("iwant", {"ids": [bytes(32)] * (MAX_IDS + 1)}), "id count"),
        (_body("iwant", {"ids": [bytes(31)]}), "32 bytes"),
        (_body("prune", {"topic": SQUARE, "backoff": True}), "wrong type"),
        (_body("prune", {"topic": SQUARE, "backoff": 99999}), "backoff"),
        (
            _body(
                "want",
                {"request": 1, "feed": bytes(32), "first": 5, "last": 4, "newest_first": False},
            ),
            "range length",
        ),
        (
            _body(
                "want",
                {
                    "request": 1,
                    "feed": bytes(32),
                    "first": 1,
                    "last": MAX_RANGE + 1,
                    "newest_first": False,
                },
            ),
            "range length",
        ),
        (_body("heads", {"heads": [[bytes(32), 1], [bytes(32), 2]]}), "twice"),
        (_body("entry", {"topics": [SQUARE], "entry": [b"h", bytes(63), None]}), "size"),
        (_body("ping", {}), "unknown message type"),
        (_body("sub", {"topics": [SQUARE]}, version=2), "unknown wire version"),
        (_body("sub", [SQUARE]), "must be a map"),
        (b"\x93\x01\xa3sub\x81\xa6topics\x91\xa6square\x00", "not valid msgpack"),
    ],
)
def test_bad_messages_name_their_problem(data: bytes, problem: str) -> None:
    with pytest.raises(BadMessage, match=problem):
        decode_message_untrusted(data)


def test_topics_too_long_to_be_valid_are_refused_without_being_remembered() -> None:
    # Valid topics are remembered once matched; a peer's long junk strings
    # (up to a message's size each) must not fill that memory.
    wire._is_topic.cache_clear()
    for n in range(3):
        with pytest.raises(BadMessage, match="a topic must be"):
            decode_message_untrusted(_body("sub", {"topics": [f"feed/{n}" + "a" * 100_000]}))
    assert wire._is_topic.cache_info().currsize == 0
    decode_message_untrusted(_body("sub", {"topics": [SQUARE, feed_topic(bytes(32))]}))
    assert wire._is_topic.cache_info().currsize == 2


def test_encoding_refuses_what_a_peer_would_refuse() -> None:
    with pytest.raises(InvalidArgument):
        encode_message(IWant(()))
    with pytest.raises(InvalidArgument):
        encode_message(Graft("general"))


def test_feed_topics_name_their_feed() -> None:
    feed = bytes(range(32))
    assert topic_feed(feed_topic(feed)) == feed
    assert topic_feed(SQUARE) is None
    assert topic_feed("feed/xyz") is None


@given(st.lists(messages, max_size=5), st.data())
def test_the_message_buffer_cuts_any_split_stream_back_into_messages(
    sent: list[WireMessage], data: st.DataObject
) -> None:
    wire = b"".join(encode_message(message) for message in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    buffer = MessageBuffer()
    received: list[WireMessage] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        buffer.feed(wire[start:end])
        while (body := buffer.next_body()) is not None:
            received.append(decode_message_untrusted(body))
    assert received == sent
    assert buffer.pending == 0


def test_an_oversize_length_is_refused_before_the_body_arrives() -> None:
    buffer = MessageBuffer()
    buffer.feed((MAX_WIRE_MESSAGE + 1).to_bytes(4, "big"))
    with pytest.raises(BadMessage, match="larger than"):
        buffer.next_body()


def _document_vectors() -> list[bytes]:
    """The hex blocks of docs/protocol.md section 10.1, in order."""
    text = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text[text.index("### 10.1 Wire message vectors") :]
    return [
        bytes.fromhex("".join(block.split()))
        for block in re.findall(r"```\n([0-9a-f\n]+)```", section)
    ]


def test_the_wire_vectors_of_the_protocol_document() -> None:
    topic = feed_topic(bytes(range(32)))
    expected: list[WireMessage] = [
        IHave(((topic, (b"\x01" * 32, b"\x02" * 32)), (SQUARE, (b"\x03" * 32,)))),
        Choke((topic, SQUARE)),
        Unchoke((topic,)),
    ]
    vectors = _document_vectors()
    assert len(vectors) == len(expected)
    for data, message in zip(vectors, expected, strict=True):
        assert encode_message(message) == data
        assert decode_message_untrusted(data[4:]) == message
