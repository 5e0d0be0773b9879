"""One live connection to a peer: wire messages in and out of a secure stream.

:class:`PeerConnection` owns a :class:`~gossip.channel.SecureStream`. Its
:meth:`~PeerConnection.run` reads messages and hands them to the node's
handler (every message that one read completed, together), and writes what
was queued, until the connection ends; it returns why.

Sending never waits: :meth:`PeerConnection.send_all` encrypts the messages
at once and, when nothing is waiting before them, writes them to the socket
from the calling task; what the socket does not take at once waits for the
connection's writer task, which joins everything queued meanwhile into one
write. A peer too slow to drain its queue is disconnected rather than
allowed to stall the node or fill its memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from .channel import SecureStream
from .wire import BadMessage, MessageBuffer, WireMessage, decode_message_untrusted, encode_message

__all__ = ["SEND_QUEUE_BYTES", "WRITE_BATCH", "Handler", "PeerConnection", "PeerInfo"]

#: Bytes waiting to be written to one peer before it counts as too slow: a
#: peer that asks for much (sync batches of up to 1 MiB, entries by IWANT)
#: and reads nothing would otherwise make the node hold every answer. A
#: correct peer keeps a few sync requests outstanding.
SEND_QUEUE_BYTES: Final = 16 * 1024 * 1024
#: The writer task joins queued bytes into one write until it holds this many.
WRITE_BATCH: Final = 256 * 1024
_RECEIVE_CHUNK: Final = 65536

#: Takes the messages that one read from the peer completed, in order.
Handler = Callable[["PeerConnection", Sequence[WireMessage]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What the node shows about a connection."""

    identity: bytes
    address: str
    outbound: bool
    connected_at: float


class PeerConnection:
    """A peer's session: call :meth:`run` in a task, the ``send`` methods from
    any task of the same trio run."""

    def __init__(self, stream: SecureStream, *, address: str, outbound: bool) -> None:
        self.stream = stream
        self.info = PeerInfo(stream.remote_identity, address, outbound, trio.current_time())
        # Sealed bytes the socket did not take yet, oldest first.
        self._pending: list[bytes] = []
        self._queued = 0  # bytes in _pending
        self._wake_writer = trio.Event()
        self._closed = trio.Event()
        self._reason = ""

    @property
    def identity(self) -> bytes:
        return self.info.identity

    @property
    def queued_bytes(self) -> int:
        """Bytes queued for the peer that are not written yet (at most
        :data:`SEND_QUEUE_BYTES`)."""
        return self._queued

    def send(self, message: WireMessage) -> bool:
        """Queue ``message``; False (and the connection closing) if the queue is full."""
        return self.send_all((encode_message(message),))

    def send_messages(self, messages: Sequence[WireMessage]) -> bool:
        """Queue ``messages`` to leave together; as :meth:`send`."""
        return self.send_all([encode_message(message) for message in messages])

    def send_all(self, encoded: Sequence[bytes]) -> bool:
        """Queue messages encoded with :func:`~gossip.wire.encode_message` (so
        that one message for many peers is encoded once), to leave together.

        False if the connection is closed, or closes now: it failed, or the
        queue would hold more than :data:`SEND_QUEUE_BYTES`.
        """
        if self._closed.is_set():
            return False
        data = b"".join(encoded)
        if self._queued + self.stream.sealed_size(len(data)) > SEND_QUEUE_BYTES:
            self.close("the peer reads too slowly (send queue full)")
            return False
        try:
            sealed = self.stream.seal(data)
            # Only with nothing before it (the writer task clears _pending
            # only once its write is done): the bytes keep their order.
            written = 0 if self._pending else self.stream.send_sealed_nowait(sealed)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(f"connection lost: {exc}")
            return False
        if written < len(sealed):
            self._pending.append(sealed[written:])
            self._queued += len(sealed) - written
            self._wake_writer.set()
        return True

    def close(self, reason: str) -> None:
        """End the connection (the running :meth:`run` returns ``reason``)."""
        if not self._closed.is_set():
            self._reason = reason
            self._closed.set()

    async def run(self, handler: Handler) -> str:
        """Read and write until the connection ends; return why it ended."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, handler)
            nursery.start_soon(self._write)
            await self._closed.wait()
            nursery.cancel_scope.cancel()
        self._pending.clear()
        self._queued = 0
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)
        return self._reason

    async def _read(self, handler: Handler) -> None:
        buffer = MessageBuffer()
        stream = self.stream
        try:
            while True:
                if stream.direct:
                    # Woken once per arrival, then one read of what is there.
                    await stream.wait_readable()
                    data = stream.receive_nowait()
                    if data is None:
                        continue  # a frame not yet whole
                else:
                    data = await stream.receive_some(_RECEIVE_CHUNK)
                if not data:
                    self.close("the peer closed the connection")
                    return
                buffer.feed(data)
                messages: list[WireMessage] = []
                bad: BadMessage | None = None
                try:
                    while (body := buffer.next_body()) is not None:
                        messages.append(decode_message_untrusted(body))
                except BadMessage as exc:
                    bad = exc
                # The messages before a bad one are handled all the same.
                if messages:
                    await handler(self, messages)
                if bad is not None:
                    raise bad
        except BadMessage as exc:
            self.close(f"bad message from the peer: {exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(f"connection lost: {exc.__cause__ or exc}")

    async def _write(self) -> None:
        try:
            while True:
                await self._wake_writer.wait()
                self._wake_writer = trio.Event()
                while self._pending:
                    # Everything queued meanwhile goes out in one system call
                    # (up to WRITE_BATCH bytes). It stays in _pending until
                    # written, so that send_all queues behind it meanwhile.
                    count = size = 0
                    while count < len(self._pending) and size < WRITE_BATCH:
                        size += len(self._pending[count])
                        count += 1
                    chunk = self._pending[0] if count == 1 else b"".join(self._pending[:count])
                    await self.stream.send_sealed(chunk)
                    del self._pending[:count]
                    self._queued -= size
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(f"connection lost: {exc}")
