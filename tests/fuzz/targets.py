"""The fuzz targets: where untrusted bytes enter torv, and what may come out.

Each :class:`Target` turns one byte string into a call of the real decoder
(or a short chain of them, the way the node chains them) and names the
errors the decoder documents. Any other exception, or a broken invariant
(an :class:`AssertionError` here), is a finding. ``corpus()`` gives valid
inputs in the target's layout; :mod:`tests.fuzz.mutate` varies them.

Inputs with several parts use :func:`~tests.fuzz.mutate.split_parts` (u16
length, bytes; the last part is the rest), so that any byte string is an
input and the parts of a valid one mutate separately.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import msgpack
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gossip.framing import FrameBuffer, encode_frame
from gossip.handshake import HandshakeFailed, TorvHandshake
from gossip.noise import CipherState, NoiseXX
from gossip.router import Router, RouterParams, Verdict
from gossip.sync import GapBuffer, SyncPlanner
from gossip.wire import (
    SQUARE,
    BadMessage,
    EntryBatch,
    EntryMessage,
    Graft,
    Heads,
    IDontWant,
    IHave,
    IWant,
    MessageBuffer,
    Prune,
    RawEntry,
    Subscribe,
    Unsubscribe,
    Want,
    WireMessage,
    decode_message_untrusted,
    encode_message,
    feed_topic,
)
from node.home import CONFIG_TEMPLATE, Home
from node.records import (
    BadRecord,
    address_key,
    decode_record_untrusted,
    decode_value_for_digest_untrusted,
    decode_value_untrusted,
    dht_node_id,
    encode_provider_set,
    key_digest,
    provider_key,
    sign_record,
)
from storage.entry import Entry, create_entry, entry_id, parse_entry_untrusted
from storage.errors import (
    BadExportFile,
    BadSignature,
    ConfigError,
    InvalidArgument,
    MalformedEntry,
    TorvError,
)
from storage.exportfile import MAGIC, read_export_untrusted, write_export
from storage.payloads import (
    Block,
    Delete,
    Follow,
    Payload,
    Post,
    Profile,
    React,
    Repost,
    Unblock,
    Unfollow,
    UnknownPayload,
    decode_payload_untrusted,
    encode_payload,
)

from .mutate import Layout, Parts, Stream, TomlTree, Whole, join_parts, split_parts

__all__ = [
    "DHT_NOW",
    "TARGETS",
    "Target",
    "accepts",
    "fixed_key",
    "record_values",
    "running_node",
    "serve_control_bytes",
    "signed_chain",
]

#: A target's run function: raises only the target's ``allowed`` errors.
Run = Callable[[bytes], None]


@dataclass(frozen=True)
class Target:
    """One decoder under fuzzing.

    ``start`` returns the run function; resources it needs (a loop, a node
    in a thread, a temporary directory) are closed by the exit stack.
    """

    name: str
    covers: str
    allowed: tuple[type[BaseException], ...]
    layout: Layout
    corpus: Callable[[], list[bytes]]
    start: Callable[[contextlib.ExitStack], Run]


def accepts(target: Target, run: Run, data: bytes) -> bool:
    """Run ``data`` through ``target``: True if accepted, False if refused with
    one of its documented errors; anything else propagates (a finding)."""
    try:
        run(data)
    except target.allowed:
        return False
    return True


def fixed_key(n: int) -> Ed25519PrivateKey:
    """A fixed Ed25519 key per ``n``, the same on every run."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"torv-fuzz-%d" % n).digest())


def _x25519(n: int) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(hashlib.sha256(b"torv-fuzz-x-%d" % n).digest())


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _plain(run: Run) -> Callable[[contextlib.ExitStack], Run]:
    return lambda _stack: run


# --- entries and payloads ---------------------------------------------------------

_AUTHOR = fixed_key(1)
_FEED = _public(_AUTHOR)
_OTHER = _public(fixed_key(2))


def _payloads() -> list[Payload]:
    some_id = hashlib.sha256(b"some entry").digest()
    return [
        Post("hello, square"),
        Post(
            "a reply\nwith two lines",
            root=some_id,
            parent=some_id,
            mentions=(_OTHER,),
            tags=("fuzz", "torv"),
            cw="spoilers",
        ),
        Repost(entry=some_id, author=_OTHER),
        React(entry=some_id, author=_OTHER, emoji="♥"),
        Follow(_OTHER),
        Unfollow(_OTHER),
        Block(_OTHER),
        Unblock(_OTHER),
        Profile(name="Ada", bio="writes\nthings"),
        Profile(),
        Delete(some_id),
        UnknownPayload("poll", {"choices": ["a", "b"], "v": 1}),
    ]


