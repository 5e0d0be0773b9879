"""Wire messages between nodes: what travels inside a secure stream.

Each message is ``u32 length`` (big-endian, at most :data:`MAX_WIRE_MESSAGE`)
followed by the msgpack array ``[version, type, body]``, where ``body`` is a
map whose fields depend on ``type``. Every type is a frozen dataclass here,
and :func:`decode_message_untrusted` checks every field of a message from a
peer (types, counts, sizes) before anything acts on it. A node writes
canonical msgpack, but does not require it of what it reads: nothing is
hashed or signed at this level (the entries inside are checked on their own,
canonical form included), and the check would cost more than the rest of
decoding.

Gossip (GossipSub-style): ``sub``, ``unsub``, ``graft``, ``prune``,
``ihave``, ``iwant``, ``idontwant``, ``choke``, ``unchoke``, ``entry``.
Sync: ``heads``, ``want``, ``entries``. ``docs/protocol.md`` specifies each.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from storage import canonical
from storage.entry import MAX_HEADER_SIZE, SIGNATURE_SIZE
from storage.errors import InvalidArgument, RemoteError
from storage.payloads import MAX_PAYLOAD_SIZE

from .framing import LengthPrefixed

__all__ = [
    "MAX_IDS",
    "MAX_RANGE",
    "MAX_TOPICS",
    "MAX_WIRE_MESSAGE",
    "SQUARE",
    "WIRE_VERSION",
    "BadMessage",
    "Choke",
    "EntryBatch",
    "EntryMessage",
    "Graft",
    "Heads",
    "IDontWant",
    "IHave",
    "IWant",
    "MessageBuffer",
    "Prune",
    "RawEntry",
    "Subscribe",
    "Unchoke",
    "Unsubscribe",
    "Want",
    "WireMessage",
    "decode_message_untrusted",
    "encode_message",
    "feed_topic",
    "topic_feed",
]

WIRE_VERSION: Final = 1
#: The largest message: a batch of entries at most, with room for framing.
MAX_WIRE_MESSAGE: Final = 1024 * 1024
MAX_TOPICS: Final = 64
MAX_IDS: Final = 512
MAX_HEADS: Final = 2048
#: The most entries one ``want`` asks for, and one ``entries`` carries.
MAX_RANGE: Final = 256
MAX_BACKOFF: Final = 3600
#: The topic of all public posts, for discovery.
SQUARE: Final = "square"
_FEED_TOPIC: Final = re.compile(r"feed/[0-9a-f]{64}\Z")
#: The longest valid topic ("feed/" and 64 hex digits).
_MAX_TOPIC_LENGTH: Final = 5 + 64
_LENGTH: Final = struct.Struct(">I")
_MAX_RAW_ENTRY: Final = MAX_HEADER_SIZE + SIGNATURE_SIZE + MAX_PAYLOAD_SIZE


class BadMessage(RemoteError):
    """A peer sent a message that is malformed, oversize, or of an unknown type."""


def feed_topic(feed: bytes) -> str:
    """The topic of one feed: its followers form its mesh."""
    return "feed/" + feed.hex()


def topic_feed(topic: str) -> bytes | None:
    """The feed a feed topic names, or ``None`` for another topic."""
    return bytes.fromhex(topic[5:]) if _FEED_TOPIC.match(topic) else None


@dataclass(frozen=True, slots=True)
class RawEntry:
    """An entry's bytes as they travel: checked by ``storage`` before any use."""

    header: bytes
    signature: bytes
    payload: bytes | None


@dataclass(frozen=True, slots=True)
class Subscribe:
    topics: tuple[str, ...]
    type = "sub"


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topics: tuple[str, ...]
    type = "unsub"


@dataclass(frozen=True, slots=True)
class Graft:
    """Asks the peer to add the sender to its mesh for ``topic``."""

    topic: str
    type = "graft"


@dataclass(frozen=True, slots=True)
class Prune:
    """Removes the sender from the peer's mesh; do not graft again for ``backoff`` s."""

    topic: str
    backoff: int
    type = "prune"


@dataclass(frozen=True, slots=True)
class IHave:
    """Entry ids the sender has seen lately, by topic: ``(topic, ids)`` pairs,
    topics distinct, at most :data:`MAX_IDS` ids in all."""

    offers: tuple[tuple[str, tuple[bytes, ...]], ...]
    type = "ihave"


