"""A helper process that checks Ed25519 signatures for :mod:`storage.verifier`.

Run as a script (``python _verify_worker.py DOMAIN_HEX``), so that it imports
nothing of torv but this file and ``cryptography``. It reads requests on
stdin and answers each on stdout, until stdin ends:

- request: a 4-byte big-endian length, then that many bytes of records, each
  a 2-byte big-endian header length, the 32-byte author key, the 64-byte
  signature and the header;
- answer: a 4-byte big-endian count, then one byte per record: 1 if its
  signature over ``DOMAIN + header`` verifies for its author, 0 if not.

A request that does not parse ends the process (its parent then checks the
entries itself). Why a process: a thread checking signatures needs the GIL
back after each one, and while the node's own thread parses and writes, that
wait is most of the time; a process has a GIL of its own.
"""

from __future__ import annotations

import contextlib
import struct
import sys
from functools import lru_cache
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: The largest request, in bytes (the parent sends far less).
MAX_REQUEST: Final = 64 << 20
_LENGTH: Final = struct.Struct(">I")
_HEADER_LENGTH: Final = struct.Struct(">H")
_FIXED: Final = 2 + 32 + 64


class BadRequest(ValueError):
    """A request whose records do not parse."""


def encode_records(records: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """A request body for ``(author, signature, header)`` records."""
    parts: list[bytes] = []
    pack = _HEADER_LENGTH.pack
    for author, signature, header in records:
        if len(author) != 32 or len(signature) != 64 or len(header) > 0xFFFF:
            raise BadRequest("a record's author, signature or header has the wrong size")
        parts += (pack(len(header)), author, signature, header)
    return b"".join(parts)


@lru_cache(maxsize=4096)
def _key(author: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(author)


def check_records(body: bytes, domain: bytes) -> bytes:
    """One byte per record of ``body``: 1 if its signature verifies, else 0."""
    results = bytearray()
    view = memoryview(body)
    at, end = 0, len(body)
    while at < end:
        if end - at < _FIXED:
            raise BadRequest("a record is cut short")
        (size,) = _HEADER_LENGTH.unpack_from(body, at)
        author = bytes(view[at + 2 : at + 34])
        signature = bytes(view[at + 34 : at + 98])
        at += _FIXED
        if end - at < size:
            raise BadRequest("a record's header is cut short")
        header = bytes(view[at : at + size])
        at += size
        try:
            _key(author).verify(signature, domain + header)
        except (InvalidSignature, ValueError):
            results.append(0)
        else:
            results.append(1)
    return bytes(results)


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    if len(data) != size:
        return None
    return data


def serve(requests: BinaryIO, answers: BinaryIO, domain: bytes) -> None:
    """Answer requests until ``requests`` ends or one does not parse."""
    while True:
        head = _read_exactly(requests, _LENGTH.size)
        if head is None:
            return
        (size,) = _LENGTH.unpack(head)
        if size > MAX_REQUEST:
            return
        body = _read_exactly(requests, size)
        if body is None:
            return
        try:
            results = check_records(body, domain)
        except BadRequest:
            return
        answers.write(_LENGTH.pack(len(results)) + results)
        answers.flush()


def main() -> None:
    try:
        domain = bytes.fromhex(sys.argv[1])
    except (IndexError, ValueError):
        sys.exit("usage: _verify_worker.py DOMAIN_HEX")
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        serve(sys.stdin.buffer, sys.stdout.buffer, domain)


if __name__ == "__main__":
    main()
