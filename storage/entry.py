"""Log entries: a signed header and a payload kept apart.

Byte layout (``docs/protocol.md`` is the reference):

- header: the canonical msgpack array
  ``[version, author, seq, prev, timestamp, kind, payload_hash, payload_size]``;
- signature: Ed25519 by ``author`` over ``SIGNATURE_DOMAIN + header``;
- entry id: ``SHA-256(header + signature)``;
- payload hash: ``SHA-256(payload)``.

The payload can be dropped (a delete request) while the header and signature
stay, so the chain of ``prev`` links still verifies.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import canonical
from .errors import BadSignature, InvalidArgument, MalformedEntry
from .payloads import MAX_PAYLOAD_SIZE, Payload, decode_payload_untrusted, encode_payload
from .weakkeys import is_weak_public_key

__all__ = [
    "HASH_SIZE",
    "MAX_HEADER_SIZE",
    "MAX_SEQ",
    "SIGNATURE_DOMAIN",
    "SIGNATURE_SIZE",
    "VERSION",
    "Entry",
    "Header",
    "create_entry",
    "decode_entry_untrusted",
    "entry_id",
    "parse_entry_untrusted",
]

VERSION: Final = 1
SIGNATURE_DOMAIN: Final = b"torv-entry-v1\x00"
SIGNATURE_SIZE: Final = 64
HASH_SIZE: Final = 32
MAX_HEADER_SIZE: Final = 256
#: seq and timestamps stay below 2**53 so that JSON tools read them exactly.
MAX_SEQ: Final = 2**53 - 1
MAX_TIMESTAMP: Final = 2**53 - 1
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")


@dataclass(frozen=True, slots=True)
class Header:
    """The signed part of an entry."""

    version: int
    author: bytes
    seq: int
    prev: bytes | None
    timestamp: int
    kind: str
    payload_hash: bytes
    payload_size: int

    def encode(self) -> bytes:
        """The canonical header bytes (what is signed and hashed)."""
        return canonical.packb(
            [
                self.version,
                self.author,
                self.seq,
                self.prev,
                self.timestamp,
                self.kind,
                self.payload_hash,
                self.payload_size,
            ]
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry with its exact bytes.

    ``payload`` holds the payload bytes, or ``None`` when the payload was
    deleted or never received; ``content`` is the decoded payload then absent.
    An :class:`Entry` from :func:`parse_entry_untrusted` is well-formed but its
    signature is unchecked until :meth:`verify` returns.
    """

    header: Header
    header_bytes: bytes
    signature: bytes
    payload: bytes | None
    content: Payload | None
    id: bytes

    @property
    def author(self) -> bytes:
        return self.header.author

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def kind(self) -> str:
        return self.header.kind

    def verify(self) -> None:
        """Check the signature; raise :class:`BadSignature` if it does not verify."""
        try:
            _public_key(self.header.author).verify(
                self.signature, SIGNATURE_DOMAIN + self.header_bytes
            )
        except (InvalidSignature, ValueError) as exc:
            raise BadSignature(
                f"signature of seq {self.header.seq} does not verify for its author"
            ) from exc

    def without_payload(self) -> Entry:
        """The same entry with its payload dropped (after a delete request)."""
        return Entry(self.header, self.header_bytes, self.signature, None, None, self.id)


