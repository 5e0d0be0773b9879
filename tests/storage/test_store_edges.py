"""Store behaviour at the edges: a second signature over one header, a payload
that arrives after its header, SQLite failures, and damage seen on the read path."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from storage import CorruptStore, Post, StorageError, Store
from storage.entry import SIGNATURE_DOMAIN, create_entry, parse_entry_untrusted

from .ed25519_nonce import sign_with_nonce
from .helpers import make_key, public


def _seed(n: int) -> bytes:
    return make_key(n).private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def test_a_chosen_nonce_signature_verifies_and_differs() -> None:
    key = make_key(1)
    entry = create_entry(key, seq=1, prev=None, timestamp=5, payload=Post(text="one"))
    other = sign_with_nonce(_seed(1), SIGNATURE_DOMAIN + entry.header_bytes, nonce=12345)
    assert other != entry.signature
    twin = parse_entry_untrusted(entry.header_bytes, other, entry.payload)
    twin.verify()
    assert twin.id != entry.id


def test_same_header_with_another_signature_is_a_fork_and_both_branches_extend(
    tmp_path: Path,
) -> None:
    key = make_key(1)
    author = public(key)
    first = create_entry(key, seq=1, prev=None, timestamp=5, payload=Post(text="one"))
    other_sig = sign_with_nonce(_seed(1), SIGNATURE_DOMAIN + first.header_bytes, nonce=99)
    twin = parse_entry_untrusted(first.header_bytes, other_sig, first.payload)
    after_twin = create_entry(key, seq=2, prev=twin.id, timestamp=6, payload=Post(text="two"))
    with Store.open(tmp_path / "s.db") as store:
        store.ingest([first])
        report = store.ingest([twin, after_twin])
        assert (report.stored, report.forks, report.rejected) == (2, 1, ())
        info = store.feed_info(author)
        assert info is not None
        assert info.forked
        (fork,) = store.forks(author)
        assert {fork.first.id, fork.second.id} == {first.id, twin.id}
        assert store.latest_seq(author) == 2
        store.verify_all()


def test_a_payload_that_arrives_after_its_header_is_stored(tmp_path: Path) -> None:
    key = make_key(2)
    author = public(key)
    entry = create_entry(
        key, seq=1, prev=None, timestamp=5, payload=Post(text="late #news", tags=("news",))
    )
    header_only = parse_entry_untrusted(entry.header_bytes, entry.signature, None)
    with Store.open(tmp_path / "s.db") as store:
        store.ingest([header_only])
        assert store.get(entry.id).entry.payload is None
        assert store.timeline([author]) == []
        report = store.ingest([entry])
        assert report.duplicates == 1
        held = store.get(entry.id)
        assert held.entry.payload == entry.payload
        assert not held.deleted
        assert [s.entry.id for s in store.timeline([author])] == [entry.id]
        assert [s.entry.id for s in store.tagged("news")] == [entry.id]
        assert store.verify_all().payloads == 1


def test_a_full_disk_is_a_storage_error_and_damages_nothing(tmp_path: Path) -> None:
    key = make_key(4)
    path = tmp_path / "s.db"
    with Store.open(path) as store:
        store.append(key, Post(text="before"))
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()
        store._db.execute(f"PRAGMA max_page_count = {pages + 2}")
        appended = 0
        with pytest.raises(StorageError, match="full"):  # noqa: PT012 (fill until it fails)
            for n in range(10_000):
                store.append(key, Post(text=f"filling the disk {n} " + "x" * 2000))
                appended += 1
        kept = store.latest_seq(public(key))
        assert kept == appended + 1
    with Store.open(path) as store:
        assert store.latest_seq(public(key)) == kept
        assert store.verify_all().entries == kept
        assert store.append(key, Post(text="after")).seq == kept + 1


def test_reading_an_entry_whose_bytes_were_changed_reports_damage(tmp_path: Path) -> None:
    key = make_key(5)
    path = tmp_path / "s.db"
    with Store.open(path) as store:
        entry = store.append(key, Post(text="hello"))
    db = sqlite3.connect(path)
    signature = bytearray(entry.signature)
    signature[0] ^= 1
    db.execute("UPDATE entries SET signature = ? WHERE id = ?", (bytes(signature), entry.id))
    db.commit()
    db.close()
    with Store.open(path) as store:
        with pytest.raises(CorruptStore, match=entry.id.hex()):
            store.get(entry.id)
        with pytest.raises(CorruptStore, match="signature"):
            store.verify_all()
