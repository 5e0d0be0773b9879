"""Encoded sizes of wire messages, as :func:`gossip.wire.encode_message` makes them.

Encoding every message of a large run would cost more than the routing it
measures, so sizes are memoised by shape: msgpack's size of a message depends
only on the lengths of its strings and byte strings and on the size class of
its integers, so two messages with the same shape have the same size. Shapes
that are hard to key (sync batches) are encoded each time.
"""

from __future__ import annotations

from typing import Final

from gossip.wire import (
    Choke,
    EntryMessage,
    Graft,
    Heads,
    IDontWant,
    IHave,
    IWant,
    Prune,
    Subscribe,
    Unchoke,
    Unsubscribe,
    Want,
    WireMessage,
    encode_message,
)

__all__ = ["WireSizes"]

# Upper bounds of msgpack's unsigned integer size classes (fixint, 8, 16, 32 bits).
_INT_CLASSES: Final = (127, 255, 65535, 2**32 - 1)


def _int_class(value: int) -> int:
    for index, bound in enumerate(_INT_CLASSES):
        if value <= bound:
            return index
    return len(_INT_CLASSES)


class WireSizes:
    """``size(message)``: the bytes ``encode_message(message)`` produces."""

    def __init__(self) -> None:
        self._memo: dict[tuple[object, ...], int] = {}

    def size(self, message: WireMessage) -> int:
        key = self._key(message)
        if key is None:
            return len(encode_message(message))
        size = self._memo.get(key)
        if size is None:
            size = self._memo[key] = len(encode_message(message))
        return size

    @staticmethod
    def _key(message: WireMessage) -> tuple[object, ...] | None:
        kind = type(message)
        if kind is EntryMessage:
            assert isinstance(message, EntryMessage)
            entry = message.entry
            payload = -1 if entry.payload is None else len(entry.payload)
            topics = tuple(len(topic) for topic in message.topics)
            return (kind, topics, len(entry.header), len(entry.signature), payload)
        if kind is IHave:
            assert isinstance(message, IHave)
            return (kind, *((len(topic), len(ids)) for topic, ids in message.offers))
        if kind is IWant or kind is IDontWant:
            assert isinstance(message, IWant | IDontWant)
            return (kind, len(message.ids))
        if kind is Graft:
            assert isinstance(message, Graft)
            return (kind, len(message.topic))
        if kind is Prune:
            assert isinstance(message, Prune)
            return (kind, len(message.topic), _int_class(message.backoff))
        if kind in (Subscribe, Unsubscribe, Choke, Unchoke):
            assert isinstance(message, Subscribe | Unsubscribe | Choke | Unchoke)
            lengths = [len(topic) for topic in message.topics]
            if max(lengths, default=0) > 255:
                return None
            # Below 256 characters a string costs its length, plus one byte
            # (up to 31) or two.
            return (kind, len(lengths), sum(lengths), sum(1 for n in lengths if n > 31))
        if kind is Heads:
            assert isinstance(message, Heads)
            # A feed id is always 32 bytes; seqs below 128 take one byte.
            large = tuple(_int_class(seq) for _, seq in message.heads if seq > 127)
            return (kind, len(message.heads), *large)
        if kind is Want:
            assert isinstance(message, Want)
            return (
                kind,
                _int_class(message.request),
                _int_class(message.first),
                _int_class(message.last),
            )
        return None
