"""The secure channel: a trio stream encrypted with the session's keys.

:func:`secure_handshake` drives a :class:`~gossip.handshake.TorvHandshake`
over any trio stream (TCP in the node, memory streams in tests) within a
deadline, and returns a :class:`SecureStream`: a ``trio.abc.Stream`` whose
bytes travel as Noise transport messages, one per frame. Application bytes
may be split or merged across frames like on any byte stream; the wire
messages above (``gossip.wire``) carry their own lengths.

A frame that does not decrypt, or a connection that ends inside a frame,
breaks the stream (``trio.BrokenResourceError``, with the reason as its cause).
"""

from __future__ import annotations

import math
import operator
from typing import Final

import trio

from .framing import MAX_FRAME, FrameBuffer, encode_frame
from .handshake import MAX_HANDSHAKE_MESSAGE, HandshakeFailed, Session, TorvHandshake
from .noise import TAG_SIZE

__all__ = ["HANDSHAKE_FRAME_TIME", "HANDSHAKE_TIMEOUT", "SecureStream", "secure_handshake"]

#: Seconds a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT: Final = 10.0
#: Seconds from the first byte of a handshake message to its last. A message
#: is at most a few hundred bytes (MAX_HANDSHAKE_MESSAGE), one TCP segment;
#: one that trickles in is a slow loris, dropped well before the whole
#: handshake's deadline.
HANDSHAKE_FRAME_TIME: Final = 0.5
_MAX_PLAINTEXT: Final = MAX_FRAME - TAG_SIZE
_RECEIVE_CHUNK: Final = 65536


async def _read_frame(stream: trio.abc.Stream, frames: FrameBuffer) -> bytes | None:
    """The next frame from ``stream``; ``None`` at a clean end of stream."""
    while (frame := frames.next_frame()) is None:
        data = await stream.receive_some(_RECEIVE_CHUNK)
        if not data:
            if frames.pending:
                raise HandshakeFailed("the connection ended inside a frame")
            return None
        frames.feed(data)
    return frame


async def _read_handshake_frame(stream: trio.abc.Stream, frames: FrameBuffer) -> bytes | None:
    """The next handshake message from ``stream``; ``None`` at a clean end of stream.

    Raises :class:`HandshakeFailed` for a frame announcing more than any
    handshake message holds, or one not whole :data:`HANDSHAKE_FRAME_TIME`
    seconds after its first byte.
    """
    deadline = math.inf
    while (frame := frames.next_frame()) is None:
        announced = frames.announced
        if announced is not None and announced > MAX_HANDSHAKE_MESSAGE:
            raise HandshakeFailed(
                f"a handshake message of {announced} bytes is longer than any valid one"
            )
        if frames.pending and deadline == math.inf:
            deadline = trio.current_time() + HANDSHAKE_FRAME_TIME
        with trio.move_on_at(deadline) as waited:
            data = await stream.receive_some(_RECEIVE_CHUNK)
        if waited.cancelled_caught:
            raise HandshakeFailed(
                f"a handshake message came in too slowly (not whole after"
                f" {HANDSHAKE_FRAME_TIME:g} s)"
            )
        if not data:
            if frames.pending:
                raise HandshakeFailed("the connection ended inside a frame")
            return None
        frames.feed(data)
    return frame


async def secure_handshake(
    stream: trio.abc.Stream, handshake: TorvHandshake, *, time_limit: float = HANDSHAKE_TIMEOUT
) -> SecureStream:
    """Run ``handshake`` over ``stream``; return the secure stream on success.

    Raises :class:`HandshakeFailed` (with the reason) if the peer's messages
    are bad, the connection ends, or the handshake takes longer than
    ``time_limit`` seconds (a slow peer must not hold a connection slot).
    ``stream`` is left open: the caller closes it.
    """
    frames = FrameBuffer()
    try:
        with trio.fail_after(time_limit):
            while handshake.session is None:
                outgoing = handshake.next_message()
                if outgoing is not None:
                    await stream.send_all(encode_frame(outgoing))
                    continue
                incoming = await _read_handshake_frame(stream, frames)
                if incoming is None:
                    raise HandshakeFailed("the peer closed the connection during the handshake")
                handshake.receive(incoming)
    except trio.TooSlowError:
        raise HandshakeFailed(f"the handshake took longer than {time_limit:g} s") from None
    except trio.BrokenResourceError as exc:
        raise HandshakeFailed(f"the connection broke during the handshake: {exc}") from exc
    return SecureStream(stream, handshake.session, frames)


class SecureStream(trio.abc.Stream):
    """Bytes over an established session; one task may send and one receive at a time."""

    def __init__(
        self, transport_stream: trio.abc.Stream, session: Session, frames: FrameBuffer
    ) -> None:
        self.transport_stream = transport_stream
        self.session = session
        self._frames = frames
        self._plaintext = bytearray()
        self._closed = False
        self._broken: BaseException | None = None
        self._sending = False
        self._receiving = False

    @property
    def remote_identity(self) -> bytes:
        """The peer's torv identity (Ed25519 public key), proven in the handshake."""
        return self.session.remote_identity

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the secure stream is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("the secure stream is broken") from self._broken

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_open()
        self._sending = True
        try:
            view = memoryview(data)
            if not view:
                await trio.lowlevel.checkpoint()
                return
            cipher = self.session.transport.send
            frames = b"".join(
                encode_frame(cipher.encrypt(b"", bytes(view[start : start + _MAX_PLAINTEXT])))
                for start in range(0, len(view), _MAX_PLAINTEXT)
            )
            try:
                await self.transport_stream.send_all(frames)
            except BaseException as exc:
                # Part of a frame may be on the wire and the nonce has moved
                # on: nothing sent after this could be read.
                self._broken = exc
                raise
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._check_open()
        self._receiving = True
        try:
            if self._plaintext:
                await trio.lowlevel.checkpoint()
            while not self._plaintext:
                frame = await self._next_frame()
                if frame is None:
                    return b""
                self._plaintext += frame
            size = len(self._plaintext) if max_bytes is None else max_bytes
            chunk = bytes(self._plaintext[:size])
            del self._plaintext[:size]
            return chunk
        finally:
            self._receiving = False

    async def _next_frame(self) -> bytes | None:
        try:
            frame = await _read_frame(self.transport_stream, self._frames)
            if frame is None:
                return None
            return self.session.transport.receive.decrypt(b"", frame)
        except HandshakeFailed as exc:
            self._broken = exc
            raise trio.BrokenResourceError(f"the peer sent bad data: {exc}") from exc

    async def aclose(self) -> None:
        self._closed = True
        await self.transport_stream.aclose()
