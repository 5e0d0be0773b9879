"""Peer connections: what is queued arrives whole and in order, messages
queued together leave in one write (over trio memory streams), and over a
real socket a write goes out from the sending task when nothing waits
before it, the rest through the writer task."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.channel import SecureStream, secure_handshake
from gossip.handshake import TorvHandshake
from gossip.peer import SEND_QUEUE_BYTES, WRITE_BATCH, PeerConnection
from gossip.wire import (
    MAX_IDS,
    IDontWant,
    MessageBuffer,
    WireMessage,
    decode_message_untrusted,
    encode_message,
)

NETWORK = bytes(32)


class _CountingStream(trio.abc.Stream):
    """Passes everything through to ``inner`` and notes the size of each write."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.writes: list[int] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(len(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _connections() -> tuple[PeerConnection, PeerConnection, _CountingStream]:
    """Two connected peers; the writes of the first (after the handshake) are counted."""
    plain_left, plain_right = trio.testing.memory_stream_pair()
    counting = _CountingStream(plain_left)
    connections: dict[bool, PeerConnection] = {}

    async def side(stream: trio.abc.Stream, initiator: bool) -> None:
        handshake = TorvHandshake(
            initiator=initiator,
            identity=Ed25519PrivateKey.from_private_bytes(bytes([1 + initiator]) * 32),
            network_key=NETWORK,
        )
        secure = await secure_handshake(stream, handshake)
        connections[initiator] = PeerConnection(secure, address="memory", outbound=initiator)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, counting, True)
        nursery.start_soon(side, plain_right, False)
    counting.writes.clear()
    return connections[True], connections[False], counting


async def _deliver(messages: list[WireMessage]) -> tuple[list[WireMessage], list[int]]:
    """Queue ``messages`` on one side, then run both sides until the other has
    read them all; return what it read and the sizes of the sender's writes."""
    sender, receiver, counting = await _connections()
    for message in messages:
        assert sender.send(message)
    received: list[WireMessage] = []

    async def ignore(connection: PeerConnection, batch: Sequence[WireMessage]) -> None:
        raise AssertionError("the sender was sent nothing")

    async def collect(connection: PeerConnection, batch: Sequence[WireMessage]) -> None:
        received.extend(batch)
        if len(received) == len(messages):
            connection.close("read everything")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run, ignore)
        assert await receiver.run(collect) == "read everything"
        sender.close("done")
    return received, counting.writes


def _idontwant(n: int, ids: int = 1) -> IDontWant:
    return IDontWant(tuple(bytes([n, k % 256, k // 256]) * 10 + b"id" for k in range(ids)))


@pytest.mark.trio
async def test_messages_queued_together_leave_in_one_write() -> None:
    messages: list[WireMessage] = [_idontwant(n) for n in range(50)]
    received, writes = await _deliver(messages)
    assert received == messages
    assert len(writes) == 1


@pytest.mark.trio
async def test_a_write_holds_about_write_batch_bytes_at_most() -> None:
    messages: list[WireMessage] = [_idontwant(n, MAX_IDS) for n in range(20)]
    size = len(encode_message(messages[0]))
    assert 20 * size > WRITE_BATCH
    received, writes = await _deliver(messages)
    assert received == messages
    # Each message is sealed when queued (its own frame: length and tag
    # added); sealed messages are joined until the write holds WRITE_BATCH.
    sealed = SecureStream.sealed_size(size)
    per_write = -(-WRITE_BATCH // sealed)
    assert len(writes) == -(-len(messages) // per_write)
    assert max(writes) == per_write * sealed


@pytest.mark.trio
async def test_a_closed_connection_takes_no_more_messages() -> None:
    sender, _, _ = await _connections()
    sender.close("done")
    assert not sender.send(_idontwant(1))


@pytest.mark.trio
async def test_a_peer_that_reads_nothing_is_dropped_once_its_queue_holds_too_many_bytes() -> None:
    # Regression (issue 6): a peer that asked for sync batches of 1 MiB and
    # read none made the node hold SEND_QUEUE of them, a GiB per connection.
    sender, _, _ = await _connections()
    batch = bytes(1024 * 1024)
    queued = 0
    while sender.send_all([batch]):
        queued += 1
    assert queued == SEND_QUEUE_BYTES // SecureStream.sealed_size(len(batch))
    assert sender.queued_bytes <= SEND_QUEUE_BYTES

    async def ignore(connection: PeerConnection, batch: Sequence[WireMessage]) -> None:
        raise AssertionError("nothing was sent to the sender")

    assert "send queue full" in await sender.run(ignore)


async def _socket_connections() -> tuple[PeerConnection, SecureStream]:
    """A connection over a real loopback socket, and the secure stream of its peer."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    streams: dict[bool, SecureStream] = {}

    async def side(initiator: bool) -> None:
        if initiator:
            stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        else:
            stream = await listeners[0].accept()
        handshake = TorvHandshake(
            initiator=initiator,
            identity=Ed25519PrivateKey.from_private_bytes(bytes([1 + initiator]) * 32),
            network_key=NETWORK,
        )
        streams[initiator] = await secure_handshake(stream, handshake)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, True)
        nursery.start_soon(side, False)
    await listeners[0].aclose()
    connection = PeerConnection(streams[True], address="loopback", outbound=True)
    return connection, streams[False]


async def _read_messages(stream: SecureStream, count: int) -> list[WireMessage]:
    buffer = MessageBuffer()
    out: list[WireMessage] = []
    with trio.fail_after(10):
        while len(out) < count:
            buffer.feed(await stream.receive_some(65536))
            while (body := buffer.next_body()) is not None:
                out.append(decode_message_untrusted(body))
    return out


@pytest.mark.trio
async def test_over_a_socket_a_send_is_written_by_the_sending_task() -> None:
    # No run(): no writer task. The bytes reach the peer all the same.
    sender, peer = await _socket_connections()
    messages: list[WireMessage] = [_idontwant(n) for n in range(3)]
    assert sender.send_messages(messages)
    assert sender.queued_bytes == 0
    assert await _read_messages(peer, 3) == messages
    await sender.stream.aclose()
    await peer.aclose()


@pytest.mark.trio
async def test_over_a_socket_what_does_not_fit_waits_for_the_writer_in_order() -> None:
    sender, peer = await _socket_connections()
    big = [_idontwant(n, MAX_IDS) for n in range(200)]
    # Queued while the peer reads nothing: the socket's buffers fill, and
    # what they do not take waits in the queue, behind what was partly written.
    for message in big:
        assert sender.send(message)
    queued = sender.queued_bytes
    assert queued > 0
    # With bytes waiting, a new message is not written past them.
    last = _idontwant(250)
    assert sender.send(last)
    assert sender.queued_bytes == queued + SecureStream.sealed_size(len(encode_message(last)))

    async def ignore(connection: PeerConnection, batch: Sequence[WireMessage]) -> None:
        raise AssertionError("the peer sent nothing")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run, ignore)
        received = await _read_messages(peer, len(big) + 1)
        sender.close("done")
    assert received == [*big, last]
    assert sender.queued_bytes == 0
    await peer.aclose()
