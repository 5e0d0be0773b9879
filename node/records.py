"""Signed DHT records, in the manner of BitTorrent's BEP 44 mutable items.

The DHT holds two kinds of value, each signed by the identity it speaks for,
so that a DHT node can check a value before storing it and a lookup can check
it before trusting it:

- an **address record** under ``address_key(identity)``: where a node listens;
- a **provider set** under ``provider_key(feed)``: nodes that replicate a feed,
  each entry a provider record signed by its provider.

A record carries a ``seq`` (the signer's clock in milliseconds: a newer
record replaces an older one of the same signer) and an ``expires`` time
(seconds since the epoch). Nothing here does I/O or reads the clock: ``now``
is passed in. Values stay well under rpcudp's 8 KiB datagrams.

Record (canonical msgpack map, signed over ``RECORD_DOMAIN`` + the map
without ``sig``)::

    {"addrs": [str], "expires": int, "feed": bin 32 (providers only),
     "id": bin 32, "kind": "addr" | "prov", "seq": int, "sig": bin 64}
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from storage import canonical
from storage.errors import InvalidArgument, MalformedEntry, RemoteError
from storage.weakkeys import is_weak_public_key

__all__ = [
    "MAX_ADDRESSES",
    "MAX_PROVIDERS",
    "MAX_RECORD_LIFETIME",
    "MAX_VALUE_SIZE",
    "RECORD_DOMAIN",
    "BadRecord",
    "Record",
    "address_key",
    "decode_record_untrusted",
    "decode_value_for_digest_untrusted",
    "decode_value_untrusted",
    "dht_node_id",
    "encode_provider_set",
    "key_digest",
    "merge_provider_sets",
    "newer_address",
    "parse_address",
    "provider_key",
    "sign_record",
]

RECORD_DOMAIN: Final = b"torv-dht-record-v1\x00"
MAX_ADDRESSES: Final = 8
MAX_PROVIDERS: Final = 20
#: A record may claim to live at most this long (seconds). Nodes sign theirs
#: for an hour and refresh them every ten minutes.
MAX_RECORD_LIFETIME: Final = 2 * 3600
#: A provider record that will live at least this long (seconds) is fresh:
#: its signer refreshed it lately. Longer claims earn no better rank.
_FRESH: Final = 2400
#: Ranks equally fresh providers in this process's own random order.
_RANK_SALT: Final = os.urandom(16)
#: Every value stored or returned, well under rpcudp's 8 KiB datagram.
MAX_VALUE_SIZE: Final = 6 * 1024
_MAX_RECORD_SIZE: Final = 512
_MAX_ADDRESS_TEXT: Final = 64


class BadRecord(RemoteError):
    """A DHT value is malformed, unsigned, forged, expired or too large."""


@dataclass(frozen=True, slots=True)
class Record:
    """A checked record: ``identity`` signed it; ``feed`` is set for providers."""

    kind: str
    identity: bytes
    seq: int
    expires: int
    addresses: tuple[str, ...]
    feed: bytes | None
    encoded: bytes


def dht_node_id(identity: bytes) -> bytes:
    """The 160-bit DHT node id of an identity (so a node cannot pick its place freely)."""
    return hashlib.sha256(b"torv-dht-node-id\x00" + identity).digest()[:20]


def address_key(identity: bytes) -> bytes:
    """The DHT key under which ``identity``'s address record lives."""
    return b"torv/addr/" + identity


def provider_key(feed: bytes) -> bytes:
    """The DHT key under which the providers of ``feed`` live."""
    return b"torv/prov/" + feed


