"""One live connection to a peer: wire messages in and out of a secure stream.

:class:`PeerConnection` owns a :class:`~gossip.channel.SecureStream`. Its
:meth:`~PeerConnection.run` reads messages and hands each to the node's
handler, and writes queued messages, until the connection ends; it returns
why. The messages queued while a write was under way go out together in the
next write (each still with its own length prefix). Sending never blocks the
caller: a peer too slow to drain its queue is disconnected rather than
allowed to stall the node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio

from .channel import SecureStream
from .wire import BadMessage, MessageBuffer, WireMessage, decode_message_untrusted, encode_message

__all__ = ["PeerConnection", "PeerInfo"]

#: Messages waiting to be written to one peer before it counts as too slow.
SEND_QUEUE: Final = 1024
#: The same in bytes: a peer that asks for much (sync batches of up to 1 MiB,
#: entries by IWANT) and reads nothing would otherwise make the node hold a
#: thousand answers. A correct peer keeps a few sync requests outstanding.
SEND_QUEUE_BYTES: Final = 16 * 1024 * 1024
#: Queued messages are joined into one write until it holds this many bytes.
WRITE_BATCH: Final = 256 * 1024
_RECEIVE_CHUNK: Final = 65536

Handler = Callable[["PeerConnection", WireMessage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What the node shows about a connection."""

    identity: bytes
    address: str
    outbound: bool
    connected_at: float


class PeerConnection:
    """A peer's session: call :meth:`run` in a task, :meth:`send` from anywhere."""

    def __init__(self, stream: SecureStream, *, address: str, outbound: bool) -> None:
        self.stream = stream
        self.info = PeerInfo(stream.remote_identity, address, outbound, trio.current_time())
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[bytes](SEND_QUEUE)
        self._queued = 0  # bytes in the outbox
        self._closed = trio.Event()
        self._reason = ""

    @property
    def identity(self) -> bytes:
        return self.info.identity

    @property
    def queued_bytes(self) -> int:
        """Bytes queued for the peer that the writer has not taken yet
        (at most :data:`SEND_QUEUE_BYTES`)."""
        return self._queued

    def send(self, message: WireMessage) -> bool:
        """Queue ``message``; False (and the connection closing) if the queue is full."""
        return self.send_encoded(encode_message(message))

    def send_encoded(self, data: bytes) -> bool:
        """Queue a message encoded with :func:`~gossip.wire.encode_message`
        (so that one message for many peers is encoded once); as :meth:`send`."""
        if self._closed.is_set():
            return False
        try:
            if self._queued + len(data) > SEND_QUEUE_BYTES:
                raise trio.WouldBlock
            self._outbox_send.send_nowait(data)
        except trio.WouldBlock:
            self.close("the peer reads too slowly (send queue full)")
            return False
        except trio.ClosedResourceError:
            return False
        self._queued += len(data)
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
        self._outbox_send.close()
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)
        return self._reason

    async def _read(self, handler: Handler) -> None:
        buffer = MessageBuffer()
        try:
            while True:
                data = await self.stream.receive_some(_RECEIVE_CHUNK)
                if not data:
                    self.close("the peer closed the connection")
                    return
                buffer.feed(data)
                while (body := buffer.next_body()) is not None:
                    await handler(self, decode_message_untrusted(body))
        except BadMessage as exc:
            self.close(f"bad message from the peer: {exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(f"connection lost: {exc.__cause__ or exc}")

    async def _write(self) -> None:
        try:
            async for data in self._outbox_receive:
                # Everything queued meanwhile goes out in one write: one
                # encryption pass and one system call instead of one per
                # message. Each message keeps its own length prefix, so the
                # bytes on the wire are the same as with one write each.
                batch = [data]
                size = len(data)
                while size < WRITE_BATCH:
                    try:
                        data = self._outbox_receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    batch.append(data)
                    size += len(data)
                self._queued -= size
                await self.stream.send_all(batch[0] if len(batch) == 1 else b"".join(batch))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(f"connection lost: {exc}")
