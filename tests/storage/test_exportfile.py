"""The export file: what is written reads back, and a damaged file never
puts anything into a store."""

from __future__ import annotations

import hashlib
import io
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import canonical
from storage.entry import MAX_SEQ, MAX_TIMESTAMP, Entry, create_entry
from storage.errors import BadExportFile, EntryError, RemoteError
from storage.exportfile import MAGIC, MAX_RECORD_SIZE, read_export_untrusted, write_export
from storage.payloads import MAX_PAYLOAD_SIZE, Delete, Follow, Post, Profile, UnknownPayload
from storage.store import Store

from .helpers import chain, make_key, sign, with_signature

ALICE, BOB = make_key(1), make_key(2)


def sample_entries() -> list[Entry]:
    alice = chain(ALICE, [Post("hello"), Profile(name="A"), Delete(b"\x01" * 32)])
    bob = chain(BOB, [Follow(alice[0].author), UnknownPayload(kind="poll", fields={"q": 1})])
    # One header travels without its payload, as after a delete.
    return [alice[0].without_payload(), *alice[1:], *bob]


ENTRIES = sample_entries()


def export(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    assert write_export(out, entries) == len(entries)
    return out.getvalue()


def read(data: bytes) -> list[Entry]:
    return list(read_export_untrusted(io.BytesIO(data)))


FILE = export(ENTRIES)


def test_write_then_read_round_trips() -> None:
    assert read(FILE) == ENTRIES


def test_an_empty_export_round_trips() -> None:
    data = export([])
    assert (
        data == MAGIC + b"\x00" * 4 + b"\x00" * 8 + hashlib.sha256(MAGIC + b"\x00" * 12).digest()
    )
    assert read(data) == []


def test_layout_is_magic_records_and_trailer() -> None:
    assert FILE.startswith(MAGIC)
    (length,) = struct.unpack(">I", FILE[len(MAGIC) : len(MAGIC) + 4])
    record = FILE[len(MAGIC) + 4 : len(MAGIC) + 4 + length]
    first = ENTRIES[0]
    assert canonical.unpack_untrusted(record, max_size=length, what="record") == [
        first.header_bytes,
        first.signature,
        None,
    ]
    assert FILE[-44:-32] == b"\x00" * 4 + struct.pack(">Q", len(ENTRIES))
    assert FILE[-32:] == hashlib.sha256(FILE[:-32]).digest()


def test_the_largest_entry_fits_in_a_record() -> None:
    payload = UnknownPayload(kind="k" * 32, fields={"b": b"x" * (MAX_PAYLOAD_SIZE - 6)})
    big = create_entry(
        ALICE, seq=MAX_SEQ, prev=b"\xff" * 32, timestamp=MAX_TIMESTAMP, payload=payload
    )
    assert big.payload is not None
    assert len(big.payload) == MAX_PAYLOAD_SIZE
    data = export([big])
    assert len(data) - len(MAGIC) - 4 - 12 - 32 <= MAX_RECORD_SIZE
    assert read(data) == [big]


def test_export_of_a_store_imports_into_another(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.db") as source, Store.open(tmp_path / "b.db") as target:
        first = source.append(ALICE, Post("one"))
        source.append(ALICE, Post("two"))
        source.append(ALICE, Delete(first.id))
        path = tmp_path / "alice.torv"
        with path.open("wb") as out:
            write_export(out, (stored.entry for stored in source.log(first.author)))
        with path.open("rb") as inp:
            report = target.ingest(read_export_untrusted(inp), atomic=True)
        assert report.stored == 3
        assert target.get(first.id).entry.payload is None
        target.verify_all()


# --- damage --------------------------------------------------------------------------


def test_truncation_at_every_position_is_detected() -> None:
    for size in range(len(FILE)):
        with pytest.raises(BadExportFile):
            read(FILE[:size])


def assert_import_refused(store: Store, data: bytes) -> None:
    """Reading fails, and an atomic import of the same bytes stores nothing."""
    with pytest.raises(BadExportFile):
        read(data)
    with pytest.raises(RemoteError) as info:
        # chunk_size=1 makes the store write entries before the file's end is seen.
        store.ingest(read_export_untrusted(io.BytesIO(data)), atomic=True, chunk_size=1)
    assert isinstance(info.value, BadExportFile | EntryError)
    assert store.count() == 0
    assert store.feeds() == []


def test_every_flipped_byte_is_detected_and_nothing_is_imported(tmp_path: Path) -> None:
    with Store.open(tmp_path / "x.db") as store:
        for position in range(len(FILE)):
            for mask in (0x01, 0x80):
                damaged = bytearray(FILE)
                damaged[position] ^= mask
                assert_import_refused(store, bytes(damaged))


@settings(max_examples=60)
@given(st.integers(0, len(FILE) - 1), st.integers(1, 255))
def test_any_changed_byte_is_detected_and_nothing_is_imported(position: int, mask: int) -> None:
    damaged = bytearray(FILE)
    damaged[position] ^= mask
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "x.db") as store:
        assert_import_refused(store, bytes(damaged))


def test_a_forged_signature_is_refused_even_with_a_fresh_checksum(tmp_path: Path) -> None:
    # The file's checksum is no signature: anyone can recompute it. The
    # entries' own signatures are what an import relies on.
    forged = with_signature(ENTRIES[1], sign(BOB, ENTRIES[1].header_bytes))
    data = export([ENTRIES[0], forged, *ENTRIES[2:]])
    assert read(data)[1] == forged  # the reader does not check signatures
    with Store.open(tmp_path / "x.db") as store:
        with pytest.raises(EntryError) as info:
            store.ingest(read_export_untrusted(io.BytesIO(data)), atomic=True, chunk_size=1)
        assert info.value.problem == "bad-signature"
        assert store.count() == 0


def test_wrong_magic() -> None:
    for magic in (b"torv-export-2\n", b"TORV-EXPORT-1\n", b"\x00" * len(MAGIC)):
        with pytest.raises(BadExportFile, match="not a torv export"):
            read(magic + FILE[len(MAGIC) :])


def test_oversize_length_is_rejected_without_reading_the_record() -> None:
    inp = io.BytesIO(MAGIC + struct.pack(">I", MAX_RECORD_SIZE + 1) + b"\x00" * MAX_RECORD_SIZE)
    with pytest.raises(BadExportFile, match="more than"):
        list(read_export_untrusted(inp))
    assert inp.tell() == len(MAGIC) + 4


def test_huge_length_is_rejected_before_reading() -> None:
    inp = io.BytesIO(MAGIC + b"\xff\xff\xff\xff")
    with pytest.raises(BadExportFile, match="more than"):
        list(read_export_untrusted(inp))


def test_record_that_is_not_an_entry() -> None:
    for value in ([b"h", b"s"], [b"h", b"s", b"p", b"x"], {"h": b""}, [1, b"s", None]):
        record = canonical.packb(value)
        body = MAGIC + struct.pack(">I", len(record)) + record
        with pytest.raises(BadExportFile, match="record 1"):
            read(body + struct.pack(">IQ", 0, 1) + hashlib.sha256(body).digest())


def test_non_canonical_record() -> None:
    record = canonical.packb([ENTRIES[1].header_bytes, ENTRIES[1].signature, None])
    record = b"\xdc\x00\x03" + record[1:]  # the same array with a 16-bit length
    body = MAGIC + struct.pack(">I", len(record)) + record
    trailer = struct.pack(">IQ", 0, 1)
    with pytest.raises(BadExportFile):
        read(body + trailer + hashlib.sha256(body + trailer).digest())


def test_count_in_the_trailer_must_match() -> None:
    body = FILE[: -12 - 32]
    trailer = struct.pack(">IQ", 0, len(ENTRIES) - 1)
    with pytest.raises(BadExportFile, match="counts"):
        read(body + trailer + hashlib.sha256(body + trailer).digest())


def test_bytes_after_the_trailer_are_rejected() -> None:
    for extra in (b"\x00", b"junk", FILE):
        with pytest.raises(BadExportFile, match="after the end"):
            read(FILE + extra)


def test_damage_is_only_known_at_the_end() -> None:
    # The iterator yields entries before it has checked the checksum: a
    # consumer that does not finish it inside one transaction may keep them.
    damaged = bytearray(FILE)
    damaged[-1] ^= 0x01
    entries = read_export_untrusted(io.BytesIO(bytes(damaged)))
    assert next(entries) == ENTRIES[0]
    with pytest.raises(BadExportFile, match="checksum"):
        list(entries)
