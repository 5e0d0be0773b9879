"""The handshake fed by a hostile peer: each of the three messages mutated,
to the responder and to the initiator, and identity payloads of any shape
inside well-encrypted messages, fail only with :class:`HandshakeFailed`
(``gossip/noise.py``, ``gossip/handshake.py``)."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from .mutate import DrawnChoices, join_parts, mutate
from .targets import TARGETS, accepts

HANDSHAKE = TARGETS["handshake"]
RUN = HANDSHAKE.start(contextlib.ExitStack())
CORPUS = HANDSHAKE.corpus()


def test_the_corpus_is_valid() -> None:
    assert all(accepts(HANDSHAKE, RUN, data) for data in CORPUS)


@settings(max_examples=100)
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_handshake_messages_fail_only_the_handshake(
    valid: bytes, data: st.DataObject
) -> None:
    mutated = mutate(valid, HANDSHAKE.layout, DrawnChoices(data), CORPUS)
    # A mutation that leaves the message whole may still be accepted: the
    # first message is not authenticated, and the selector's other bits are free.
    accepts(HANDSHAKE, RUN, mutated)


@settings(max_examples=100)
@given(
    st.sampled_from([b"\x03", b"\x13", b"\x04"]),
    st.dictionaries(
        st.sampled_from(["identity", "sig", "v", "other"]),
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.binary(min_size=31, max_size=65)
        | st.text(max_size=4),
    ),
)
def test_identity_payloads_of_any_shape_fail_only_the_handshake(
    step: bytes, payload: dict[str, Any]
) -> None:
    encoded = msgpack.packb(dict(sorted(payload.items())), use_bin_type=True)
    assert not accepts(HANDSHAKE, RUN, join_parts([step, encoded]))