@lru_cache(maxsize=4096)
def _public_key(author: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(author)


def entry_id(header_bytes: bytes, signature: bytes) -> bytes:
    """The id of an entry: SHA-256 over the header bytes and the signature."""
    return hashlib.sha256(header_bytes + signature).digest()


def create_entry(
    key: Ed25519PrivateKey,
    *,
    seq: int,
    prev: bytes | None,
    timestamp: int,
    payload: Payload,
) -> Entry:
    """Encode and sign a new entry by the owner of ``key``.

    Raises :class:`InvalidArgument` for a payload or header that peers would
    reject (so a node never signs an invalid entry).
    """
    payload_bytes = encode_payload(payload)
    author = key.public_key().public_bytes_raw()
    header = Header(
        version=VERSION,
        author=author,
        seq=seq,
        prev=prev,
        timestamp=timestamp,
        kind=payload.kind,
        payload_hash=hashlib.sha256(payload_bytes).digest(),
        payload_size=len(payload_bytes),
    )
    problem = _header_problem(header)
    if problem:
        raise InvalidArgument(problem)
    header_bytes = header.encode()
    signature = key.sign(SIGNATURE_DOMAIN + header_bytes)
    return Entry(
        header, header_bytes, signature, payload_bytes, payload, entry_id(header_bytes, signature)
    )


def _header_problem(h: Header) -> str | None:
    # bool is an int to Python but not to msgpack: a True seq would be signed
    # as a boolean that every decoder rejects.
    if not (
        type(h.version) is int
        and type(h.seq) is int
        and type(h.timestamp) is int
        and type(h.payload_size) is int
    ):
        return "version, seq, timestamp and payload size must be integers"
    if h.version != VERSION:
        return f"unknown version {h.version}"
    if len(h.author) != HASH_SIZE:
        return f"author must be {HASH_SIZE} bytes"
    if is_weak_public_key(h.author):
        return "author is not a usable Ed25519 key (a small-order or invalid point)"
    if not 1 <= h.seq <= MAX_SEQ:
        return f"seq {h.seq} is out of range"
    if h.seq == 1 and h.prev is not None:
        return "seq 1 must have no prev"
    if h.seq > 1 and (h.prev is None or len(h.prev) != HASH_SIZE):
        return f"seq {h.seq} needs a {HASH_SIZE}-byte prev"
    if not 0 <= h.timestamp <= MAX_TIMESTAMP:
        return "timestamp is out of range"
    if not _KIND.match(h.kind):
        return f"kind {h.kind!r} is not a valid kind name"
    if len(h.payload_hash) != HASH_SIZE:
        return f"payload hash must be {HASH_SIZE} bytes"
    if not 1 <= h.payload_size <= MAX_PAYLOAD_SIZE:
        # Every payload is a map, so at least one byte.
        return f"payload size {h.payload_size} is not from 1 to {MAX_PAYLOAD_SIZE}"
    return None


def _typed(fields: list[Any]) -> bool:
    """Whether eight decoded header fields have a header's types (exact
    types: a decoder makes no subclasses, and a boolean is no seq)."""
    version, author, seq, prev, timestamp, kind, payload_hash, payload_size = fields
    return (
        type(version) is int
        and type(author) is bytes
        and type(seq) is int
        and (prev is None or type(prev) is bytes)
        and type(timestamp) is int
        and type(kind) is str
        and type(payload_hash) is bytes
        and type(payload_size) is int
    )


def _decode_header(data: bytes) -> Header:
    # The common case first: eight fields of the exact types a header has
    # (so no float, map or extension type anywhere) that re-encode to the
    # same bytes, and a valid header. Anything else takes the full path,
    # which says what is wrong.
    if len(data) <= MAX_HEADER_SIZE:
        try:
            value = canonical.unpack_bounded(data, max_size=MAX_HEADER_SIZE)
        except ValueError:
            value = None
        if (
            type(value) is list
            and len(value) == 8
            and _typed(value)
            and msgpack.packb(value, use_bin_type=True) == data
        ):
            header = Header(*value)
            if _header_problem(header) is None:
                return header
    return _decode_header_in_full(data)


def _decode_header_in_full(data: bytes) -> Header:
    value = canonical.unpack_untrusted(data, max_size=MAX_HEADER_SIZE, what="header")
    if not isinstance(value, list) or not value:
        raise MalformedEntry("header is not an array", problem="bad-header")
    if type(value[0]) is not int or value[0] != VERSION:
        raise MalformedEntry(f"unknown entry version {value[0]!r}", problem="unknown-version")
    if len(value) != 8:
        raise MalformedEntry(f"header has {len(value)} fields, not 8", problem="bad-header")
    if not _typed(value):
        raise MalformedEntry("header field has the wrong type", problem="bad-header")
    header = Header(*value)
    problem = _header_problem(header)
    if problem:
        raise MalformedEntry(f"header: {problem}", problem="bad-header")
    return header


def parse_entry_untrusted(header_bytes: bytes, signature: bytes, payload: bytes | None) -> Entry:
    """Check everything about an entry from outside except its signature.

    Checks sizes before decoding, canonical encoding, header fields, the
    payload's size and hash, and the payload's fields for its kind. ``payload``
    may be ``None`` (a header whose payload was deleted). Call
    :meth:`Entry.verify` (or use :func:`decode_entry_untrusted`) before
    trusting the result. Raises :class:`MalformedEntry`.
    """
    if len(signature) != SIGNATURE_SIZE:
        raise MalformedEntry(
            f"signature is {len(signature)} bytes, not {SIGNATURE_SIZE}", problem="bad-signature"
        )
    header = _decode_header(header_bytes)
    content: Payload | None = None
    if payload is not None:
        if len(payload) != header.payload_size:
            raise MalformedEntry(
                f"payload is {len(payload)} bytes, header says {header.payload_size}",
                problem="payload-mismatch",
            )
        if hashlib.sha256(payload).digest() != header.payload_hash:
            raise MalformedEntry(
                "payload does not match the header's hash", problem="payload-mismatch"
            )
        content = decode_payload_untrusted(header.kind, payload)
    return Entry(
        header, header_bytes, signature, payload, content, entry_id(header_bytes, signature)
    )


def decode_entry_untrusted(header_bytes: bytes, signature: bytes, payload: bytes | None) -> Entry:
    """:func:`parse_entry_untrusted` and :meth:`Entry.verify` in one call.

    Raises :class:`MalformedEntry` or :class:`BadSignature`.
    """
    entry = parse_entry_untrusted(header_bytes, signature, payload)
    entry.verify()
    return entry