def parse_address(text: str, *, any_port: bool = False) -> tuple[str, int]:
    """``"host:port"`` (IPv4, or ``[IPv6]:port``) as (host, port).

    Port 0 ("any free port", for listening) only with ``any_port``. Raises
    :class:`InvalidArgument` for anything else.
    """
    host, sep, port_text = text.rpartition(":")
    # str.isdigit() also takes "²" (int() refuses it) and "٤" (int() reads 4):
    # a port is ASCII digits only, so one address has one spelling.
    if (
        not sep
        or not (port_text.isascii() and port_text.isdigit())
        or len(text) > _MAX_ADDRESS_TEXT
    ):
        raise InvalidArgument(f"{text!r} is not HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidArgument(f"{text!r}: the host must be an IP address") from None
    port = int(port_text)
    if not (0 if any_port else 1) <= port <= 65535:
        raise InvalidArgument(f"{text!r}: the port must be 1 to 65535")
    return host, port


def _fields(
    kind: str,
    identity: bytes,
    seq: int,
    expires: int,
    addresses: tuple[str, ...],
    feed: bytes | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "addrs": list(addresses),
        "expires": expires,
        "id": identity,
        "kind": kind,
        "seq": seq,
    }
    if feed is not None:
        fields["feed"] = feed
    return fields


def sign_record(
    key: Ed25519PrivateKey,
    *,
    addresses: tuple[str, ...],
    seq: int,
    expires: int,
    feed: bytes | None = None,
) -> bytes:
    """A signed address record, or a provider record for ``feed`` if given."""
    if not 1 <= len(addresses) <= MAX_ADDRESSES:
        raise InvalidArgument(f"a record lists 1 to {MAX_ADDRESSES} addresses")
    for address in addresses:
        parse_address(address)
    identity = key.public_key().public_bytes_raw()
    fields = _fields("prov" if feed else "addr", identity, seq, expires, addresses, feed)
    fields["sig"] = key.sign(RECORD_DOMAIN + canonical.packb(fields))
    return canonical.packb(fields)


def _check(value: Any, now: float) -> Record:
    if not isinstance(value, dict):
        raise BadRecord("a record must be a map")
    kind = value.get("kind")
    expected = {"addrs", "expires", "id", "kind", "seq", "sig"} | (
        {"feed"} if kind == "prov" else set()
    )
    if kind not in ("addr", "prov") or set(value) != expected:
        raise BadRecord("a record must be an addr or prov map with exactly its fields")
    identity, seq, expires, addresses = value["id"], value["seq"], value["expires"], value["addrs"]
    feed = value.get("feed")
    if not (
        isinstance(identity, bytes)
        and len(identity) == 32
        and type(seq) is int
        and type(expires) is int
        and isinstance(addresses, list)
        and 1 <= len(addresses) <= MAX_ADDRESSES
        and all(isinstance(a, str) for a in addresses)
        and isinstance(value["sig"], bytes)
        and (feed is None or (isinstance(feed, bytes) and len(feed) == 32))
    ):
        raise BadRecord("a record field has the wrong type or size")
    if expires <= now:
        raise BadRecord("the record has expired")
    if expires > now + MAX_RECORD_LIFETIME + 300:
        raise BadRecord("the record claims to live too long")
    try:
        for address in addresses:
            parse_address(address)
    except InvalidArgument as exc:
        raise BadRecord(str(exc)) from None
    if is_weak_public_key(identity):
        raise BadRecord("the record's identity is not a usable key")
    signed = {name: field for name, field in value.items() if name != "sig"}
    try:
        Ed25519PublicKey.from_public_bytes(identity).verify(
            value["sig"], RECORD_DOMAIN + canonical.packb(signed)
        )
    except (InvalidSignature, ValueError):
        raise BadRecord("the record's signature does not verify") from None
    return Record(kind, identity, seq, expires, tuple(addresses), feed, canonical.packb(value))


def decode_record_untrusted(data: bytes, now: float) -> Record:
    """Check one signed record; raise :class:`BadRecord` naming the problem."""
    try:
        value = canonical.unpack_untrusted(data, max_size=_MAX_RECORD_SIZE, what="record")
    except MalformedEntry as exc:
        raise BadRecord(str(exc)) from None
    return _check(value, now)


def _unpack_value(data: bytes) -> Any:
    if len(data) > MAX_VALUE_SIZE:
        raise BadRecord(f"a value of {len(data)} bytes is larger than {MAX_VALUE_SIZE}")
    try:
        return canonical.unpack_untrusted(data, max_size=MAX_VALUE_SIZE, what="value")
    except MalformedEntry as exc:
        raise BadRecord(str(exc)) from None


def _check_value(key: bytes, value: Any, now: float) -> list[Record]:
    if key.startswith(b"torv/addr/"):
        record = _check(value, now)
        if record.kind != "addr" or address_key(record.identity) != key:
            raise BadRecord("the address record is not for this key")
        return [record]
    if key.startswith(b"torv/prov/"):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_PROVIDERS:
            raise BadRecord(f"a provider set lists 1 to {MAX_PROVIDERS} records")
        records = [_check(item, now) for item in value]
        if any(r.kind != "prov" or r.feed is None or provider_key(r.feed) != key for r in records):
            raise BadRecord("a provider record is not for this key")
        if len({r.identity for r in records}) != len(records):
            raise BadRecord("a provider appears twice")
        return records
    raise BadRecord("not a torv DHT key")


def decode_value_untrusted(key: bytes, data: bytes, now: float) -> list[Record]:
    """Check a whole DHT value stored under ``key``.

    Under an address key: exactly one address record of that identity. Under
    a provider key: a list of provider records for that feed, one per
    provider. Raises :class:`BadRecord` if any part does not check out (a
    value is all good or refused whole).
    """
    return _check_value(key, _unpack_value(data), now)


def key_digest(key: bytes) -> bytes:
    """The 20-byte DHT key of ``key``, as the ``kademlia`` package hashes keys."""
    return hashlib.sha1(key).digest()


def decode_value_for_digest_untrusted(digest: bytes, data: bytes, now: float) -> list[Record]:
    """Check a value offered under a hashed key (all a storing DHT node sees).

    The records name their own key (the identity of an address record, the
    feed of a provider set); the value is accepted only if that key hashes to
    ``digest``. Raises :class:`BadRecord`.
    """
    value = _unpack_value(data)
    if isinstance(value, dict) and isinstance(value.get("id"), bytes):
        key = address_key(value["id"])
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        feed = value[0].get("feed")
        key = provider_key(feed) if isinstance(feed, bytes) else b""
    else:
        raise BadRecord("not a torv DHT value")
    if key_digest(key) != digest:
        raise BadRecord("the value is not for this key")
    return _check_value(key, value, now)


def newer_address(held: Record | None, incoming: Record) -> bool:
    """Whether ``incoming`` should replace the address record held (newest seq wins)."""
    return held is None or incoming.seq > held.seq


def merge_provider_sets(held: list[Record], incoming: list[Record], now: float) -> list[Record]:
    """One provider set from two: per provider the newest record, expired ones
    dropped, at most :data:`MAX_PROVIDERS` and :data:`MAX_VALUE_SIZE` bytes
    encoded.

    Fresh records (refreshed lately) are kept first, and among them each
    node keeps its own random choice: claiming a longer life or a later seq
    wins nothing, so Sybils who want a popular feed's provider set to
    themselves must outnumber its honest providers at every node that holds
    it, not merely outbid them once.
    """
    best: dict[bytes, Record] = {}
    for record in [*held, *incoming]:
        if record.expires <= now:
            continue
        current = best.get(record.identity)
        if current is None or record.seq > current.seq:
            best[record.identity] = record
    ranked = sorted(
        best.values(),
        key=lambda r: (
            r.expires - now < _FRESH,
            hashlib.blake2b(r.identity, digest_size=8, key=_RANK_SALT).digest(),
        ),
    )
    kept: list[Record] = []
    size = 3  # the array header
    for record in ranked[:MAX_PROVIDERS]:
        if size + len(record.encoded) > MAX_VALUE_SIZE:
            break
        kept.append(record)
        size += len(record.encoded)
    return kept


def encode_provider_set(records: list[Record]) -> bytes:
    """The DHT value of a provider set from :func:`merge_provider_sets`.

    The records' own canonical bytes are spliced into an array header, so the
    value is canonical msgpack without re-encoding any record.
    """
    count = len(records)
    if not 1 <= count <= MAX_PROVIDERS:
        raise InvalidArgument(f"a provider set lists 1 to {MAX_PROVIDERS} records")
    header = bytes([0x90 | count]) if count < 16 else b"\xdc" + count.to_bytes(2, "big")
    data = header + b"".join(record.encoded for record in records)
    if len(data) > MAX_VALUE_SIZE:
        raise InvalidArgument("the provider set is too large")
    return data
