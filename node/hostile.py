"""Hostile peers, for tests and benches: the real handshake, then abuse.

A node must keep serving honest peers while others lie, flood and stall.
:func:`hostile_peer` dials a node over TCP, completes the torv handshake
(``gossip.handshake`` over ``gossip.channel``, with the node's network key:
``node.testing.TEST_NETWORK_KEY`` for a swarm) under an identity of its own,
and yields a :class:`HostilePeer` whose methods misbehave in one way each::

    async with open_swarm(3) as swarm:
        target = swarm.nodes[0]
        await target.follow(swarm.nodes[1].me)
        async with hostile_peer(target) as attacker:
            await attacker.send_forged(swarm.nodes[1].me, count=8)
            assert await attacker.wait_closed(timeout=5)
            print(attacker.disconnect_delay)

The attacks:

- :meth:`~HostilePeer.send_garbage_frames`: frames that do not decrypt;
- :meth:`~HostilePeer.send_garbage_messages`: frames that decrypt to bytes
  that are no wire message;
- :meth:`~HostilePeer.send_oversize`: a wire message longer than any a
  node takes, announced and begun;
- :meth:`~HostilePeer.send_forged`: entries of someone else's feed with
  signatures that do not verify;
- :meth:`~HostilePeer.send_unlinked`: entries the attacker signed whose
  chain does not hold (a seq 2 whose ``prev`` is not seq 1);
- :meth:`~HostilePeer.serve_forged`: offers a feed in sync and answers the
  node's requests with entries whose signatures do not verify;
- :meth:`~HostilePeer.flood_iwant`: IWANT for the same ids, again and again;
- :meth:`~HostilePeer.flood_graft`: GRAFT after GRAFT (after a PRUNE, so
  during the backoff it set);
- :meth:`~HostilePeer.flood_want`: sync requests without end (and, opened
  with ``read=False``, no reading of the answers);
- :meth:`~HostilePeer.slow_loris` (with ``handshake=False``): a handshake
  trickled a byte at a time that never ends; and
  :meth:`~HostilePeer.stall_handshake`: the first message, then silence;
- :func:`connection_flood`: as many connections as asked (or as the system
  allows), left in the handshake or each with a fresh identity.

While a peer is open, a task reads everything the node sends (counted by type
in :attr:`HostilePeer.received`), so a node that hangs up does so because of
the misbehaviour, not because the attacker stopped reading (unless it was
opened with ``read=False``). No method raises when the node hangs up: each
returns how much went out before that, and :meth:`~HostilePeer.wait_closed`
says whether the node closed the connection
(:attr:`~HostilePeer.disconnect_delay`: how soon after the first misbehaviour).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Final

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.channel import SecureStream, secure_handshake
from gossip.framing import MAX_FRAME, encode_frame
from gossip.handshake import MAX_HANDSHAKE_MESSAGE, HandshakeFailed, TorvHandshake
from gossip.sync import answer
from gossip.wire import (
    MAX_IDS,
    MAX_RANGE,
    MAX_WIRE_MESSAGE,
    BadMessage,
    EntryMessage,
    Graft,
    Heads,
    IDontWant,
    IWant,
    MessageBuffer,
    Prune,
    RawEntry,
    Subscribe,
    Want,
    WireMessage,
    decode_message_untrusted,
    encode_message,
    feed_topic,
)
from storage.entry import VERSION, Header, create_entry
from storage.errors import InvalidArgument
from storage.payloads import Post, encode_payload

from .runtime import Node

__all__ = [
    "ConnectionFlood",
    "HostilePeer",
    "connection_flood",
    "forged_entries",
    "hostile_peer",
    "unlinked_entries",
]

#: A node, or a TCP address (then the network key must be given).
Target = Node | tuple[str, int]

_LENGTH: Final = struct.Struct(">I")  # a wire message's length prefix
_RECEIVE_CHUNK: Final = 65536
#: Encoded messages joined into one write, so that a flood is not one
#: system call (and one frame) per message.
_WRITE_BATCH: Final = 60_000
#: How often a peer that does not read writes, to learn whether the node hung up.
_PROBE_INTERVAL: Final = 0.05
#: A timestamp (ms) for generated entries: fixed, so the bytes are reproducible.
_EPOCH_MS: Final = 1_700_000_000_000


def _address_and_key(target: Target, network_key: bytes | None) -> tuple[tuple[str, int], bytes]:
    if isinstance(target, Node):
        return target.listen_address, network_key or target.options.network_key
    if network_key is None:
        raise InvalidArgument("a hostile peer aimed at an address needs the network key")
    return target, network_key


def forged_entries(
    feed: bytes, count: int, *, first_seq: int = 1, seed: int = 0
) -> list[RawEntry]:
    """``count`` posts that claim to be ``feed``'s, seq ``first_seq`` on, each
    well-formed but with a random signature (which does not verify)."""
    rng = random.Random(seed)
    entries = []
    for n in range(count):
        seq = first_seq + n
        payload = encode_payload(Post(text=f"forged {seed}/{n}"))
        header = Header(
            version=VERSION,
            author=feed,
            seq=seq,
            prev=None if seq == 1 else rng.randbytes(32),
            timestamp=_EPOCH_MS + n,
            kind=Post.kind,
            payload_hash=hashlib.sha256(payload).digest(),
            payload_size=len(payload),
        )
        entries.append(RawEntry(header.encode(), rng.randbytes(64), payload))
    return entries


def unlinked_entries(key: Ed25519PrivateKey, count: int, *, seed: int = 0) -> list[RawEntry]:
    """Seq 1 of ``key``'s feed, then ``count`` entries of seq 2 signed by
    ``key`` whose ``prev`` is random: genuine signatures, broken chain."""
    rng = random.Random(seed)
    first = create_entry(key, seq=1, prev=None, timestamp=_EPOCH_MS, payload=Post("first"))
    entries = [RawEntry(first.header_bytes, first.signature, first.payload)]
    for n in range(count):
        entry = create_entry(
            key,
            seq=2,
            prev=rng.randbytes(32),
            timestamp=_EPOCH_MS + 1 + n,
            payload=Post(f"out of chain {seed}/{n}"),
        )
        entries.append(RawEntry(entry.header_bytes, entry.signature, entry.payload))
    return entries


class HostilePeer:
    """One misbehaving connection to a node; made by :func:`hostile_peer`.

    ``key`` and ``identity`` are the attacker's; ``secure`` is the session
    (``None`` without a handshake). Every method returns how much went out
    before the node hung up.
    """

    def __init__(
        self, key: Ed25519PrivateKey, transport: trio.SocketStream, network_key: bytes
    ) -> None:
        self.key = key
        self.identity = key.public_key().public_bytes_raw()
        self.transport = transport
        self.network_key = network_key
        self.secure: SecureStream | None = None
        #: Messages the node sent, by type (``"bad"``: any that did not decode).
        self.received: Counter[str] = Counter()
        #: ``trio.current_time()`` of the first hostile write, and of the hang-up.
        self.first_misbehaviour: float | None = None
        self.closed_at: float | None = None
        self._closed = trio.Event()
        self._reading = False
        #: The sync requests the node sent, in order (see :meth:`serve_forged`).
        self.wants: list[Want] = []
        self._wanted = trio.Event()

    # --- outcome ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the node has closed the connection."""
        return self._closed.is_set()

    @property
    def disconnect_delay(self) -> float | None:
        """Seconds from the first misbehaviour to the node's hang-up (``None``
        while either has not happened)."""
        if self.closed_at is None or self.first_misbehaviour is None:
            return None
        return self.closed_at - self.first_misbehaviour

    # A timeout, as the swarm helpers of node.testing take: a script may wait
    # and go on whichever way it ended.
    async def wait_closed(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the node to hang up; whether it did.

        A peer opened with ``read=False`` learns of a hang-up only when a write
        fails: it writes a harmless IDONTWANT every 50 ms to find out.
        """
        with trio.move_on_after(timeout):
            if self._reading or self.secure is None:
                await self._closed.wait()
            probe = encode_message(IDontWant((bytes(32),)))
            while not self.closed:
                await self._write(probe, hostile=False)
                with trio.move_on_after(_PROBE_INTERVAL):
                    await self._closed.wait()
        return self.closed

    # --- attacks after the handshake ------------------------------------------------

    async def send(self, *messages: WireMessage, hostile: bool = True) -> int:
        """Send well-formed ``messages`` (whatever they say); how many went out.

        ``hostile=False`` for messages a correct peer could send (a
        subscription before a flood): they do not start the disconnect clock.
        """
        return await self._send_encoded([encode_message(m) for m in messages], hostile=hostile)

    async def send_garbage_frames(self, count: int = 1, size: int = 64, *, seed: int = 0) -> int:
        """``count`` frames of ``size`` random bytes where Noise messages belong
        (before the handshake ends, the handshake's); how many went out."""
        if not 1 <= size <= MAX_FRAME:
            raise InvalidArgument(f"a frame holds 1 to {MAX_FRAME} bytes")
        rng = random.Random(seed)
        sent = 0
        for _ in range(count):
            if not await self._write(encode_frame(rng.randbytes(size)), raw=True):
                break
            sent += 1
        return sent

    async def send_garbage_messages(self, count: int = 1, size: int = 64, *, seed: int = 0) -> int:
        """``count`` messages of ``size`` random bytes, each with a correct
        length prefix and encrypted correctly: no wire message decodes."""
        rng = random.Random(seed)
        return await self._send_encoded(
            [_LENGTH.pack(size) + rng.randbytes(size) for _ in range(count)]
        )

    async def send_oversize(
        self, length: int = MAX_WIRE_MESSAGE + 1, *, body: int = 2 * MAX_FRAME
    ) -> int:
        """Announce a wire message of ``length`` bytes and send the first
        ``body`` bytes of it; how many bytes went out (prefix included)."""
        data = _LENGTH.pack(length) + bytes(min(body, length))
        return len(data) if await self._write(data) else 0

    async def send_forged(self, feed: bytes, count: int, *, first_seq: int = 1) -> int:
        """Subscribe to ``feed``'s topic and send ``count`` posts of ``feed``
        with bad signatures (:func:`forged_entries`); how many went out."""
        topic = feed_topic(feed)
        await self.send(Subscribe((topic,)), hostile=False)
        entries = forged_entries(feed, count, first_seq=first_seq, seed=first_seq)
        return await self.send(*(EntryMessage((topic,), raw) for raw in entries))

    async def send_unlinked(self, count: int) -> int:
        """Send the attacker's own seq 1, then ``count`` entries of seq 2 that
        do not link to it (:func:`unlinked_entries`), in the attacker's feed
        topic: a node that replicates the attacker's feed refuses them. How
        many of the unlinked ones went out."""
        topic = feed_topic(self.identity)
        first, *rest = unlinked_entries(self.key, count)
        await self.send(Subscribe((topic,)), EntryMessage((topic,), first), hostile=False)
        return await self.send(*(EntryMessage((topic,), raw) for raw in rest))

    async def serve_forged(self, feed: bytes, head: int) -> int:
        """Offer ``feed`` up to seq ``head`` in ``heads``, then answer each sync
        request of the node for it with posts of ``feed`` of the seqs asked
        whose signatures do not verify (:func:`forged_entries`), until the
        node hangs up; how many batches went out. Needs a peer that reads
        (the requests come in what it reads)."""
        if not self._reading:
            raise InvalidArgument("a peer opened with read=False sees no requests")
        await self.send(Heads(((feed, head),)), hostile=False)
        sent = answered = 0
        while not self.closed:
            while answered < len(self.wants):
                want = self.wants[answered]
                answered += 1
                if want.feed == feed:
                    count = want.last - want.first + 1
                    forged = forged_entries(feed, count, first_seq=want.first, seed=answered)
                    sent += await self.send(answer(want, forged))
            with trio.move_on_after(_PROBE_INTERVAL):
                await self._wanted.wait()
        return sent

    async def flood_iwant(self, ids: Sequence[bytes], messages: int) -> int:
        """Send ``messages`` IWANTs, each asking for ``ids`` (up to the first
        :data:`~gossip.wire.MAX_IDS`); how many went out."""
        if not ids:
            raise InvalidArgument("an IWANT asks for at least one id")
        want = encode_message(IWant(tuple(ids[:MAX_IDS])))
        return await self._send_encoded([want] * messages)

    async def flood_graft(self, topic: str, count: int, *, prune_first: bool = True) -> int:
        """Subscribe to ``topic``, PRUNE it (so that the node backs off, unless
        ``prune_first`` is false), then send ``count`` GRAFTs; how many went out."""
        await self.send(Subscribe((topic,)), hostile=False)
        if prune_first:
            await self.send(Prune(topic, 0), hostile=False)
        return await self._send_encoded([encode_message(Graft(topic))] * count)

    async def flood_want(
        self, feed: bytes, messages: int, *, first: int = 1, last: int = MAX_RANGE
    ) -> int:
        """Send ``messages`` sync requests for ``feed``'s entries ``first`` to
        ``last``, without waiting for answers (a correct peer keeps a few
        outstanding); how many went out. With ``read=False`` the answers pile
        up at the node."""
        want = [
            encode_message(Want(request, feed, first, last, newest_first=False))
            for request in range(messages)
        ]
        return await self._send_encoded(want)

    # --- attacks on the handshake ------------------------------------------------------

    async def slow_loris(self, interval: float = 0.05, limit: float | None = None) -> int:
        """Announce a handshake frame of the largest size a handshake message
        may have and trickle it a byte every ``interval`` seconds, never
        finishing, until the node hangs up (or ``limit`` seconds pass); how
        many bytes went out. Only on a peer opened with ``handshake=False``."""
        self._check_raw()
        rng = random.Random(interval)
        sent = 0
        with trio.move_on_after(limit if limit is not None else float("inf")):
            data = encode_frame(bytes(MAX_HANDSHAKE_MESSAGE))[:2]  # the length alone
            while not self.closed:
                if not await self._write(data, raw=True):
                    break
                sent += len(data)
                data = rng.randbytes(1)
                with trio.move_on_after(interval):
                    await self._closed.wait()
        return sent

    async def stall_handshake(self) -> None:
        """Send a genuine first handshake message, then nothing (the node's
        answer is read and dropped). Only with ``handshake=False``."""
        self._check_raw()
        handshake = TorvHandshake(initiator=True, identity=self.key, network_key=self.network_key)
        first = handshake.next_message()
        if first is not None:
            await self._write(encode_frame(first), raw=True)

    # --- internals -------------------------------------------------------------------

    def _check_raw(self) -> None:
        if self.secure is not None:
            raise InvalidArgument("this attack is on the handshake: open with handshake=False")

    async def _send_encoded(self, encoded: Sequence[bytes], *, hostile: bool = True) -> int:
        sent = start = size = 0
        for end, data in enumerate(encoded, 1):
            size += len(data)
            if size >= _WRITE_BATCH or end == len(encoded):
                if not await self._write(b"".join(encoded[start:end]), hostile=hostile):
                    break
                sent, start, size = end, end, 0
        return sent

    async def _write(self, data: bytes, *, raw: bool = False, hostile: bool = True) -> bool:
        """Write ``data`` (through the session unless ``raw``); whether it went out."""
        if self.closed:
            return False
        if hostile and self.first_misbehaviour is None:
            self.first_misbehaviour = trio.current_time()
        stream: trio.abc.Stream = self.transport if raw or self.secure is None else self.secure
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._hung_up()
            return False
        return True

    def _hung_up(self) -> None:
        if not self._closed.is_set():
            self.closed_at = trio.current_time()
            self._closed.set()

    async def _read(self) -> None:
        """Read (and count) what the node sends until it hangs up."""
        buffer = MessageBuffer()
        try:
            while True:
                if self.secure is None:
                    data = await self.transport.receive_some(_RECEIVE_CHUNK)
                else:
                    data = await self.secure.receive_some(_RECEIVE_CHUNK)
                if not data:
                    break
                if self.secure is None:
                    continue
                buffer.feed(data)
                while (body := buffer.next_body()) is not None:
                    try:
                        message = decode_message_untrusted(body)
                    except BadMessage:
                        self.received["bad"] += 1
                        continue
                    self.received[message.type] += 1
                    if isinstance(message, Want):
                        self.wants.append(message)
                        self._wanted.set()
                        self._wanted = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError, BadMessage):
            pass
        self._hung_up()


@contextlib.asynccontextmanager
async def hostile_peer(
    target: Target,
    *,
    identity: Ed25519PrivateKey | None = None,
    network_key: bytes | None = None,
    handshake: bool = True,
    read: bool = True,
) -> AsyncIterator[HostilePeer]:
    """Connect to ``target`` as a hostile peer; close the connection at the end.

    ``identity`` is the attacker's key (a fresh one by default; give the same
    key twice to come back under the same identity); ``network_key``
    defaults to the target node's. With ``handshake=False`` only the TCP
    connection is opened, for the attacks on the handshake. With
    ``read=False`` nothing the node sends is read.

    Raises :class:`~gossip.handshake.HandshakeFailed` if the node ends the
    handshake (for example because it refuses the attacker), and ``OSError``
    if the connection cannot be opened.
    """
    address, key_bytes = _address_and_key(target, network_key)
    key = identity or Ed25519PrivateKey.generate()
    transport = await trio.open_tcp_stream(*address)
    try:
        peer = HostilePeer(key, transport, key_bytes)
        if handshake:
            torv = TorvHandshake(initiator=True, identity=key, network_key=key_bytes)
            peer.secure = await secure_handshake(transport, torv)
        async with trio.open_nursery() as nursery:
            if read:
                peer._reading = True
                nursery.start_soon(peer._read)
            try:
                yield peer
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(transport)


class ConnectionFlood:
    """The connections of :func:`connection_flood`, while they are held open."""

    def __init__(self) -> None:
        #: Connections opened; ``failed``: connects the system refused (out of
        #: descriptors or ports); ``handshakes``: handshakes completed.
        self.opened = 0
        self.failed = 0
        self.handshakes = 0
        #: Connections the node closed (during the handshake or after).
        self.closed_by_target = 0
        self._changed = trio.Event()
        self._opened_all = trio.Event()

    async def wait_opened(self) -> None:
        """Wait until each connection is open (with its handshake) or has failed."""
        await self._opened_all.wait()

    @property
    def open(self) -> int:
        """Connections opened and not closed by the node."""
        return self.opened - self.closed_by_target

    async def wait_closed(self, count: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` s until the node has closed ``count`` of the
        connections; whether it has."""
        with trio.move_on_after(timeout):
            while self.closed_by_target < count:
                await self._changed.wait()
        return self.closed_by_target >= count

    def _note(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@contextlib.asynccontextmanager
async def connection_flood(
    target: Target,
    count: int,
    *,
    handshake: bool = False,
    network_key: bytes | None = None,
    concurrency: int = 128,
) -> AsyncIterator[ConnectionFlood]:
    """Open ``count`` TCP connections to ``target`` and hold them until the
    block ends. The block starts at once; :meth:`ConnectionFlood.wait_opened`
    waits until each is open (with its handshake done) or has failed.

    Without ``handshake`` each connection sends nothing (a handshake the
    node waits for); with it, each completes the handshake under a fresh
    identity and then sends nothing. At most ``concurrency`` connections
    are being opened (and their handshakes run) at once.
    """
    address, key_bytes = _address_and_key(target, network_key)
    flood = ConnectionFlood()
    limiter = trio.CapacityLimiter(concurrency)
    pending = count

    async def connect() -> tuple[trio.SocketStream, trio.abc.Stream | None] | None:
        """A connection, and the stream to read (``None``: the handshake failed)."""
        try:
            stream = await trio.open_tcp_stream(*address)
        except OSError:
            flood.failed += 1
            return None
        flood.opened += 1
        if not handshake:
            return stream, stream
        identity = Ed25519PrivateKey.generate()
        torv = TorvHandshake(initiator=True, identity=identity, network_key=key_bytes)
        try:
            secure = await secure_handshake(stream, torv)
        except HandshakeFailed:
            return stream, None
        flood.handshakes += 1
        return stream, secure

    async def one() -> None:
        nonlocal pending
        try:
            # The handshake too: a node drops the oldest of too many
            # connections waiting in the handshake, sybils' as well.
            async with limiter:
                opened = await connect()
        finally:
            pending -= 1
            if pending == 0:
                flood._opened_all.set()
        if opened is None:
            return
        stream, reader = opened
        try:
            while reader is not None and await reader.receive_some(_RECEIVE_CHUNK):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)
        flood.closed_by_target += 1
        flood._note()

    async with trio.open_nursery() as nursery:
        if count <= 0:
            flood._opened_all.set()
        for _ in range(count):
            nursery.start_soon(one)
        try:
            yield flood
        finally:
            nursery.cancel_scope.cancel()