@cache
def signed_chain() -> tuple[Entry, ...]:
    """A valid log of every kind, then plain posts up to seq 40."""
    payloads = _payloads()
    payloads += [Post(f"post {n}") for n in range(len(payloads), 40)]
    entries: list[Entry] = []
    prev = None
    for index, payload in enumerate(payloads):
        entry = create_entry(
            _AUTHOR, seq=index + 1, prev=prev, timestamp=1_000 + index, payload=payload
        )
        entries.append(entry)
        prev = entry.id
    return tuple(entries)


def _entry_input(header: bytes, signature: bytes, payload: bytes | None) -> bytes:
    return join_parts([header, signature, b"\x00" if payload is None else b"\x01" + payload])


def _entry_corpus() -> list[bytes]:
    entries = signed_chain()[:14]
    return [_entry_input(e.header_bytes, e.signature, e.payload) for e in entries] + [
        _entry_input(entries[3].header_bytes, entries[3].signature, None)
    ]


def _run_entry(data: bytes) -> None:
    header, signature, rest = split_parts(data, 3)
    payload = rest[1:] if rest[:1] not in (b"", b"\x00") else None
    entry = parse_entry_untrusted(header, signature, payload)
    # One logical entry has one encoding: what parses re-encodes to the same bytes.
    assert entry.header.encode() == header
    entry.verify()


def _payload_corpus() -> list[bytes]:
    return [join_parts([p.kind.encode(), encode_payload(p)]) for p in _payloads()]


def _run_payload(data: bytes) -> None:
    kind, payload = split_parts(data, 2)
    content = decode_payload_untrusted(kind.decode("utf-8", "replace"), payload)
    if isinstance(content, UnknownPayload):
        assert encode_payload(content) == payload


# --- export files -----------------------------------------------------------------


def _export_trailer(before: bytes, count: int) -> bytes:
    trailer = (0).to_bytes(4, "big") + count.to_bytes(8, "big")
    return trailer + hashlib.sha256(before + trailer).digest()


def _export_corpus() -> list[bytes]:
    files = []
    for entries in (
        signed_chain()[:3],
        signed_chain()[:12],
        (),
        (signed_chain()[0].without_payload(),),
    ):
        out = io.BytesIO()
        write_export(out, entries)
        files.append(out.getvalue())
    return files


def _run_export(data: bytes) -> None:
    for _entry in read_export_untrusted(io.BytesIO(data)):
        pass


# --- frames and wire messages -----------------------------------------------------

_FRAME_KEY = hashlib.sha256(b"torv-fuzz-frame-key").digest()
_TOPIC = feed_topic(_FEED)


def _raw(entry: Entry) -> RawEntry:
    return RawEntry(entry.header_bytes, entry.signature, entry.payload)


@cache
def _messages() -> tuple[WireMessage, ...]:
    chain = signed_chain()
    ids = tuple(entry.id for entry in chain[:4])
    return (
        Subscribe((SQUARE, _TOPIC)),
        Unsubscribe((SQUARE,)),
        Graft(_TOPIC),
        Prune(_TOPIC, 60),
        IHave(((_TOPIC, ids),)),
        IWant(ids[:2]),
        IDontWant(ids[2:]),
        EntryMessage((_TOPIC, SQUARE), _raw(chain[0])),
        Heads(((_FEED, 40), (_OTHER, 0))),
        Want(3, _FEED, 1, 8, newest_first=False),
        EntryBatch(3, tuple(_raw(entry) for entry in chain[:3]), done=True),
        EntryBatch(4, (), done=False),
    )


def _wire_corpus() -> list[bytes]:
    messages = [encode_message(message) for message in _messages()]
    return [*messages, b"".join(messages)]


