"""Frames on the wire: a 2-byte big-endian length, then that many bytes.

Every frame after the handshake is one Noise transport message, so a frame
body is at most 65535 bytes (the Noise bound) by construction: the length
field cannot say more. :class:`FrameBuffer` is the sans-I/O reader.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["MAX_FRAME", "FrameBuffer", "encode_frame"]

MAX_FRAME: Final = 65535
_LENGTH: Final = struct.Struct(">H")


def encode_frame(body: bytes) -> bytes:
    """``body`` with its length in front."""
    if len(body) > MAX_FRAME:
        raise ValueError(f"a frame holds at most {MAX_FRAME} bytes")
    return _LENGTH.pack(len(body)) + body


class FrameBuffer:
    """Bytes in, whole frames out. Holds at most one frame and a header."""

    def __init__(self, initial: bytes = b"") -> None:
        self._buffer = bytearray(initial)

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next whole frame's body, or ``None`` until more bytes arrive."""
        if len(self._buffer) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer)
        end = _LENGTH.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_LENGTH.size : end])
        del self._buffer[:end]
        return body

    @property
    def pending(self) -> int:
        """Bytes held that do not form a whole frame yet."""
        return len(self._buffer)
