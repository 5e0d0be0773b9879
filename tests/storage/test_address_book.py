"""The address book: peers and DHT contacts kept in the store (never pickled),
so a node can rejoin with no seed; and the schema migration that added it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import InvalidArgument, Post, Store
from storage.schema import SCHEMA_VERSION
from storage.store import MAX_DHT_CONTACTS

from .helpers import FakeClock, make_key


def test_a_version_1_store_with_entries_upgrades_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    key = make_key(1)
    with Store.open(path) as store:
        entry = store.append(key, Post(text="written before the upgrade"))
    # Turn it into what torv with schema 1 wrote: the same data, no address book.
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TABLE peers")
    db.execute("DROP TABLE dht_contacts")
    db.execute("DROP INDEX entries_by_parent")  # schema 3
    db.execute("DROP INDEX entries_by_author_reaction")
    db.execute("DROP TABLE square")  # schema 4
    db.execute("PRAGMA user_version = 1")
    db.close()
    with Store.open(path) as store:
        assert store.get(entry.id).entry.seq == 1
        store.remember_peer(bytes(32), ["127.0.0.1:4000"])
        assert [peer.identity for peer in store.known_peers()] == [bytes(32)]
        assert store.verify_all().entries == 1
        assert store.append(key, Post(text="and after")).seq == 2
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


def test_peers_are_ordered_by_failures_then_recency(tmp_path: Path) -> None:
    clock = FakeClock(1_000)
    with Store.open(tmp_path / "s.db", clock=clock) as store:
        a, b, c = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
        store.remember_peer(a, ["127.0.0.1:1"])
        clock.now = 2_000
        store.remember_peer(b, ["127.0.0.1:2", "[::1]:2"])
        clock.now = 3_000
        store.remember_peer(c, ["127.0.0.1:3"])
        store.peer_failed(c)
        store.peer_failed(bytes(32))  # unknown: nothing happens
        peers = store.known_peers()
        assert [peer.identity for peer in peers] == [b, a, c]
        assert peers[0].addresses == ("127.0.0.1:2", "[::1]:2")
        assert peers[2].failures == 1
        clock.now = 4_000
        store.remember_peer(c, ["127.0.0.1:33"])  # a new session clears failures
        assert store.known_peers()[0].identity == c
        assert store.known_peers(limit=1)[0].addresses == ("127.0.0.1:33",)


@pytest.mark.parametrize(
    ("identity", "addresses"),
    [(bytes(31), ["127.0.0.1:1"]), (bytes(32), []), (bytes(32), ["a b"]), (bytes(32), ["x" * 65])],
)
def test_bad_peers_are_refused(tmp_path: Path, identity: bytes, addresses: list[str]) -> None:
    with Store.open(tmp_path / "s.db") as store, pytest.raises(InvalidArgument):
        store.remember_peer(identity, addresses)


def test_dht_contacts_are_bounded_newest_first(tmp_path: Path) -> None:
    clock = FakeClock(1)
    with Store.open(tmp_path / "s.db", clock=clock) as store:
        for n in range(MAX_DHT_CONTACTS + 20):
            clock.now = n + 1
            store.remember_dht_contacts([("127.0.0.1", 1000 + n)])
        contacts = store.dht_contacts(limit=MAX_DHT_CONTACTS + 50)
        assert len(contacts) == MAX_DHT_CONTACTS
        assert contacts[0] == ("127.0.0.1", 1000 + MAX_DHT_CONTACTS + 19)