def _decode_stream(data: bytes) -> Iterator[WireMessage]:
    buffer = MessageBuffer()
    buffer.feed(data)
    while (body := buffer.next_body()) is not None:
        message = decode_message_untrusted(body)
        # What decodes encodes again, to a message that decodes the same.
        # (Not always to the same bytes: a body's unknown fields are ignored.)
        assert decode_message_untrusted(encode_message(message)[4:]) == message
        yield message


def _run_wire(data: bytes) -> None:
    for _message in _decode_stream(data):
        pass


class _Frames(Layout):
    """Encrypted frames; the pieces are the wire messages inside them, so a
    mutated message is encrypted again and reaches the decoder."""

    def split(self, data: bytes) -> list[bytes] | None:
        frames = FrameBuffer(data)
        cipher = CipherState(_FRAME_KEY)
        plain = bytearray()
        while (frame := frames.next_frame()) is not None:
            try:
                plain += cipher.decrypt(b"", frame)
            except HandshakeFailed:
                return None
        return Stream().split(bytes(plain))

    def join(self, pieces: list[bytes]) -> bytes:
        cipher = CipherState(_FRAME_KEY)
        return b"".join(
            encode_frame(cipher.encrypt(b"", len(piece).to_bytes(4, "big") + piece))
            for piece in pieces
            if len(piece) < 65000
        )


def _frames_corpus() -> list[bytes]:
    layout = _Frames()
    bodies = [encode_message(message)[4:] for message in _messages()]
    return [layout.join(bodies[:3]), layout.join(bodies[7:]), layout.join(bodies)]


def _run_frames(data: bytes) -> None:
    frames = FrameBuffer()
    frames.feed(data)
    cipher = CipherState(_FRAME_KEY)
    messages = MessageBuffer()
    while (frame := frames.next_frame()) is not None:
        messages.feed(cipher.decrypt(b"", frame))
        while (body := messages.next_body()) is not None:
            decode_message_untrusted(body)
    if frames.pending:
        raise HandshakeFailed("the connection ended inside a frame")


# --- a peer's messages into the router and the sync planner -----------------------

_PEER = _public(fixed_key(3))
_ME = _public(fixed_key(4))


def _sync_corpus() -> list[bytes]:
    planner = _fresh_planner()
    chain = signed_chain()
    inputs = []
    batches = []
    for want in planner.next_requests(0.0):
        seqs = range(want.first, want.last + 1)
        raws = tuple(
            _raw(chain[seq - 1]) for seq in (reversed(seqs) if want.newest_first else seqs)
        )
        batches.append(encode_message(EntryBatch(want.request, raws, done=True)))
    inputs.append(b"".join(batches))
    inputs.append(b"".join(batches[::-1]))
    inputs.append(b"".join(encode_message(message) for message in _messages()))
    inputs.append(batches[0] + batches[0])
    return inputs


def _fresh_planner() -> SyncPlanner:
    planner = SyncPlanner(
        {_FEED, _OTHER}, {_OTHER: 2}, urgent={_FEED}, window=3, range_size=8, preview=4
    )
    planner.on_heads(Heads(((_FEED, 40), (_OTHER, 12))))
    return planner


def _fresh_router() -> Router:
    router = Router(_ME, RouterParams(), random.Random(7))
    router.add_peer(_PEER, 0.0)
    router.join(SQUARE, 0.0)
    router.join(_TOPIC, 0.0)
    return router


def _run_sync(data: bytes) -> None:
    planner = _fresh_planner()
    router = _fresh_router()
    gaps = GapBuffer(per_feed=4, total=6, max_bytes=4000, ttl=5.0)
    heads = {_FEED: 0, _OTHER: 2}
    now = 0.0
    planner.next_requests(now)
    for message in _decode_stream(data):
        now += 1.0
        if isinstance(message, Heads):
            planner.on_heads(message)
        elif isinstance(message, EntryBatch):
            outcome = planner.on_batch(message, now)
            for seq, raw in outcome.preview:
                gaps.add(_FEED, seq, raw, now, head=heads[_FEED])
            if outcome.feed is not None and outcome.entries:
                # As if the store took them all: the head moves by their count.
                heads[outcome.feed] += len(outcome.entries)
                planner.on_ingested(outcome.feed, heads[outcome.feed])
                gaps.ready(outcome.feed, heads[outcome.feed])
        elif isinstance(message, EntryMessage):
            raw = message.entry
            the_id = entry_id(raw.header, raw.signature)
            router.handle_entry(_PEER, the_id, message, now)
            for delivery in router.deliveries():
                router.validated(delivery.entry_id, Verdict.ACCEPT, now)
        elif not isinstance(message, Want):
            router.handle(_PEER, message, now)
        planner.expire(now)
        planner.next_requests(now)
        for feed, first, last in gaps.missing():
            planner.on_gap(feed, first, last)
        router.heartbeat(now)
        router.drain()


