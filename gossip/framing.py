"""Frames on the wire: a 2-byte big-endian length, then that many bytes.

Every frame after the handshake is one Noise transport message, so a frame
body is at most 65535 bytes (the Noise bound) by construction: the length
field cannot say more. :class:`FrameBuffer` is the sans-I/O reader.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

__all__ = ["MAX_FRAME", "FrameBuffer", "LengthPrefixed", "encode_frame"]

MAX_FRAME: Final = 65535
_LENGTH: Final = struct.Struct(">H")


def encode_frame(body: bytes) -> bytes:
    """``body`` with its length in front."""
    if len(body) > MAX_FRAME:
        raise ValueError(f"a frame holds at most {MAX_FRAME} bytes")
    return _LENGTH.pack(len(body)) + body


class LengthPrefixed:
    """Bytes in, whole length-prefixed bodies out (sans I/O).

    ``header`` is the length field's format; a length above ``max_body`` is
    refused (``too_large(length)`` is raised) before its body is buffered, so
    a peer cannot make the node hold more than one body and a header.
    """

    def __init__(
        self,
        header: struct.Struct,
        max_body: int,
        too_large: Callable[[int], Exception],
        initial: bytes = b"",
    ) -> None:
        self._header = header
        self._max_body = max_body
        self._too_large = too_large
        self._buffer = bytearray(initial)

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def next_body(self) -> bytes | None:
        """The next whole body, or ``None`` until more bytes arrive."""
        size = self._header.size
        if len(self._buffer) < size:
            return None
        length: int = self._header.unpack_from(self._buffer)[0]
        if length > self._max_body:
            raise self._too_large(length)
        end = size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[size:end])
        del self._buffer[:end]
        return body

    @property
    def announced(self) -> int | None:
        """The length of the body being received, once its length field is in
        (``None`` before that)."""
        if len(self._buffer) < self._header.size:
            return None
        length: int = self._header.unpack_from(self._buffer)[0]
        return length

    @property
    def ready(self) -> bool:
        """Whether a whole body is buffered (:meth:`next_body` returns it)."""
        length = self.announced
        return length is not None and len(self._buffer) >= self._header.size + length

    @property
    def pending(self) -> int:
        """Bytes held that do not form a whole body yet."""
        return len(self._buffer)


class FrameBuffer(LengthPrefixed):
    """Frames: a 2-byte length cannot exceed :data:`MAX_FRAME`."""

    def __init__(self, initial: bytes = b"") -> None:
        super().__init__(_LENGTH, MAX_FRAME, ValueError, initial)

    def next_frame(self) -> bytes | None:
        """The next whole frame's body, or ``None`` until more bytes arrive."""
        return self.next_body()
