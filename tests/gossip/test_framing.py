"""Frames come out whole and in order, however the bytes were cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip.framing import MAX_FRAME, FrameBuffer, encode_frame


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_frames_survive_any_split(bodies: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(encode_frame(body) for body in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    buffer = FrameBuffer()
    out: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        buffer.feed(wire[start:end])
        while (frame := buffer.next_frame()) is not None:
            out.append(frame)
    assert out == bodies
    assert buffer.pending == 0


def test_a_partial_frame_is_held_not_returned() -> None:
    buffer = FrameBuffer(b"\x00\x05ab")
    assert buffer.next_frame() is None
    assert buffer.pending == 4
    buffer.feed(b"cde")
    assert buffer.next_frame() == b"abcde"


def test_a_frame_cannot_exceed_the_noise_bound() -> None:
    assert len(encode_frame(b"x" * MAX_FRAME)) == MAX_FRAME + 2
    with pytest.raises(ValueError, match="at most"):
        encode_frame(b"x" * (MAX_FRAME + 1))
