"""The secure channel over trio memory streams: the stream contract, bad
peers during and after the handshake, and the handshake deadline."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.channel import (
    HANDSHAKE_FRAME_TIME,
    HANDSHAKE_TIMEOUT,
    SecureStream,
    secure_handshake,
)
from gossip.framing import FrameBuffer, encode_frame
from gossip.handshake import MAX_HANDSHAKE_MESSAGE, HandshakeFailed, TorvHandshake

NETWORK = bytes(32)


def _identity(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


async def _secure_pair(
    left: trio.abc.Stream, right: trio.abc.Stream
) -> tuple[SecureStream, SecureStream]:
    streams: dict[str, SecureStream] = {}

    async def side(name: str, stream: trio.abc.Stream, initiator: bool) -> None:
        handshake = TorvHandshake(
            initiator=initiator, identity=_identity(1 if initiator else 2), network_key=NETWORK
        )
        streams[name] = await secure_handshake(stream, handshake)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, "left", left, True)
        nursery.start_soon(side, "right", right, False)
    return streams["left"], streams["right"]


async def _memory_pair() -> tuple[SecureStream, SecureStream]:
    return await _secure_pair(*trio.testing.memory_stream_pair())


async def _lockstep_pair() -> tuple[SecureStream, SecureStream]:
    return await _secure_pair(*trio.testing.lockstep_stream_pair())


@pytest.mark.trio
async def test_the_secure_stream_keeps_the_trio_stream_contract() -> None:
    await trio.testing.check_two_way_stream(_memory_pair, _lockstep_pair)


@pytest.mark.trio
async def test_large_writes_span_frames_and_arrive_whole() -> None:
    left, right = await _memory_pair()
    data = bytes(range(256)) * 1000  # 256,000 bytes: four frames
    received = bytearray()

    async def read_all() -> None:
        while len(received) < len(data):
            received.extend(await right.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await left.send_all(data)
    assert bytes(received) == data
    assert right.remote_identity == _identity(1).public_key().public_bytes_raw()


@pytest.mark.trio
async def test_an_altered_frame_breaks_the_stream() -> None:
    plain_left, plain_right = trio.testing.memory_stream_pair()
    _left, right = await _secure_pair(plain_left, plain_right)
    await plain_left.send_all(encode_frame(b"\x00" * 40))
    with pytest.raises(trio.BrokenResourceError) as info:
        await right.receive_some()
    assert isinstance(info.value.__cause__, HandshakeFailed)
    with pytest.raises(trio.BrokenResourceError):
        await right.receive_some()


@pytest.mark.trio
async def test_a_connection_ending_inside_a_frame_breaks_the_stream() -> None:
    plain_left, plain_right = trio.testing.memory_stream_pair()
    _left, right = await _secure_pair(plain_left, plain_right)
    await plain_left.send_all(b"\x00\x30abc")
    await plain_left.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await right.receive_some()


@pytest.mark.trio
@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00",
        b"\x00\x05abc",
        b"\x00\x20" + b"x" * 32 + b"\x00\x10" + b"y" * 16,
        b"\xff" * 300,
    ],
    ids=["nothing", "half-a-length", "truncated", "bad-second", "noise"],
)
async def test_garbage_during_the_handshake_fails_with_a_reason(garbage: bytes) -> None:
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(garbage)
    await client.aclose()
    handshake = TorvHandshake(initiator=False, identity=_identity(2), network_key=NETWORK)
    with pytest.raises(HandshakeFailed):
        await secure_handshake(server, handshake)


@pytest.mark.trio
async def test_a_silent_handshake_is_dropped_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    _client, server = trio.testing.memory_stream_pair()
    handshake = TorvHandshake(initiator=False, identity=_identity(2), network_key=NETWORK)
    start = trio.current_time()
    with pytest.raises(HandshakeFailed, match="longer than"):
        await secure_handshake(server, handshake)
    assert trio.current_time() - start == pytest.approx(HANDSHAKE_TIMEOUT)


@pytest.mark.trio
@pytest.mark.parametrize("begun", [b"\x01", b"\x00\x60", b"\x00\x60" + bytes(50)])
async def test_a_handshake_message_that_trickles_in_is_dropped(
    autojump_clock: trio.testing.MockClock, begun: bytes
) -> None:
    # A slow loris: a message begun, then a byte now and then (never whole).
    client, server = trio.testing.memory_stream_pair()
    handshake = TorvHandshake(initiator=False, identity=_identity(2), network_key=NETWORK)
    start = trio.current_time()

    async def trickle() -> None:
        await client.send_all(begun)
        for _ in range(100):
            await trio.sleep(0.2)
            await client.send_all(b"\x00")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        with pytest.raises(HandshakeFailed, match="too slowly"):
            await secure_handshake(server, handshake)
        nursery.cancel_scope.cancel()
    assert trio.current_time() - start == pytest.approx(HANDSHAKE_FRAME_TIME)


@pytest.mark.trio
async def test_a_handshake_message_longer_than_any_valid_one_is_refused_unread() -> None:
    client, server = trio.testing.memory_stream_pair()
    handshake = TorvHandshake(initiator=False, identity=_identity(2), network_key=NETWORK)
    await client.send_all(encode_frame(bytes(MAX_HANDSHAKE_MESSAGE + 1))[:10])
    with pytest.raises(HandshakeFailed, match="longer than any valid one"):
        await secure_handshake(server, handshake)


@pytest.mark.trio
async def test_every_message_of_a_real_handshake_is_within_the_bound() -> None:
    initiator = TorvHandshake(initiator=True, identity=_identity(1), network_key=NETWORK)
    responder = TorvHandshake(initiator=False, identity=_identity(2), network_key=NETWORK)
    sizes = []
    while initiator.session is None or responder.session is None:
        for this, other in ((initiator, responder), (responder, initiator)):
            while (message := this.next_message()) is not None:
                sizes.append(len(message))
                other.receive(message)
    assert len(sizes) == 3
    assert max(sizes) <= MAX_HANDSHAKE_MESSAGE


# --- reading a socket directly -------------------------------------------------------


async def _socket_pair() -> tuple[SecureStream, SecureStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listeners[0].accept())

        nursery.start_soon(accept)
        dialled = await trio.open_tcp_stream("127.0.0.1", port)
    await listeners[0].aclose()
    return await _secure_pair(dialled, accepted[0])


async def _receive_direct(stream: SecureStream, size: int) -> bytes:
    """Read ``size`` bytes as a peer connection does: wait, then read what is there."""
    data = b""
    with trio.fail_after(10):
        while len(data) < size:
            await stream.wait_readable()
            chunk = stream.receive_nowait()
            assert chunk != b"", "the stream ended early"
            data += chunk or b""
    return data


@pytest.mark.trio
async def test_a_socket_stream_is_read_directly_whole_and_in_order() -> None:
    left, right = await _socket_pair()
    assert left.direct
    assert right.direct
    assert right.receive_nowait() is None  # nothing sent yet: no waiting, no error
    payload = bytes(range(256)) * 1000  # spans several frames, and the socket buffers

    async def send() -> None:
        await left.send_all(b"first")
        await left.send_all(payload)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        assert await _receive_direct(right, 5 + len(payload)) == b"first" + payload
    await left.aclose()
    with trio.fail_after(10):
        await right.wait_readable()
    assert right.receive_nowait() == b""  # the peer closed: end of stream
    await right.aclose()


@pytest.mark.trio
async def test_a_whole_frame_already_buffered_is_read_without_waiting_for_the_socket() -> None:
    # Bytes that arrived with the handshake's last message stay in the frame
    # buffer: the socket has nothing more, and they must not wait for it.
    left, right = await _socket_pair()
    buffered = SecureStream(
        right.transport_stream, right.session, FrameBuffer(left.seal(b"early"))
    )
    with trio.fail_after(1):
        await buffered.wait_readable()
    assert buffered.receive_nowait() == b"early"
    await left.aclose()
    await right.aclose()


@pytest.mark.trio
async def test_a_socket_closed_inside_a_frame_breaks_the_stream() -> None:
    left, right = await _socket_pair()
    sealed = left.seal(b"never whole")
    await left.transport_stream.send_all(sealed[:-3])
    await left.aclose()
    with pytest.raises(trio.BrokenResourceError):  # noqa: PT012 (waits, then reads)
        with trio.fail_after(10):
            while True:
                await right.wait_readable()
                if right.receive_nowait() is not None:
                    break
    await right.aclose()


@pytest.mark.trio
async def test_an_altered_frame_read_directly_breaks_the_stream() -> None:
    left, right = await _socket_pair()
    sealed = bytearray(left.seal(b"hello"))
    sealed[-1] ^= 1
    await left.transport_stream.send_all(bytes(sealed))
    with trio.fail_after(10):
        await right.wait_readable()
    with pytest.raises(trio.BrokenResourceError):
        right.receive_nowait()
    await left.aclose()
    await right.aclose()