# --- the handshake ----------------------------------------------------------------

_NETWORK = hashlib.sha256(b"torv-fuzz-network").digest()
_INITIATOR_ID, _RESPONDER_ID = fixed_key(10), fixed_key(11)


def _initiator(expected: bool = False) -> TorvHandshake:
    return TorvHandshake(
        initiator=True,
        identity=_INITIATOR_ID,
        network_key=_NETWORK,
        expected=_public(_RESPONDER_ID) if expected else None,
        static=_x25519(1),
        ephemeral=_x25519(2),
    )


def _responder() -> TorvHandshake:
    return TorvHandshake(
        initiator=False,
        identity=_RESPONDER_ID,
        network_key=_NETWORK,
        static=_x25519(3),
        ephemeral=_x25519(4),
    )


@cache
def _transcript() -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The three messages of a good handshake with the fixed keys, and the
    two identity payloads (what steps 3 and 4 wrap)."""
    initiator, responder = _initiator(), _responder()
    first = initiator.next_message()
    assert first is not None
    responder.receive(first)
    second = responder.next_message()
    assert second is not None
    initiator.receive(second)
    third = initiator.next_message()
    assert third is not None
    responder.receive(third)
    assert initiator.session is not None
    assert responder.session is not None
    return first, second, third, responder._payload, initiator._payload


def _handshake_corpus() -> list[bytes]:
    first, second, third, responder_payload, initiator_payload = _transcript()
    return [
        join_parts([b"\x00", first]),
        join_parts([b"\x01", second]),
        join_parts([b"\x11", second]),
        join_parts([b"\x02", third]),
        join_parts([b"\x03", responder_payload]),
        join_parts([b"\x04", initiator_payload]),
    ]


def _noise(initiator: bool) -> NoiseXX:
    if initiator:
        return NoiseXX(initiator=True, static=_x25519(1), prologue=_NETWORK, ephemeral=_x25519(2))
    return NoiseXX(initiator=False, static=_x25519(3), prologue=_NETWORK, ephemeral=_x25519(4))


def _run_handshake(data: bytes) -> None:
    selector, message = split_parts(data, 2)
    step = (selector[0] & 0x0F) % 5 if selector else 0
    expected = bool(selector[:1]) and selector[0] & 0x10 != 0
    first, second, _third, _, _ = _transcript()
    if step == 0:  # the responder's first message from the dialler
        responder = _responder()
        responder.receive(message)
        responder.next_message()
    elif step == 1:  # the dialler reads the responder's answer
        initiator = _initiator(expected)
        initiator.next_message()
        initiator.receive(message)
        initiator.next_message()
        assert initiator.session is not None
    elif step == 2:  # the responder reads the dialler's last message
        responder = _responder()
        responder.receive(first)
        responder.next_message()
        responder.receive(message)
        assert responder.session is not None
    elif step == 3:  # a well-encrypted answer carrying an arbitrary identity payload
        if len(message) > 60000:
            raise HandshakeFailed("too large to wrap")
        noise = _noise(initiator=False)
        noise.read_message(first)
        initiator = _initiator(expected)
        initiator.next_message()
        initiator.receive(noise.write_message(message))
        initiator.next_message()
        assert initiator.session is not None
    else:  # a well-encrypted last message carrying an arbitrary identity payload
        if len(message) > 60000:
            raise HandshakeFailed("too large to wrap")
        noise = _noise(initiator=True)
        noise.write_message()
        noise.read_message(second)
        responder = _responder()
        responder.receive(first)
        responder.next_message()
        responder.receive(noise.write_message(message))
        assert responder.session is not None


# --- DHT records ------------------------------------------------------------------

#: The DHT's clock in these targets (records expire against it).
DHT_NOW = 1_800_000_000.0
_DHT_FEED = hashlib.sha256(b"torv-fuzz-dht-feed").digest()
_ADDRESS_KEYS = (fixed_key(20), fixed_key(21))


def _address_record(n: int, seq: int = 1) -> bytes:
    return sign_record(
        _ADDRESS_KEYS[n],
        addresses=("127.0.0.1:4710", "[::1]:4711")[: n + 1],
        seq=seq,
        expires=int(DHT_NOW) + 3600,
    )


def _provider_record(n: int) -> bytes:
    return sign_record(
        _ADDRESS_KEYS[n],
        addresses=("10.0.0.1:4710",),
        seq=5,
        expires=int(DHT_NOW) + 600,
        feed=_DHT_FEED,
    )


@cache
def record_values() -> tuple[bytes, ...]:
    """Valid DHT values: address records, a provider record, provider sets."""
    providers = [decode_record_untrusted(_provider_record(n), DHT_NOW) for n in (0, 1)]
    return (
        _address_record(0),
        _address_record(1, seq=9),
        _provider_record(0),
        encode_provider_set(providers),
        encode_provider_set(providers[:1]),
    )


_DHT_KEYS = (
    address_key(_public(_ADDRESS_KEYS[0])),
    address_key(_public(_ADDRESS_KEYS[1])),
    provider_key(_DHT_FEED),
)


#: The checks of the records target, chosen by the first part of an input.
_RECORD_CHECKS = 9


def _records_corpus() -> list[bytes]:
    return [
        join_parts([bytes([check]), value])
        for check in range(_RECORD_CHECKS)
        for value in record_values()
    ]


def _start_records(_stack: contextlib.ExitStack) -> Run:
    from node.discovery import RecordStorage, merge_values

    # A storage that holds good values, so that offers merge with them.
    storage = RecordStorage(clock=lambda: DHT_NOW)
    for value in record_values():
        for key in _DHT_KEYS:
            storage.offer(key_digest(key), value)

    def run(data: bytes) -> None:
        selector, value = split_parts(data, 2)
        check = selector[0] % _RECORD_CHECKS if selector else 0
        key = _DHT_KEYS[check % 3]
        if check == 0:
            decode_record_untrusted(value, DHT_NOW)
        elif check < 4:
            decode_value_untrusted(key, value, DHT_NOW)
        elif check < 7:
            decode_value_for_digest_untrusted(key_digest(key), value, DHT_NOW)
        elif check == 7:
            merged = merge_values(key_digest(key), [value, *record_values()[:2]], DHT_NOW)
            assert merged is None or isinstance(merged, bytes)
        else:
            for key in _DHT_KEYS:
                accepted = storage.offer(key_digest(key), value)
                assert accepted in (True, False)
                held = storage.get(key_digest(key))
                # What the storage holds and hands out is always a valid value.
                if held is not None:
                    decode_value_for_digest_untrusted(key_digest(key), held, DHT_NOW)

    return run


# --- DHT datagrams ----------------------------------------------------------------

_DHT_ADDRESS = ("127.0.0.1", 4711)
#: What HardenedProtocol may count for a datagram: decoding failures of the
#: stock msgpack decoder, and its own refusals. Anything else it caught is a
#: bug it hid.
_DHT_EXPECTED = frozenset(
    {
        "dropped: bad size",
        "dropped: malformed request",
        "dropped: malformed response",
        "refused: store",
        "refused: contacts per ip",
        "dropped: InsufficientDataException",
        "dropped: InvalidStringException",
        "dropped: ReservedCodeException",
        "dropped: UnhashableKeyException",
        "dropped: DuplicateKeyException",
        "dropped: UnsupportedTimestampException",
        # The stock decoder recurses once per nesting level: a datagram of
        # thousands of nested arrays ends in Python's recursion limit.
        "dropped: RecursionError",
    }
)


class DhtFinding(Exception):
    """A DHT datagram made the protocol fail in a way it should not."""


class _Datagram(Layout):
    """A datagram: its type byte and message id, then the msgpack body."""

    def split(self, data: bytes) -> list[bytes] | None:
        return [data[:21], data[21:]] if len(data) > 21 else None


class _Transport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))


def _dht_requests() -> list[Any]:
    node_id = dht_node_id(_public(fixed_key(30)))
    digest = key_digest(_DHT_KEYS[0])
    return [
        ["ping", [node_id]],
        ["stun", []],
        ["find_node", [node_id, digest]],
        ["find_value", [node_id, digest]],
        ["store", [node_id, digest, record_values()[0]]],
        ["store", [node_id, key_digest(_DHT_KEYS[2]), record_values()[3]]],
    ]


def _dht_corpus() -> list[bytes]:
    import umsgpack  # type: ignore[import-untyped]

    msg_id = bytes(range(20))
    requests = [b"\x00" + msg_id + umsgpack.packb(request) for request in _dht_requests()]
    node_id = dht_node_id(_public(fixed_key(31)))
    responses = [
        b"\x01" + bytes([kind]) + msg_id[1:] + umsgpack.packb(value)
        for kind, value in (
            (0, node_id),
            (1, [[node_id, "127.0.0.2", 4000], [bytes(20), "::1", 1]]),
            (2, {"value": record_values()[0]}),
            (2, [[node_id, "127.0.0.3", 65535]]),
            (3, True),
        )
    ]
    return requests + responses


def _start_dht(stack: contextlib.ExitStack) -> Run:
    from kademlia.node import Node

    from node.discovery import HardenedProtocol, RecordStorage

    loop = asyncio.new_event_loop()
    stack.callback(loop.close)
    tasks: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        tasks.append(task)
        return task

    loop.set_task_factory(factory)
    counters: Counter[str] = Counter()
    protocol = HardenedProtocol(
        Node(dht_node_id(_public(fixed_key(32))), "127.0.0.1", 4710),
        RecordStorage(clock=lambda: DHT_NOW),
        20,
        max_contacts_per_ip=8,
        counters=counters,
    )
    transport = _Transport()
    protocol.connection_made(transport)
    peer = Node(dht_node_id(_public(fixed_key(33))), *_DHT_ADDRESS)

    async def one(data: bytes) -> None:
        call = None
        if data[:1] == b"\x01" and len(data) >= 2:
            # A response: to a call made now, so that it is not dropped as unknown.
            asks = (
                lambda: protocol.call_ping(peer),
                lambda: protocol.call_find_node(peer, peer),
                lambda: protocol.call_find_value(peer, peer),
                lambda: protocol.call_store(peer, key_digest(_DHT_KEYS[0]), record_values()[0]),
            )
            call = asyncio.ensure_future(asks[data[1] % 4]())
            await asyncio.sleep(0)
            msg_id = transport.sent[-1][0][1:21]
            data = data[:1] + msg_id + data[21:]
        protocol.datagram_received(data, _DHT_ADDRESS)
        for _ in range(50):
            await asyncio.sleep(0)
            # Calls nobody will answer time out now, not in 5 s.
            for future, timeout in list(protocol._outstanding.values()):
                timeout.cancel()
                if not future.done():
                    future.set_result((False, None))
            protocol._outstanding.clear()
            if all(task.done() for task in tasks if task is not current()):
                break
        else:
            raise DhtFinding("a datagram left tasks running")
        if call is not None:
            ok, _ = call.result()
            assert ok in (True, False)

    def current() -> asyncio.Task[Any] | None:
        return asyncio.current_task(loop)

    def run(data: bytes) -> None:
        counters.clear()
        transport.sent.clear()
        try:
            loop.run_until_complete(one(data))
            # What the stock code spawned and nobody awaits: its errors would
            # only reach the loop's exception handler.
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            tasks.clear()
        unexpected = set(counters) - _DHT_EXPECTED
        if unexpected:
            raise DhtFinding(f"the protocol caught and counted {sorted(unexpected)}")

    return run


# --- the control socket -----------------------------------------------------------


class _BytesStream:
    """What a client sent, handed out in chunks, then the end of the stream."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        chunk, self._data = self._data[:4096], self._data[4096:]
        return chunk