@dataclass(frozen=True, slots=True)
class IWant:
    """Asks for the entries with these ids (answering an ``ihave``)."""

    ids: tuple[bytes, ...]
    type = "iwant"


@dataclass(frozen=True, slots=True)
class IDontWant:
    """The sender already has these: do not send them (saves large payloads)."""

    ids: tuple[bytes, ...]
    type = "idontwant"


@dataclass(frozen=True, slots=True)
class Choke:
    """Do not push entries of these topics to the sender: announce them (``ihave``)."""

    topics: tuple[str, ...]
    type = "choke"


@dataclass(frozen=True, slots=True)
class Unchoke:
    """Push entries of these topics to the sender again."""

    topics: tuple[str, ...]
    type = "unchoke"


@dataclass(frozen=True, slots=True)
class EntryMessage:
    """One entry, published or forwarded in ``topics``."""

    topics: tuple[str, ...]
    entry: RawEntry
    type = "entry"


@dataclass(frozen=True, slots=True)
class Heads:
    """The sender's latest seq of each feed it replicates: ``(feed, seq)``
    pairs, seq 0 for a feed it wants but holds nothing of."""

    heads: tuple[tuple[bytes, int], ...]
    type = "heads"


@dataclass(frozen=True, slots=True)
class Want:
    """Asks for ``feed``'s entries ``first`` .. ``last`` (inclusive, at most
    :data:`MAX_RANGE`), newest first if ``newest_first``; ``request`` is echoed."""

    request: int
    feed: bytes
    first: int
    last: int
    newest_first: bool
    type = "want"


@dataclass(frozen=True, slots=True)
class EntryBatch:
    """The answer to ``want`` ``request``: entries in the order asked; ``done``
    when the range is complete or the sender holds no more of it."""

    request: int
    entries: tuple[RawEntry, ...]
    done: bool
    type = "entries"


WireMessage = (
    Subscribe
    | Unsubscribe
    | Graft
    | Prune
    | IHave
    | IWant
    | IDontWant
    | Choke
    | Unchoke
    | EntryMessage
    | Heads
    | Want
    | EntryBatch
)


# --- encoding -----------------------------------------------------------------


def _raw(entry: RawEntry) -> list[Any]:
    return [entry.header, entry.signature, entry.payload]


def _body(message: WireMessage) -> dict[str, Any]:
    if isinstance(message, Subscribe | Unsubscribe | Choke | Unchoke):
        return {"topics": list(message.topics)}
    if isinstance(message, Graft):
        return {"topic": message.topic}
    if isinstance(message, Prune):
        return {"topic": message.topic, "backoff": message.backoff}
    if isinstance(message, IHave):
        return {"topics": [[topic, list(ids)] for topic, ids in message.offers]}
    if isinstance(message, IWant | IDontWant):
        return {"ids": list(message.ids)}
    if isinstance(message, EntryMessage):
        return {"topics": list(message.topics), "entry": _raw(message.entry)}
    if isinstance(message, Heads):
        return {"heads": [[feed, seq] for feed, seq in message.heads]}
    if isinstance(message, Want):
        return {
            "request": message.request,
            "feed": message.feed,
            "first": message.first,
            "last": message.last,
            "newest_first": message.newest_first,
        }
    return {
        "request": message.request,
        "entries": [_raw(entry) for entry in message.entries],
        "done": message.done,
    }


def encode_message(message: WireMessage) -> bytes:
    """The framed bytes of ``message`` (length prefix included), canonical msgpack.

    Raises :class:`InvalidArgument` for a message a peer would refuse. The
    body goes through the same field checks as a received one, on the values
    themselves (no second encoding and decoding: this runs for every message
    a node sends). The encoding is canonical by construction: map keys are
    sorted, nested values are integers, byte strings, ASCII strings, booleans,
    nil and arrays of them, which ``msgpack`` writes in their shortest form.
    """
    body = _body(message)
    try:
        _DECODERS[message.type](body)
    except _Problem as exc:
        raise InvalidArgument(f"this {message.type} message would be refused: {exc}") from None
    data: bytes = msgpack.packb(
        [WIRE_VERSION, message.type, dict(sorted(body.items()))], use_bin_type=True
    )
    if len(data) > MAX_WIRE_MESSAGE:
        raise InvalidArgument(f"a {message.type} message of {len(data)} bytes is too large")
    return _LENGTH.pack(len(data)) + data


