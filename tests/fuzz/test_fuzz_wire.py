"""Wire frames and messages: encrypted frames carrying mutated messages, and
mutated message streams, raise only the documented errors; what decodes
encodes again to the same message (``gossip/framing.py``, ``gossip/wire.py``)."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from storage import canonical

from .mutate import DrawnChoices, mutate
from .targets import TARGETS, accepts

WIRE = TARGETS["wire"]
FRAMES = TARGETS["frames"]
RUN_WIRE = WIRE.start(contextlib.ExitStack())
RUN_FRAMES = FRAMES.start(contextlib.ExitStack())
WIRE_CORPUS = WIRE.corpus()
FRAMES_CORPUS = FRAMES.corpus()
TYPES = ["sub", "unsub", "graft", "prune", "ihave", "iwant", "idontwant", "entry", "heads"]
TYPES += ["want", "entries", "other"]
FIELDS = ["topics", "topic", "ids", "entry", "heads", "request", "feed", "first", "last"]
FIELDS += ["newest_first", "entries", "done", "backoff"]

# Nested values: what a field might be instead of what it should be.
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=70)
    | st.sampled_from(["square", "feed/" + "ab" * 32, "feed/", "", "\u00e9"]),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


def test_the_corpus_is_valid() -> None:
    assert all(accepts(WIRE, RUN_WIRE, data) for data in WIRE_CORPUS)
    assert all(accepts(FRAMES, RUN_FRAMES, data) for data in FRAMES_CORPUS)


@settings(max_examples=100)
@given(st.sampled_from(WIRE_CORPUS), st.data())
def test_mutated_message_streams_raise_only_bad_message(valid: bytes, data: st.DataObject) -> None:
    accepts(WIRE, RUN_WIRE, mutate(valid, WIRE.layout, DrawnChoices(data), WIRE_CORPUS))


@settings(max_examples=100)
@given(st.sampled_from(FRAMES_CORPUS), st.data())
def test_mutated_frames_raise_only_handshake_failed_or_bad_message(
    valid: bytes, data: st.DataObject
) -> None:
    accepts(FRAMES, RUN_FRAMES, mutate(valid, FRAMES.layout, DrawnChoices(data), FRAMES_CORPUS))


@settings(max_examples=100)
@given(st.sampled_from(TYPES), st.dictionaries(st.sampled_from(FIELDS), VALUES))
def test_bodies_of_nested_values_are_refused_or_round_trip(
    kind: str, body: dict[str, Any]
) -> None:
    message = canonical.packb([1, kind, body])
    accepts(WIRE, RUN_WIRE, len(message).to_bytes(4, "big") + message)
