"""Builders shared by the storage tests: fixed keys, a settable clock, raw entries."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage import canonical
from storage.entry import SIGNATURE_DOMAIN, VERSION, Entry, create_entry, parse_entry_untrusted
from storage.payloads import Payload, Post, encode_payload


def make_key(n: int) -> Ed25519PrivateKey:
    """A fixed key per ``n``, so that ids are the same on every run."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"torv-test-key-%d" % n).digest())


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


class FakeClock:
    """Milliseconds that only move when a test says so."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class ScriptedClock:
    """Returns the given readings in turn, then repeats the last one."""

    def __init__(self, *readings: int) -> None:
        self._readings = list(readings)

    def __call__(self) -> int:
        if len(self._readings) > 1:
            return self._readings.pop(0)
        return self._readings[0]


def chain(
    key: Ed25519PrivateKey, payloads: list[Payload], *, start_ts: int = 1_000, step: int = 10
) -> list[Entry]:
    """A valid log of ``payloads`` signed by ``key``, seq 1 up."""
    entries: list[Entry] = []
    prev: bytes | None = None
    for index, payload in enumerate(payloads):
        entry = create_entry(
            key, seq=index + 1, prev=prev, timestamp=start_ts + index * step, payload=payload
        )
        entries.append(entry)
        prev = entry.id
    return entries


def posts(key: Ed25519PrivateKey, count: int, *, start_ts: int = 1_000) -> list[Entry]:
    return chain(key, [Post(f"post {n}") for n in range(count)], start_ts=start_ts)


def raw_header(fields: object) -> bytes:
    """Canonical header bytes for any field list, valid or not."""
    return canonical.packb(fields)


def header_fields(
    key: Ed25519PrivateKey,
    payload: bytes,
    *,
    seq: object = 1,
    prev: object = None,
    timestamp: object = 1_000,
    kind: object = "post",
    version: object = VERSION,
) -> list[object]:
    return [
        version,
        public(key),
        seq,
        prev,
        timestamp,
        kind,
        hashlib.sha256(payload).digest(),
        len(payload),
    ]


def sign(key: Ed25519PrivateKey, header_bytes: bytes) -> bytes:
    return key.sign(SIGNATURE_DOMAIN + header_bytes)


def with_signature(entry: Entry, signature: bytes) -> Entry:
    """``entry`` with another signature, parsed as a peer's entry would be."""
    return parse_entry_untrusted(entry.header_bytes, signature, entry.payload)


def post_bytes(text: str = "hello") -> bytes:
    return encode_payload(Post(text))