# --- decoding -----------------------------------------------------------------


class _Problem(Exception):
    pass


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in body:
        raise _Problem(f"missing field {name!r}")
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _Problem(f"field {name!r} has the wrong type")
    return value


def _count(value: int, name: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise _Problem(f"{name} {value} is outside {low}..{high}")
    return value


def _topic(value: object) -> str:
    # Longer strings are refused before the cache would keep them.
    if not isinstance(value, str) or len(value) > _MAX_TOPIC_LENGTH or not _is_topic(value):
        raise _Problem("a topic must be 'square' or 'feed/' and 64 hex digits")
    return value


@functools.lru_cache(maxsize=4096)
def _is_topic(value: str) -> bool:
    # Every message names topics, mostly the same few: the pattern is matched
    # once per distinct string (bounded: at most 4096 strings of at most 69
    # characters; the cache drops the least used).
    return value == SQUARE or _FEED_TOPIC.match(value) is not None


def _topics(body: dict[str, Any]) -> tuple[str, ...]:
    topics = _field(body, "topics", list)
    _count(len(topics), "topic count", 1, MAX_TOPICS)
    out = tuple(_topic(topic) for topic in topics)
    if len(set(out)) != len(out):
        raise _Problem("topics repeat")
    return out


_ID_SIZE: Final = 32


def _id(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != _ID_SIZE:
        raise _Problem("an id must be 32 bytes")
    return value


def _id_list(values: list[Any]) -> tuple[bytes, ...]:
    """``values`` as ids; all are checked (first in bulk, the usual case)."""
    if set(map(type, values)) == {bytes} and set(map(len, values)) == {_ID_SIZE}:
        return tuple(values)
    return tuple(_id(value) for value in values)


def _ids(body: dict[str, Any]) -> tuple[bytes, ...]:
    ids = _field(body, "ids", list)
    _count(len(ids), "id count", 1, MAX_IDS)
    return _id_list(ids)


def _raw_entry(value: object) -> RawEntry:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], bytes)
        or not isinstance(value[1], bytes)
        or not (value[2] is None or isinstance(value[2], bytes))
    ):
        raise _Problem("an entry must be [header, signature, payload or nil]")
    if len(value[0]) > MAX_HEADER_SIZE or len(value[1]) != SIGNATURE_SIZE:
        raise _Problem("an entry's header or signature has the wrong size")
    if value[2] is not None and len(value[2]) > MAX_PAYLOAD_SIZE:
        raise _Problem("an entry's payload is too large")
    return RawEntry(value[0], value[1], value[2])


def _sequence_number(body: dict[str, Any], name: str) -> int:
    return _count(_field(body, name, int), name, 1, 2**53 - 1)


def _subscribe(body: dict[str, Any]) -> WireMessage:
    return Subscribe(_topics(body))


def _unsubscribe(body: dict[str, Any]) -> WireMessage:
    return Unsubscribe(_topics(body))


def _graft(body: dict[str, Any]) -> WireMessage:
    return Graft(_topic(_field(body, "topic", str)))


def _prune(body: dict[str, Any]) -> WireMessage:
    backoff = _count(_field(body, "backoff", int), "backoff", 0, MAX_BACKOFF)
    return Prune(_topic(_field(body, "topic", str)), backoff)


def _ihave(body: dict[str, Any]) -> WireMessage:
    offers = _field(body, "topics", list)
    _count(len(offers), "topic count", 1, MAX_TOPICS)
    out: list[tuple[str, tuple[bytes, ...]]] = []
    total = 0
    for offer in offers:
        if not isinstance(offer, list) or len(offer) != 2 or not isinstance(offer[1], list):
            raise _Problem("an offer must be [topic, ids]")
        total += _count(len(offer[1]), "id count", 1, MAX_IDS)
        out.append((_topic(offer[0]), _id_list(offer[1])))
    _count(total, "id count", 1, MAX_IDS)
    if len({topic for topic, _ in out}) != len(out):
        raise _Problem("topics repeat")
    return IHave(tuple(out))