def _control_requests() -> list[dict[str, Any]]:
    some = hashlib.sha256(b"x").digest()
    return [
        {"id": 1, "method": "status", "params": {}},
        {"id": 2, "method": "me"},
        {"id": 3, "method": "post", "params": {"text": "hello", "cw": "cw"}},
        {"id": 4, "method": "react", "params": {"entry": some, "emoji": "♥"}},
        {"id": 5, "method": "follow", "params": {"feed": _OTHER}},
        {"id": 6, "method": "profile", "params": {"name": "fuzz"}},
        {"id": 7, "method": "view", "params": {"name": "home", "limit": 5, "before": [1, 2]}},
        {"id": 8, "method": "view", "params": {"name": "feed", "feed": _OTHER, "limit": 3}},
        {"id": 9, "method": "view", "params": {"name": "search", "query": "#tag"}},
        {"id": 10, "method": "view", "params": {"name": "thread", "entry": some}},
        {"id": 11, "method": "view", "params": {"name": "settings"}},
        {"id": 12, "method": "set", "params": {"name": "square_hops", "value": 2}},
        {"id": 13, "method": "set", "params": {"name": "filters", "words": ["a"], "tags": []}},
        {"id": 14, "method": "set", "params": {"name": "muted", "feed": _OTHER, "value": True}},
        {"id": 15, "method": "delete", "params": {"entry": some}},
    ]


