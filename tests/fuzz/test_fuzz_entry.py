"""Entries and payloads from peers: mutated valid encodings and payload maps
of arbitrary fields raise only the entry errors (``storage/entry.py``,
``storage/payloads.py``). Arbitrary bytes are in ``tests/storage``."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.entry import parse_entry_untrusted
from storage.errors import MalformedEntry
from storage.payloads import KNOWN_KINDS, decode_payload_untrusted

from .mutate import DrawnChoices, mutate
from .targets import TARGETS, accepts

ENTRY = TARGETS["entry"]
PAYLOAD = TARGETS["payload"]
RUN_ENTRY = ENTRY.start(contextlib.ExitStack())
RUN_PAYLOAD = PAYLOAD.start(contextlib.ExitStack())
ENTRY_CORPUS = ENTRY.corpus()
PAYLOAD_CORPUS = PAYLOAD.corpus()

#: Values a field may hold: each type, and the sizes at the edges of torv's bounds.
FIELD_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.sampled_from([0, 1, 2**53 - 1, 2**53, 2**64 - 1])
    | st.binary(max_size=65)
    | st.text(max_size=80)
    | st.lists(st.binary(min_size=31, max_size=33) | st.text(max_size=70), max_size=34)
)


#: Every field of every payload kind, and one that no kind has.
PAYLOAD_FIELDS = [
    "text",
    "root",
    "parent",
    "mentions",
    "tags",
    "cw",
    "entry",
    "author",
    "emoji",
    "feed",
    "name",
    "bio",
    "other",
]


def test_the_corpus_is_valid() -> None:
    assert all(accepts(ENTRY, RUN_ENTRY, data) for data in ENTRY_CORPUS)
    assert all(accepts(PAYLOAD, RUN_PAYLOAD, data) for data in PAYLOAD_CORPUS)


@settings(max_examples=100)
@given(st.sampled_from(ENTRY_CORPUS), st.data())
def test_mutated_entries_raise_only_entry_errors(valid: bytes, data: st.DataObject) -> None:
    accepts(ENTRY, RUN_ENTRY, mutate(valid, ENTRY.layout, DrawnChoices(data), ENTRY_CORPUS))


@settings(max_examples=100)
@given(st.sampled_from(PAYLOAD_CORPUS), st.data())
def test_mutated_payloads_raise_only_malformed_entry(valid: bytes, data: st.DataObject) -> None:
    accepts(
        PAYLOAD, RUN_PAYLOAD, mutate(valid, PAYLOAD.layout, DrawnChoices(data), PAYLOAD_CORPUS)
    )


@given(
    st.sampled_from(sorted(KNOWN_KINDS)),
    st.dictionaries(
        st.sampled_from(PAYLOAD_FIELDS),
        FIELD_VALUES,
    ),
)
def test_payload_maps_of_any_field_values_are_refused_or_valid(
    kind: str, fields: dict[str, Any]
) -> None:
    data = msgpack.packb(dict(sorted(fields.items())), use_bin_type=True)
    with contextlib.suppress(MalformedEntry):
        decode_payload_untrusted(kind, data)


@given(
    st.lists(FIELD_VALUES, min_size=0, max_size=9),
    st.binary(min_size=64, max_size=64),
    st.none() | st.binary(max_size=40),
)
def test_headers_of_any_field_values_are_refused_or_well_formed(
    fields: list[Any], signature: bytes, payload: bytes | None
) -> None:
    header = msgpack.packb([1, *fields], use_bin_type=True)
    with contextlib.suppress(MalformedEntry):
        entry = parse_entry_untrusted(header, signature, payload)
        assert entry.header.encode() == header