def _iwant(body: dict[str, Any]) -> WireMessage:
    return IWant(_ids(body))


def _idontwant(body: dict[str, Any]) -> WireMessage:
    return IDontWant(_ids(body))


def _choke(body: dict[str, Any]) -> WireMessage:
    return Choke(_topics(body))


def _unchoke(body: dict[str, Any]) -> WireMessage:
    return Unchoke(_topics(body))


def _entry(body: dict[str, Any]) -> WireMessage:
    return EntryMessage(_topics(body), _raw_entry(_field(body, "entry", list)))


def _heads(body: dict[str, Any]) -> WireMessage:
    pairs = _field(body, "heads", list)
    _count(len(pairs), "head count", 0, MAX_HEADS)
    heads = []
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2 or type(pair[1]) is not int:
            raise _Problem("a head must be [feed, seq]")
        # seq 0: the sender replicates the feed but holds none of it yet.
        heads.append((_id(pair[0]), _count(pair[1], "seq", 0, 2**53 - 1)))
    if len({feed for feed, _ in heads}) != len(heads):
        raise _Problem("a feed appears twice in heads")
    return Heads(tuple(heads))


def _want(body: dict[str, Any]) -> WireMessage:
    first, last = _sequence_number(body, "first"), _sequence_number(body, "last")
    _count(last - first + 1, "range length", 1, MAX_RANGE)
    return Want(
        request=_count(_field(body, "request", int), "request", 0, 2**32 - 1),
        feed=_id(_field(body, "feed", bytes)),
        first=first,
        last=last,
        newest_first=_field(body, "newest_first", bool),
    )


def _entries(body: dict[str, Any]) -> WireMessage:
    entries = _field(body, "entries", list)
    _count(len(entries), "entry count", 0, MAX_RANGE)
    return EntryBatch(
        request=_count(_field(body, "request", int), "request", 0, 2**32 - 1),
        entries=tuple(_raw_entry(value) for value in entries),
        done=_field(body, "done", bool),
    )


_DECODERS: Final[dict[str, Callable[[dict[str, Any]], WireMessage]]] = {
    "sub": _subscribe,
    "unsub": _unsubscribe,
    "graft": _graft,
    "prune": _prune,
    "ihave": _ihave,
    "iwant": _iwant,
    "idontwant": _idontwant,
    "choke": _choke,
    "unchoke": _unchoke,
    "entry": _entry,
    "heads": _heads,
    "want": _want,
    "entries": _entries,
}


def decode_message_untrusted(data: bytes) -> WireMessage:
    """Decode one message body (without its length prefix) from a peer.

    Raises :class:`BadMessage` naming what is wrong; nothing else escapes.
    """
    if len(data) > MAX_WIRE_MESSAGE:
        raise BadMessage(f"a message of {len(data)} bytes is larger than {MAX_WIRE_MESSAGE}")
    try:
        value = canonical.unpack_bounded(data, max_size=MAX_WIRE_MESSAGE)
    except ValueError as exc:
        raise BadMessage(f"the message is not valid msgpack: {exc}") from None
    if not isinstance(value, list) or len(value) != 3:
        raise BadMessage("a message must be [version, type, body]")
    version, kind, body = value
    if type(version) is not int or version != WIRE_VERSION:
        raise BadMessage(f"unknown wire version {version!r}")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise BadMessage(f"unknown message type {kind!r}")
    if not isinstance(body, dict):
        raise BadMessage(f"the body of a {kind} message must be a map")
    try:
        return decoder(body)
    except _Problem as exc:
        raise BadMessage(f"{kind}: {exc}") from None


class MessageBuffer(LengthPrefixed):
    """Bytes of a secure stream in, whole message bodies out (sans I/O).

    A length above :data:`MAX_WIRE_MESSAGE` raises :class:`BadMessage` before
    its body is buffered.
    """

    def __init__(self) -> None:
        super().__init__(_LENGTH, MAX_WIRE_MESSAGE, _too_large)


def _too_large(length: int) -> BadMessage:
    return BadMessage(f"a message of {length} bytes is larger than {MAX_WIRE_MESSAGE}")