def _control_corpus() -> list[bytes]:
    from node.control import _pack

    requests = [_pack(request) for request in _control_requests()]
    return [*requests, b"".join(requests[:4])]


async def serve_control_bytes(node: Any, data: bytes) -> list[bytes]:
    """What the control socket's server does with ``data`` from a client.

    The steps of ``node.control._serve_client`` with its own functions, over
    a stream that ends after ``data``: requests are read until the stream ends
    or one is unreadable (the connection closes); each is answered, a torv
    error as an error reply. ``events`` is not followed (it waits for the
    node's events, which nobody sends here). Returns the framed replies.
    """
    from node.control import _call, _pack, _read_message

    stream: Any = _BytesStream(data)
    buffer = bytearray()
    replies: list[bytes] = []
    while True:
        try:
            request = await _read_message(stream, buffer)
        except (InvalidArgument, ValueError, msgpack.UnpackException):
            return replies
        if request is None:
            return replies
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return replies
        if request["method"] == "events":
            return replies
        request_id = request.get("id")
        params = request.get("params") or {}
        try:
            if not isinstance(params, dict):
                raise InvalidArgument("params must be a map")
            reply = {"id": request_id, "result": await _call(node, request["method"], params)}
        except TorvError as exc:
            reply = {"id": request_id, "error": {"type": type(exc).__name__, "message": str(exc)}}
        replies.append(_pack(reply))


