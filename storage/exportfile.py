"""The export file: logs on a USB stick.

Layout (``docs/protocol.md`` is the reference)::

    file    = MAGIC record* trailer
    MAGIC   = b"torv-export-1\\n"
    record  = u32 length (1 .. MAX_RECORD_SIZE) + canonical msgpack
              [header: bin, signature: bin, payload: bin or nil]
    trailer = u32 0 + u64 count + SHA-256 of every byte before the digest

All integers are big-endian. The trailer makes truncation at a record
boundary detectable; the digest catches damage that still decodes. The
records themselves need no trust in the file: each is a signed entry.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Final

from . import canonical
from .entry import MAX_HEADER_SIZE, SIGNATURE_SIZE, Entry, parse_entry_untrusted
from .errors import BadExportFile, MalformedEntry
from .payloads import MAX_PAYLOAD_SIZE

__all__ = ["MAGIC", "MAX_RECORD_SIZE", "read_export_untrusted", "write_export"]

MAGIC: Final = b"torv-export-1\n"
#: Room for the largest header, signature and payload plus msgpack framing.
MAX_RECORD_SIZE: Final = MAX_HEADER_SIZE + SIGNATURE_SIZE + MAX_PAYLOAD_SIZE + 16
_LENGTH = struct.Struct(">I")
_COUNT = struct.Struct(">Q")


def write_export(out: BinaryIO, entries: Iterable[Entry]) -> int:
    """Write ``entries`` as an export file to ``out``; return how many."""
    digest = hashlib.sha256()

    def emit(data: bytes) -> None:
        digest.update(data)
        out.write(data)

    emit(MAGIC)
    count = 0
    for entry in entries:
        record = canonical.packb([entry.header_bytes, entry.signature, entry.payload])
        emit(_LENGTH.pack(len(record)) + record)
        count += 1
    emit(_LENGTH.pack(0) + _COUNT.pack(count))
    out.write(digest.digest())
    return count


def _read_exact(inp: BinaryIO, size: int, what: str, digest: hashlib._Hash | None) -> bytes:
    data = inp.read(size)
    if len(data) != size:
        raise BadExportFile(f"the file is truncated: it ends inside {what}")
    if digest is not None:
        digest.update(data)
    return data


def read_export_untrusted(inp: BinaryIO) -> Iterator[Entry]:
    """Yield the entries of an export file, well-formed but not yet verified.

    The caller verifies signatures and chains (``Store.ingest`` does). The
    whole file is only known to be intact once the iterator is exhausted:
    consume it inside one transaction and commit only if no error was raised.
    Raises :class:`BadExportFile` naming the record and what is wrong.
    """
    digest = hashlib.sha256()
    if _read_exact(inp, len(MAGIC), "the file header", digest) != MAGIC:
        raise BadExportFile("not a torv export file (the first bytes are wrong)")
    count = 0
    while True:
        where = f"record {count + 1}"
        (length,) = _LENGTH.unpack(_read_exact(inp, _LENGTH.size, where, digest))
        if length == 0:
            break
        if length > MAX_RECORD_SIZE:
            raise BadExportFile(f"{where} claims {length} bytes, more than {MAX_RECORD_SIZE}")
        record = _read_exact(inp, length, where, digest)
        try:
            value = canonical.unpack_untrusted(record, max_size=MAX_RECORD_SIZE, what=where)
            if (
                not isinstance(value, list)
                or len(value) != 3
                or not isinstance(value[0], bytes)
                or not isinstance(value[1], bytes)
                or not (value[2] is None or isinstance(value[2], bytes))
            ):
                raise MalformedEntry(f"{where} is not [header, signature, payload]")
            entry = parse_entry_untrusted(value[0], value[1], value[2])
        except MalformedEntry as exc:
            raise BadExportFile(f"{where}: {exc}") from exc
        count += 1
        yield entry
    (claimed,) = _COUNT.unpack(_read_exact(inp, _COUNT.size, "the trailer", digest))
    stored_digest = _read_exact(inp, digest.digest_size, "the trailer", None)
    if claimed != count:
        raise BadExportFile(f"the trailer counts {claimed} records but the file holds {count}")
    if stored_digest != digest.digest():
        raise BadExportFile("the file's checksum does not match: it was altered")
    if inp.read(1):
        raise BadExportFile("there are bytes after the end of the export")
