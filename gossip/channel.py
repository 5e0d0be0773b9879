"""The secure channel: a trio stream encrypted with the session's keys.

:func:`secure_handshake` drives a :class:`~gossip.handshake.TorvHandshake`
over any trio stream (TCP in the node, memory streams in tests) within a
deadline, and returns a :class:`SecureStream`: a ``trio.abc.Stream`` whose
bytes travel as Noise transport messages, one per frame. Application bytes
may be split or merged across frames like on any byte stream; the wire
messages above (``gossip.wire``) carry their own lengths.

A frame that does not decrypt, or a connection that ends inside a frame,
breaks the stream (``trio.BrokenResourceError``, with the reason as its cause).

Besides the stream interface, a sender may split encryption from writing:
:meth:`SecureStream.seal` encrypts at once (frames take their nonces in the
order of the calls), and the sealed bytes go out, in that order, through
:meth:`SecureStream.send_sealed` or, without waiting,
:meth:`SecureStream.send_sealed_nowait`. A node that gossips writes a few
hundred bytes to each of many peers at a time; writing them from the task
that produced them, when the socket takes them at once, spares the hand-over
to a writer task and back for each write.
"""

from __future__ import annotations

import math
import operator
import os
from typing import Final

import trio

from .framing import MAX_FRAME, FrameBuffer, encode_frame
from .handshake import MAX_HANDSHAKE_MESSAGE, HandshakeFailed, Session, TorvHandshake
from .noise import TAG_SIZE

__all__ = ["HANDSHAKE_FRAME_TIME", "HANDSHAKE_TIMEOUT", "SecureStream", "secure_handshake"]

#: Where a socket's descriptor takes a plain ``read`` and ``write`` (everywhere
#: but Windows).
_DIRECT_SOCKETS: Final = os.name == "posix"

#: Seconds a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT: Final = 10.0
#: Seconds from the first byte of a handshake message to its last. A message
#: is at most a few hundred bytes (MAX_HANDSHAKE_MESSAGE), one TCP segment;
#: one that trickles in is a slow loris, dropped well before the whole
#: handshake's deadline.
HANDSHAKE_FRAME_TIME: Final = 0.5
_MAX_PLAINTEXT: Final = MAX_FRAME - TAG_SIZE
#: What a frame adds to its plaintext: the 2-byte length and the tag.
_FRAME_OVERHEAD: Final = 2 + TAG_SIZE
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

    @staticmethod
    def sealed_size(length: int) -> int:
        """How many bytes :meth:`seal` makes of ``length`` bytes."""
        frames = -(-length // _MAX_PLAINTEXT)
        return length + frames * _FRAME_OVERHEAD

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """``data`` encrypted into frames, ready for the transport.

        Each call takes the next nonces, so sealed bytes must reach the
        transport whole and in the order of the calls (:meth:`send_sealed`,
        :meth:`send_sealed_nowait`). Raises ``trio.ClosedResourceError`` or
        ``trio.BrokenResourceError`` on a stream that is closed or broken.
        """
        self._check_open()
        view = memoryview(data)
        cipher = self.session.transport.send
        return b"".join(
            encode_frame(cipher.encrypt(b"", bytes(view[start : start + _MAX_PLAINTEXT])))
            for start in range(0, len(view), _MAX_PLAINTEXT)
        )

    def send_sealed_nowait(self, sealed: bytes | memoryview) -> int:
        """Write what the transport takes of ``sealed`` without waiting; return
        how many bytes that was (0 when it would block, or when the transport
        is not a socket that can be written to directly).

        The caller must not call this while a :meth:`send_sealed` or
        :meth:`send_all` is under way, and sends the rest (if any) next.
        Raises ``trio.BrokenResourceError`` if the connection failed.
        """
        self._check_open()
        if self._sending or not self.direct:
            return 0
        try:
            return os.write(self._fileno(), sealed)
        except BlockingIOError:
            return 0
        except OSError as exc:
            # As in send_sealed: part of a frame may be out, nothing after it is readable.
            self._broken = exc
            raise trio.BrokenResourceError(f"the connection failed: {exc}") from exc

    @property
    def direct(self) -> bool:
        """Whether the transport is a socket this stream can read and write
        itself (:meth:`send_sealed_nowait`, :meth:`receive_nowait`)."""
        return _DIRECT_SOCKETS and isinstance(self.transport_stream, trio.SocketStream)

    def _fileno(self) -> int:
        transport = self.transport_stream
        assert isinstance(transport, trio.SocketStream)
        return transport.socket.fileno()

    async def send_sealed(self, sealed: bytes | memoryview) -> None:
        """Write ``sealed`` (from :meth:`seal`) to the transport."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_open()
        self._sending = True
        try:
            if not sealed:
                await trio.lowlevel.checkpoint()
                return
            try:
                await self.transport_stream.send_all(sealed)
            except BaseException as exc:
                # Part of a frame may be on the wire and the nonce has moved
                # on: nothing sent after this could be read.
                self._broken = exc
                raise
        finally:
            self._sending = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        await self.send_sealed(self.seal(data))

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

    async def wait_readable(self) -> None:
        """Wait until there is something to read (only where :attr:`direct`):
        bytes on the socket, or a whole frame already buffered."""
        self._check_open()
        if self._plaintext or self._frames.ready:
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.wait_readable(self._fileno())

    def receive_nowait(self) -> bytes | None:
        """The bytes that arrived, decrypted, without waiting (only where
        :attr:`direct`): ``b""`` once the peer closed the connection, ``None``
        while no whole frame is in (then :meth:`wait_readable`).

        One read of the socket and no scheduling, where ``receive_some`` goes
        through the socket wrapper's checkpoints and, when nothing is in yet,
        a first read that fails. Raises ``trio.BrokenResourceError`` as
        ``receive_some`` does, and ``trio.BusyResourceError`` while another
        task receives.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._check_open()
        self._decrypt_buffered()
        if not self._plaintext:
            try:
                data = os.read(self._fileno(), _RECEIVE_CHUNK)
            except BlockingIOError:
                return None
            except OSError as exc:
                self._broken = exc
                raise trio.BrokenResourceError(f"the connection failed: {exc}") from exc
            if not data:
                if self._frames.pending:
                    self._broken = HandshakeFailed("the connection ended inside a frame")
                    raise trio.BrokenResourceError(
                        "the peer sent bad data: the connection ended inside a frame"
                    ) from self._broken
                return b""
            self._frames.feed(data)
            self._decrypt_buffered()
            if not self._plaintext:
                return None
        chunk = bytes(self._plaintext)
        self._plaintext.clear()
        return chunk

    def _decrypt_buffered(self) -> None:
        """Decrypt the whole frames buffered into the plaintext."""
        decrypt = self.session.transport.receive.decrypt
        try:
            while (frame := self._frames.next_frame()) is not None:
                self._plaintext += decrypt(b"", frame)
        except HandshakeFailed as exc:
            self._broken = exc
            raise trio.BrokenResourceError(f"the peer sent bad data: {exc}") from exc

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