@contextlib.contextmanager
def running_node() -> Iterator[tuple[Any, Callable[..., Any]]]:
    """One node of a swarm on loopback, in a trio thread: ``(node, call)``,
    where ``call(fn, *args)`` awaits ``fn(*args)`` in that thread."""
    from node.client import BackgroundTrio
    from node.testing import open_swarm

    async def main(*, task_status: Any) -> None:
        async with open_swarm(1) as swarm:
            task_status.started(swarm.nodes[0])
            await trio.sleep_forever()

    runner: BackgroundTrio[Any] = BackgroundTrio(main, name="torv-fuzz-node")
    node = runner.start()
    try:
        yield node, runner.call
    finally:
        runner.stop()


#: Inputs served by one node before a fresh one replaces it in the long runs.
CONTROL_NODE_INPUTS = 20_000


def _start_control(stack: contextlib.ExitStack) -> Run:
    # Accepted requests post, follow and mute: the node's store and scope
    # grow with every run, and its timelines slow down with them. A fresh
    # node every CONTROL_NODE_INPUTS inputs keeps a long run's rate and
    # memory about what one request costs.
    current = contextlib.ExitStack()
    stack.callback(lambda: current.close())
    node, call = current.enter_context(running_node())
    served = 0

    def run(data: bytes) -> None:
        nonlocal current, node, call, served
        if served == CONTROL_NODE_INPUTS:
            current.close()
            current = contextlib.ExitStack()
            node, call = current.enter_context(running_node())
            served = 0
        served += 1
        call(serve_control_bytes, node, data)

    return run


# --- the config file --------------------------------------------------------------


def _config_corpus() -> list[bytes]:
    from node.identity import feed_id_to_text

    feed_text = feed_id_to_text(_OTHER)
    return [
        CONFIG_TEMPLATE.encode(),
        b"",
        (
            '[timeline]\nlimit = 20\nalgorithm = "popular"\nfold_cw = false\nsquare_hops = 2\n'
            '[network]\nlisten = "0.0.0.0:4710"\nbootstrap = ["192.0.2.10:4710", "[::1]:9"]\n'
            'hops = 2\nsquare = true\nnetwork_key = "' + "ab" * 32 + '"\n'
            f'[petnames]\n"{feed_text}" = "alice"\n'
            f'[moderation]\nmute = ["{feed_text}"]\nhide_reposts = []\n'
            'words = ["spoiler"]\ntags = ["#news"]\n'
        ).encode(),
    ]


