"""The store's raw reads (what a node serves peers) and what ingest reports per entry."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage.entry import Entry, create_entry
from storage.errors import CorruptStore
from storage.payloads import Delete, Post
from storage.store import IngestReport, Store

from .helpers import FakeClock, make_key, posts, public, sign, with_signature

ALICE, BOB = make_key(11), make_key(12)
A, B = public(ALICE), public(BOB)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "x.db", clock=FakeClock()) as opened:
        yield opened


def raw(entry: Entry) -> tuple[bytes, bytes, bytes | None]:
    return (entry.header_bytes, entry.signature, entry.payload)


def twin(key: Ed25519PrivateKey, entry: Entry, text: str) -> Entry:
    """Another entry with the seq and prev of ``entry``: half of a fork."""
    return create_entry(
        key,
        seq=entry.seq,
        prev=entry.header.prev,
        timestamp=entry.header.timestamp,
        payload=Post(text),
    )


# --- raw_log -------------------------------------------------------------------------


def test_raw_log_gives_the_bytes_received_for_the_range_in_log_order(store: Store) -> None:
    alice, bob = posts(ALICE, 8), posts(BOB, 3)
    # Interleaved, as gossip and sync deliver them: rowids do not follow seqs.
    store.ingest([alice[0], bob[0], alice[1], bob[1], *alice[2:], bob[2]])
    assert store.raw_log(A, 3, 6) == [raw(entry) for entry in alice[2:6]]
    assert store.raw_log(A, 1, 8) == [raw(entry) for entry in alice]
    assert store.raw_log(B, 1, 100) == [raw(entry) for entry in bob]
    assert store.raw_log(A, 9, 20) == []
    assert store.raw_log(A, 5, 4) == []
    assert store.raw_log(public(make_key(13)), 1, 10) == []


def test_raw_log_stops_at_the_limit_oldest_first(store: Store) -> None:
    alice = posts(ALICE, 6)
    store.ingest(alice)
    assert store.raw_log(A, 2, 6, limit=3) == [raw(entry) for entry in alice[1:4]]
    assert store.raw_log(A, 2, 6, limit=None) == [raw(entry) for entry in alice[1:]]


def test_raw_log_puts_a_forks_entries_after_the_first_of_their_seq(store: Store) -> None:
    alice = posts(ALICE, 3)
    other = twin(ALICE, alice[1], "a second seq 2")
    store.ingest([*alice, other])
    assert store.raw_log(A, 1, 3) == [raw(alice[0]), raw(alice[1]), raw(other), raw(alice[2])]


def test_raw_log_gives_a_deleted_entry_without_its_payload(store: Store) -> None:
    first = store.append(ALICE, Post("regrettable"))
    delete = store.append(ALICE, Delete(first.id))
    assert store.raw_log(A, 1, 2) == [(first.header_bytes, first.signature, None), raw(delete)]


def test_raw_log_refuses_bytes_that_no_longer_give_their_id(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with Store.open(path, clock=FakeClock()) as store:
        made = [store.append(ALICE, Post(f"n{n}")) for n in range(3)]
    signature = bytearray(made[1].signature)
    signature[7] ^= 0x01
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(
                "UPDATE entries SET signature = ? WHERE id = ?", (bytes(signature), made[1].id)
            )
    finally:
        db.close()
    with Store.open(path) as store:
        assert store.raw_log(A, 1, 1) == [raw(made[0])]
        with pytest.raises(CorruptStore, match=made[1].id.hex()):
            store.raw_log(A, 1, 3)


# --- which entries an ingest stored --------------------------------------------------


def test_ingest_reports_the_indices_it_stored_not_duplicates_or_rejects(store: Store) -> None:
    alice, bob = posts(ALICE, 4), posts(BOB, 2)
    store.ingest(alice[:2])
    forged = with_signature(bob[1], sign(ALICE, bob[1].header_bytes))
    fork = twin(ALICE, alice[1], "twin of seq 2")
    report = store.ingest(
        # 0, 1: held already; 2: new; 3: new; 4: duplicate in the batch;
        # 5: new; 6: a bad signature; 7: new; 8: the second half of a fork
        [alice[0], alice[1], alice[2], bob[0], alice[2], alice[3], forged, bob[1], fork]
    )
    assert report.stored_indices == (2, 3, 5, 7, 8)
    assert (report.stored, report.duplicates, report.forks) == (5, 3, 1)
    assert [index for index, _ in report.rejected] == [6]


@pytest.mark.parametrize("chunk_size", [1, 3, 4096])
def test_stored_indices_count_across_chunks(store: Store, chunk_size: int) -> None:
    alice = posts(ALICE, 10)
    store.ingest(alice[:4])
    report = store.ingest(alice, chunk_size=chunk_size)
    assert report.stored_indices == tuple(range(4, 10))
    assert store.ingest(alice, chunk_size=chunk_size).stored_indices == ()


def test_reports_compare_by_their_counts() -> None:
    assert IngestReport(stored=1, stored_indices=(0,)) == IngestReport(stored=1)
    assert "stored_indices" not in repr(IngestReport(stored=1, stored_indices=(0,)))
