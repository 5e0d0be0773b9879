"""A peer's messages into the sync planner, the gap buffer and the gossip
router: nothing a peer sends raises but a :class:`BadMessage` from decoding
(``gossip/sync.py``, ``gossip/router.py``)."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from gossip.wire import EntryBatch, Heads, RawEntry, encode_message

from .mutate import DrawnChoices, mutate
from .targets import TARGETS, accepts, signed_chain

SYNC = TARGETS["sync"]
RUN = SYNC.start(contextlib.ExitStack())
CORPUS = SYNC.corpus()
CHAIN = signed_chain()
FEEDS = [CHAIN[0].author, bytes(32)]


def test_the_corpus_is_valid() -> None:
    assert all(accepts(SYNC, RUN, data) for data in CORPUS)


@settings(max_examples=100)
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_message_streams_never_raise_past_decoding(
    valid: bytes, data: st.DataObject
) -> None:
    accepts(SYNC, RUN, mutate(valid, SYNC.layout, DrawnChoices(data), CORPUS))


raw_entries = st.builds(
    lambda index, cut, drop: RawEntry(
        CHAIN[index].header_bytes[: cut or None],
        CHAIN[index].signature,
        None if drop else CHAIN[index].payload,
    ),
    st.integers(0, len(CHAIN) - 1),
    st.integers(0, 4),
    st.booleans(),
)
batches = st.builds(
    EntryBatch,
    request=st.integers(0, 8),
    entries=st.lists(raw_entries, max_size=10).map(tuple),
    done=st.booleans(),
)
heads = st.builds(
    Heads,
    st.dictionaries(st.sampled_from(FEEDS), st.integers(0, 2**53 - 1), max_size=2).map(
        lambda pairs: tuple(sorted(pairs.items()))
    ),
)


@settings(max_examples=100)
@given(st.lists(batches | heads, max_size=8))
def test_any_sequence_of_well_formed_batches_and_heads_is_taken(
    messages: list[EntryBatch | Heads],
) -> None:
    """Batches out of order, for other requests, with cut headers: faults, never errors."""
    assert accepts(SYNC, RUN, b"".join(encode_message(message) for message in messages))