_CONFIG_NAMES = (
    "timeline",
    "network",
    "petnames",
    "moderation",
    "limit",
    "algorithm",
    "fold_cw",
    "square_hops",
    "listen",
    "bootstrap",
    "hops",
    "square",
    "network_key",
    "mute",
    "hide_reposts",
    "words",
    "tags",
)


def _start_config(stack: contextlib.ExitStack) -> Run:
    home = Home(Path(stack.enter_context(tempfile.TemporaryDirectory())))
    home.config_path.touch()
    # One descriptor rewritten in place, cut after the new bytes: truncating
    # a file to nothing costs milliseconds on ext4 (it flushes the old data).
    fd = os.open(home.config_path, os.O_RDWR)
    stack.callback(os.close, fd)

    def run(data: bytes) -> None:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        home.load_config()

    return run


# --- the list ---------------------------------------------------------------------

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "entry",
            "storage/entry.py: parse_entry_untrusted, then Entry.verify "
            "(header, signature, payload or none)",
            (MalformedEntry, BadSignature),
            Parts(3, names=("text", "root", "parent", "mentions", "tags", "cw")),
            _entry_corpus,
            _plain(_run_entry),
        ),
        Target(
            "payload",
            "storage/payloads.py: decode_payload_untrusted for a kind name and payload bytes",
            (MalformedEntry,),
            Parts(2, names=("text", "root", "parent", "mentions", "tags", "cw", "name", "bio")),
            _payload_corpus,
            _plain(_run_payload),
        ),
        Target(
            "export",
            "storage/exportfile.py: read_export_untrusted over a whole file",
            (BadExportFile,),
            Stream(width=4, prefix=MAGIC, tail=_export_trailer),
            _export_corpus,
            _plain(_run_export),
        ),
        Target(
            "wire",
            "gossip/wire.py: MessageBuffer and decode_message_untrusted over a stream",
            (BadMessage,),
            Stream(width=4, names=("topics", "topic", "ids", "entry", "heads", "request")),
            _wire_corpus,
            _plain(_run_wire),
        ),
        Target(
            "frames",
            "gossip/framing.py and the transport cipher: frames, decryption, then messages",
            (HandshakeFailed, BadMessage),
            _Frames(),
            _frames_corpus,
            _plain(_run_frames),
        ),
        Target(
            "sync",
            "gossip/sync.py and gossip/router.py: a peer's messages into the sync "
            "planner, the gap buffer and the gossip router",
            (BadMessage,),
            Stream(width=4, names=("heads", "entries", "request", "done", "topics", "ids")),
            _sync_corpus,
            _plain(_run_sync),
        ),
        Target(
            "handshake",
            "gossip/noise.py and gossip/handshake.py: each handshake message to the "
            "responder and the initiator, and the identity payloads inside them",
            (HandshakeFailed,),
            Parts(2, names=("identity", "sig", "v")),
            _handshake_corpus,
            _plain(_run_handshake),
        ),
        Target(
            "records",
            "node/records.py and the DHT storage: a value under each kind of key",
            (BadRecord,),
            Parts(2, names=("addrs", "expires", "feed", "id", "kind", "seq", "sig")),
            _records_corpus,
            _start_records,
        ),
        Target(
            "dht",
            "node/discovery.py: a datagram into HardenedProtocol (requests, and "
            "responses to calls in flight)",
            (),
            _Datagram(),
            _dht_corpus,
            _start_dht,
        ),
        Target(
            "control",
            "node/control.py: request bytes into a running node's control server",
            (),
            Stream(width=4, names=("id", "method", "params", "name", "value", "text")),
            _control_corpus,
            _start_control,
        ),
        Target(
            "config",
            "node/home.py and node/files.py: config.toml bytes through Home.load_config",
            (ConfigError,),
            Whole(TomlTree(), names=_CONFIG_NAMES),
            _config_corpus,
            _start_config,
        ),
    )
}
