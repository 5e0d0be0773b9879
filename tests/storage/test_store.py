"""The SQLite store: appending, ingesting, forks, deletes, queries, and checks."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage.entry import Entry, create_entry, entry_id
from storage.errors import (
    AmbiguousId,
    BadSignature,
    ChainError,
    CorruptStore,
    InvalidArgument,
    LocalError,
    NotFound,
    StorageError,
)
from storage.payloads import (
    Block,
    Delete,
    Follow,
    Payload,
    Post,
    Profile,
    React,
    Repost,
    Unblock,
    Unfollow,
    UnknownPayload,
)
from storage.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from storage.store import Fork, IngestReport, Store, StoredEntry, VerifyReport

from .helpers import FakeClock, ScriptedClock, chain, make_key, posts, public, sign, with_signature

ALICE, BOB, CAROL = make_key(1), make_key(2), make_key(3)
A, B, C = public(ALICE), public(BOB), public(CAROL)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store.open(tmp_path / "x.db", clock=clock) as opened:
        yield opened


def ids(items: list[StoredEntry]) -> list[bytes]:
    return [item.entry.id for item in items]


def entries_of(store: Store, author: bytes) -> list[Entry]:
    return [stored.entry for stored in store.log(author)]


def refork(key: Ed25519PrivateKey, entry: Entry, text: str) -> Entry:
    """Another entry with the seq and prev of ``entry``: half of a fork."""
    return create_entry(
        key,
        seq=entry.seq,
        prev=entry.header.prev,
        timestamp=entry.header.timestamp,
        payload=Post(text),
    )


# --- append ----------------------------------------------------------------------


def test_append_assigns_seq_and_links_prev(tmp_path: Path) -> None:
    with Store.open(tmp_path / "x.db", clock=FakeClock(5_000)) as store:
        made = [store.append(ALICE, Post(f"n{n}")) for n in range(3)]
        assert [entry.seq for entry in made] == [1, 2, 3]
        assert made[0].header.prev is None
        assert made[1].header.prev == made[0].id
        assert made[2].header.prev == made[1].id
        assert entries_of(store, A) == made
        assert store.latest_seq(A) == 3
        assert store.count() == 3


def test_append_timestamps_never_go_backwards(tmp_path: Path) -> None:
    # Every reading of this clock is earlier than the one before.
    clock = ScriptedClock(*range(10_000, 0, -100))
    with Store.open(tmp_path / "x.db", clock=clock) as store:
        made = [store.append(ALICE, Post(f"n{n}")) for n in range(5)]
        made.append(store.append(ALICE, Post("explicit"), timestamp=1))
        stamps = [entry.header.timestamp for entry in made]
        assert stamps[0] == 10_000
        assert stamps == sorted(stamps)
        assert store.verify_all().entries == 6


def test_append_follows_a_clock_that_moves_forward(tmp_path: Path, clock: FakeClock) -> None:
    with Store.open(tmp_path / "x.db", clock=clock) as store:
        first = store.append(ALICE, Post("a"))
        clock.now += 1_000
        second = store.append(ALICE, Post("b"))
        assert second.header.timestamp == first.header.timestamp + 1_000
        assert store.get(second.id).received == clock.now


def test_own_posts_keep_their_order_when_the_clock_steps_back(
    store: Store, clock: FakeClock
) -> None:
    clock.now = 10_000
    first = store.append(ALICE, Post("first"))
    clock.now = 5_000  # the system clock was set back between the two posts
    second = store.append(ALICE, Post("second"))
    assert second.header.timestamp >= first.header.timestamp
    # The newer post of one's own log comes first, as its timestamp says.
    assert ids(store.timeline([A])) == [second.id, first.id]


def test_reopen_never_reuses_a_seq(tmp_path: Path, clock: FakeClock) -> None:
    with Store.open(tmp_path / "x.db", clock=clock) as store:
        first = [store.append(ALICE, Post(f"n{n}")) for n in range(2)]
    with Store.open(tmp_path / "x.db", clock=clock) as store:
        third = store.append(ALICE, Post("after reopening"))
        assert third.seq == 3
        assert third.header.prev == first[1].id
        assert store.count() == 3
        store.verify_all()


def test_append_of_an_invalid_payload_writes_nothing(store: Store) -> None:
    with pytest.raises(InvalidArgument):
        store.append(ALICE, Post(""))
    assert store.count() == 0
    assert store.feed_info(A) is None
    assert store.append(ALICE, Post("ok")).seq == 1


def test_appends_of_several_identities_are_separate_logs(store: Store) -> None:
    a1 = store.append(ALICE, Post("a1"))
    b1 = store.append(BOB, Post("b1"))
    a2 = store.append(ALICE, Post("a2"))
    assert (a1.seq, b1.seq, a2.seq) == (1, 1, 2)
    assert a2.header.prev == a1.id
    assert b1.header.prev is None


def test_append_refuses_to_extend_a_forked_own_log(store: Store) -> None:
    own = store.append(ALICE, Post("mine"))
    # A copy of the key elsewhere signed another seq 1: the log is forked.
    report = store.ingest([refork(ALICE, own, "from a stolen key")])
    assert report.forks == 1
    with pytest.raises(StorageError):
        store.append(ALICE, Post("more"))
    assert store.latest_seq(A) == 1


# --- ingest --------------------------------------------------------------------------


def test_ingest_of_another_stores_log(tmp_path: Path, clock: FakeClock) -> None:
    with (
        Store.open(tmp_path / "a.db", clock=clock) as source,
        Store.open(tmp_path / "b.db", clock=clock) as target,
    ):
        first = source.append(ALICE, Post("hello"))
        source.append(ALICE, Profile(name="Alice"))
        source.append(ALICE, Follow(B))
        source.append(ALICE, React(entry=first.id, author=A, emoji="+"))
        source.append(ALICE, UnknownPayload(kind="poll", fields={"q": "?"}))
        log = entries_of(source, A)
        report = target.ingest(log)
        assert report == IngestReport(stored=5, duplicates=0, forks=0, rejected=())
        assert entries_of(target, A) == log
        assert target.latest_seq(A) == 5
        assert target.feed_info(A) == source.feed_info(A)
        assert target.following(A) == [B]
        assert target.verify_all() == VerifyReport(entries=5, feeds=1, payloads=5)


def test_duplicates_are_counted_not_stored(store: Store) -> None:
    log = posts(ALICE, 3)
    assert store.ingest(log).stored == 3
    assert store.ingest(log) == IngestReport(stored=0, duplicates=3)
    assert store.ingest(log + log[1:2], atomic=True) == IngestReport(duplicates=4)
    assert store.count() == 3


def test_duplicates_inside_one_batch(store: Store) -> None:
    log = posts(ALICE, 2)
    report = store.ingest([log[0], log[0], log[1], log[0], log[1]])
    assert report == IngestReport(stored=2, duplicates=3)
    assert store.count() == 2


def test_ingest_spanning_many_chunks(store: Store) -> None:
    log = posts(ALICE, 25)
    report = store.ingest(log, chunk_size=4)
    assert report.stored == 25
    assert store.latest_seq(A) == 25
    assert store.ingest(log, chunk_size=3, atomic=True).duplicates == 25


@pytest.mark.parametrize("checked", [False, True], ids=["ingest", "ingest_checked"])
def test_entries_of_refused_authors_are_left_out_and_listed(store: Store, checked: bool) -> None:
    alice, bob = posts(ALICE, 3), posts(BOB, 2)
    entries = [alice[0], bob[0], alice[1], bob[1], alice[2]]
    refuse = frozenset({B})
    if checked:
        report = store.ingest_checked(store.check(entries, chunk_size=2), refuse=refuse)
    else:
        report = store.ingest(entries, chunk_size=2, refuse=refuse)
    assert report == IngestReport(stored=3, refused=(1, 3))
    assert report.stored_indices == (0, 2, 4)
    assert store.feed_info(B) is None
    assert store.latest_seq(A) == 3


def test_gap_is_rejected(store: Store) -> None:
    log = posts(ALICE, 3)
    report = store.ingest([log[0], log[2]])
    assert report.stored == 1
    [(index, error)] = report.rejected
    assert index == 1
    assert isinstance(error, ChainError)
    assert error.problem == "gap"
    assert store.latest_seq(A) == 1


def test_gap_at_the_start_of_an_unknown_feed(store: Store) -> None:
    log = posts(ALICE, 2)
    with pytest.raises(ChainError) as info:
        store.ingest([log[1]], atomic=True)
    assert info.value.problem == "gap"
    assert store.count() == 0


def test_wrong_prev_is_rejected(store: Store) -> None:
    log = posts(ALICE, 2)
    astray = create_entry(ALICE, seq=2, prev=b"\x07" * 32, timestamp=5, payload=Post("astray"))
    report = store.ingest([log[0], astray])
    [(index, error)] = report.rejected
    assert index == 1
    assert isinstance(error, ChainError)
    assert error.problem == "wrong-prev"
    # The entry that does link is still welcome.
    assert store.ingest([log[1]]).stored == 1


def test_bad_signature_is_left_out_and_listed(store: Store) -> None:
    alice = posts(ALICE, 2)
    bob = posts(BOB, 2)
    forged = with_signature(bob[1], sign(CAROL, bob[1].header_bytes))
    report = store.ingest([alice[0], bob[0], forged, alice[1]])
    assert (report.stored, report.duplicates, report.forks) == (3, 0, 0)
    [(index, error)] = report.rejected
    assert index == 2
    assert isinstance(error, BadSignature)
    assert error.problem == "bad-signature"
    assert store.find(forged.id) is None
    assert store.latest_seq(A) == 2
    assert store.latest_seq(B) == 1
    # The genuine entry for that seq is accepted later: the forgery left no trace.
    assert store.ingest([bob[1]]).stored == 1


def test_a_rejected_entry_makes_the_rest_of_its_log_a_gap(store: Store) -> None:
    log = posts(ALICE, 3)
    forged = with_signature(log[1], sign(BOB, log[1].header_bytes))
    report = store.ingest([log[0], forged, log[2]])
    assert report.stored == 1
    assert [(index, error.problem) for index, error in report.rejected] == [
        (1, "bad-signature"),
        (2, "gap"),
    ]


def test_rejected_indexes_count_across_chunks(store: Store) -> None:
    log = posts(ALICE, 6)
    forged = with_signature(log[5], sign(BOB, log[5].header_bytes))
    report = store.ingest([*log[:5], forged], chunk_size=2)
    assert report.stored == 5
    assert [index for index, _ in report.rejected] == [5]


@pytest.mark.parametrize("chunk_size", [1, 2, 1024])
def test_atomic_ingest_stores_nothing_when_any_entry_is_bad(store: Store, chunk_size: int) -> None:
    alice = posts(ALICE, 3)
    bob = posts(BOB, 2)
    forged = with_signature(bob[1], sign(CAROL, bob[1].header_bytes))
    with pytest.raises(BadSignature):
        store.ingest([*alice, bob[0], forged], atomic=True, chunk_size=chunk_size)
    assert store.count() == 0
    assert store.feeds() == []
    assert store.latest_seq(A) == 0
    # The store is usable afterwards, and the rolled-back feeds left no state.
    assert store.ingest([*alice, *bob], atomic=True).stored == 5
    store.verify_all()


def test_atomic_ingest_rolls_back_when_the_source_fails(store: Store) -> None:
    log = posts(ALICE, 4)

    def source() -> Iterator[Entry]:
        yield from log
        raise OSError("the USB stick was pulled")

    with pytest.raises(OSError, match="USB"):
        store.ingest(source(), atomic=True, chunk_size=1)
    assert store.count() == 0
    assert store.ingest(log).stored == 4


def test_atomic_chain_error(store: Store) -> None:
    log = posts(ALICE, 3)
    with pytest.raises(ChainError) as info:
        store.ingest([log[0], log[2]], atomic=True)
    assert info.value.problem == "gap"
    assert store.count() == 0


# --- forks ------------------------------------------------------------------------------


def test_fork_keeps_both_entries(store: Store) -> None:
    log = posts(ALICE, 3)
    store.ingest(log)
    other = refork(ALICE, log[1], "a second seq 2")
    report = store.ingest([other])
    assert report == IngestReport(stored=1, duplicates=0, forks=1)
    assert store.get(log[1].id).entry == log[1]
    assert store.get(other.id).entry == other
    info = store.feed_info(A)
    assert info is not None
    assert info.forked
    assert info.latest_seq == 3
    assert store.forks(A) == [Fork(author=A, seq=2, first=log[1], second=other)]
    assert store.forks(B) == []
    assert store.count() == 4
    assert store.verify_all() == VerifyReport(entries=4, feeds=1, payloads=4)
    # The second half seen again is a duplicate, not another fork.
    assert store.ingest([other]) == IngestReport(duplicates=1)
    assert len(store.forks(A)) == 1


@pytest.mark.parametrize("chunk_size", [1, 1024])
def test_both_halves_of_a_fork_in_one_ingest(store: Store, chunk_size: int) -> None:
    log = posts(ALICE, 3)
    other = refork(ALICE, log[0], "twin of seq 1")
    report = store.ingest([log[0], other, *log[1:], other, log[0]], chunk_size=chunk_size)
    assert report == IngestReport(stored=4, duplicates=2, forks=1)
    assert [(fork.seq, fork.first, fork.second) for fork in store.forks(A)] == [(1, log[0], other)]
    assert store.latest_seq(A) == 3
    store.verify_all()


def test_second_half_of_a_fork_need_not_link(store: Store) -> None:
    log = posts(ALICE, 3)
    store.ingest(log)
    stray = create_entry(ALICE, seq=2, prev=b"\x07" * 32, timestamp=9, payload=Post("stray"))
    assert store.ingest([stray]) == IngestReport(stored=1, forks=1)
    assert store.verify_all() == VerifyReport(entries=4, feeds=1, payloads=4)


def test_fork_at_the_latest_seq_and_the_log_goes_on(store: Store) -> None:
    log = posts(ALICE, 4)
    store.ingest(log[:3])
    other = refork(ALICE, log[2], "twin")
    assert store.ingest([other]).forks == 1
    assert store.latest_seq(A) == 3
    assert store.ingest([log[3]]).stored == 1
    assert store.latest_seq(A) == 4
    store.verify_all()


def test_fork_of_seq_one(store: Store) -> None:
    log = posts(ALICE, 2)
    store.ingest(log)
    other = refork(ALICE, log[0], "another beginning")
    assert store.ingest([other], atomic=True).forks == 1
    [fork] = store.forks(A)
    assert (fork.seq, fork.first, fork.second) == (1, log[0], other)
    store.verify_all()


def test_an_unforked_feed_is_not_marked(store: Store) -> None:
    store.ingest(posts(ALICE, 3))
    info = store.feed_info(A)
    assert info is not None
    assert not info.forked


# --- deletes -----------------------------------------------------------------------------


def test_delete_drops_the_payload_and_keeps_the_chain(store: Store) -> None:
    target = store.append(ALICE, Post("regret", tags=("oops",), mentions=(B,)))
    kept = store.append(ALICE, Post("fine"))
    delete = store.append(ALICE, Delete(target.id))
    stored = store.get(target.id)
    assert stored.deleted
    assert stored.entry.payload is None
    assert stored.entry.content is None
    assert stored.entry.header_bytes == target.header_bytes
    assert stored.entry.signature == target.signature
    assert store.get(delete.id).entry.content == Delete(target.id)
    assert not store.get(kept.id).deleted
    assert ids(store.timeline([A])) == [kept.id]
    assert store.tagged("oops") == []
    assert store.mentions(B) == []
    assert store.verify_all() == VerifyReport(entries=3, feeds=1, payloads=2)
    # The entry with its payload, sent again by a peer that missed the delete,
    # is a duplicate: the payload does not come back.
    assert store.ingest([target]) == IngestReport(duplicates=1)
    assert store.get(target.id).entry.payload is None


def test_delete_is_honoured_by_a_store_that_ingests_the_log(
    tmp_path: Path, clock: FakeClock
) -> None:
    with (
        Store.open(tmp_path / "a.db", clock=clock) as source,
        Store.open(tmp_path / "b.db", clock=clock) as target,
    ):
        first = source.append(ALICE, Post("regret"))
        source.append(ALICE, Delete(first.id))
        # The log carries the target's header without its payload by now.
        log = entries_of(source, A)
        assert log[0].payload is None
        assert target.ingest(log).stored == 2
        stored = target.get(first.id)
        assert stored.deleted
        assert stored.entry.payload is None
        target.verify_all()


def test_delete_is_honoured_when_the_target_arrived_with_its_payload(store: Store) -> None:
    log = chain(ALICE, [Post("regret"), Post("kept")])
    delete = create_entry(ALICE, seq=3, prev=log[1].id, timestamp=2_000, payload=Delete(log[0].id))
    store.ingest(log)
    assert store.get(log[0].id).entry.payload is not None
    store.ingest([delete])
    stored = store.get(log[0].id)
    assert stored.deleted
    assert stored.entry.payload is None
    assert store.timeline([A]) == [store.get(log[1].id)]
    store.verify_all()


@pytest.mark.parametrize("delete_first", [True, False])
def test_a_delete_by_another_author_has_no_effect(store: Store, delete_first: bool) -> None:
    [target] = posts(ALICE, 1)
    [evil] = chain(BOB, [Delete(target.id)])
    batches = [[evil], [target]] if delete_first else [[target], [evil]]
    for batch in batches:
        assert store.ingest(batch).stored == 1
    stored = store.get(target.id)
    assert not stored.deleted
    assert stored.entry.payload == target.payload
    assert ids(store.timeline([A])) == [target.id]


def fork_then_delete() -> tuple[list[Entry], Entry]:
    """Alice's log, whose seq 3 deletes a fork entry (seq 2) that is not in it."""
    a1, a2 = posts(ALICE, 2)
    hidden = refork(ALICE, a2, "the other seq 2")
    a3 = create_entry(ALICE, seq=3, prev=a2.id, timestamp=3_000, payload=Delete(hidden.id))
    return [a1, a2, a3], hidden


@pytest.mark.parametrize("together", [False, True], ids=["separately", "in-one-batch"])
def test_delete_that_arrives_before_its_target(store: Store, together: bool) -> None:
    log, hidden = fork_then_delete()
    batches = [[*log, hidden]] if together else [log, [hidden]]
    reports = [store.ingest(batch) for batch in batches]
    assert sum(report.forks for report in reports) == 1
    stored = store.get(hidden.id)
    assert stored.deleted
    assert stored.entry.payload is None
    store.verify_all()


@pytest.mark.parametrize("together", [False, True], ids=["separately", "in-one-batch"])
def test_another_authors_delete_cannot_block_the_real_one(store: Store, together: bool) -> None:
    log, hidden = fork_then_delete()
    # Bob asks first to delete Alice's entry: that must change nothing...
    [evil] = chain(BOB, [Delete(hidden.id)])
    # ...in particular it must not stop Alice's own delete from applying.
    batches = [[evil, *log, hidden]] if together else [[evil], log, [hidden]]
    for batch in batches:
        store.ingest(batch)
    stored = store.get(hidden.id)
    assert stored.entry.payload is None
    assert stored.deleted


@pytest.mark.parametrize("chunk_size", [1, 1024])
def test_post_and_its_delete_in_one_ingest(store: Store, chunk_size: int) -> None:
    gone, kept = chain(
        ALICE, [Post("gone", tags=("t",), mentions=(B,)), Post("kept", tags=("t",))]
    )
    delete = create_entry(ALICE, seq=3, prev=kept.id, timestamp=5_000, payload=Delete(gone.id))
    assert store.ingest([gone, kept, delete], chunk_size=chunk_size).stored == 3
    assert store.get(gone.id).entry.payload is None
    assert ids(store.tagged("t")) == [kept.id]
    assert store.mentions(B) == []
    assert ids(store.timeline([A])) == [kept.id]
    assert store.verify_all().payloads == 2


def test_a_deleted_reply_leaves_its_thread(store: Store) -> None:
    root = store.append(ALICE, Post("root"))
    reply = store.append(BOB, Post("reply", root=root.id, parent=root.id))
    other = store.append(CAROL, Post("other reply", root=root.id, parent=reply.id))
    store.append(BOB, Delete(reply.id))
    assert ids(store.replies(root.id)) == [other.id]


def test_a_target_stored_after_its_delete_never_takes_effect(store: Store) -> None:
    a1, a2 = posts(ALICE, 2)
    hidden = create_entry(ALICE, seq=2, prev=a1.id, timestamp=7, payload=Follow(C))
    a3 = create_entry(ALICE, seq=3, prev=a2.id, timestamp=8, payload=Delete(hidden.id))
    store.ingest([a1, a2, a3])
    assert store.ingest([hidden]).forks == 1
    assert store.following(A) == []
    assert store.followers(C) == []


def test_deleting_an_applied_follow_does_not_undo_it(store: Store) -> None:
    follow = store.append(ALICE, Follow(B))
    store.append(ALICE, Delete(follow.id))
    assert store.get(follow.id).entry.payload is None
    assert store.following(A) == [B]


def test_delete_of_an_unknown_entry_is_stored_and_harmless(store: Store) -> None:
    [entry] = chain(ALICE, [Delete(b"\x09" * 32)])
    assert store.ingest([entry]).stored == 1
    assert store.count() == 1
    store.verify_all()


# --- timeline ------------------------------------------------------------------------------


def test_timeline_shows_posts_and_reposts_of_the_given_authors(
    store: Store, clock: FakeClock
) -> None:
    clock.now = 10_000
    shown: list[Entry] = []
    a1 = store.append(ALICE, Post("a1"), timestamp=1_000)
    shown.append(a1)
    b1 = store.append(BOB, Post("b1"), timestamp=2_000)
    shown.append(b1)
    store.append(ALICE, React(entry=b1.id, author=B, emoji="+"), timestamp=3_000)
    store.append(ALICE, Follow(B), timestamp=3_100)
    store.append(ALICE, Profile(name="a"), timestamp=3_200)
    store.append(ALICE, UnknownPayload(kind="poll", fields={}), timestamp=3_300)
    shown.append(store.append(ALICE, Repost(entry=b1.id, author=B), timestamp=4_000))
    shown.append(store.append(BOB, Post("b2", root=a1.id, parent=a1.id), timestamp=5_000))
    c1 = store.append(CAROL, Post("c1"), timestamp=6_000)

    newest_first = [entry.id for entry in reversed(shown)]
    assert ids(store.timeline([A, B])) == newest_first
    assert ids(store.timeline([B])) == [shown[3].id, b1.id]
    assert ids(store.timeline([A, B, C]))[0] == c1.id
    assert store.timeline([]) == []
    assert store.timeline([b"\x00" * 32]) == []
    assert store.timeline([A, B], limit=0) == []
    assert ids(store.recent()) == [c1.id, *newest_first]


def test_timeline_pages_with_the_cursor(store: Store, clock: FakeClock) -> None:
    for n in range(7):
        store.append(ALICE, Post(f"a{n}"), timestamp=1_000 + 10 * n)
        store.append(BOB, Post(f"b{n}"), timestamp=1_005 + 10 * n)
    everything = store.timeline([A, B], limit=100)
    assert len(everything) == 14
    pages: list[list[StoredEntry]] = []
    page = store.timeline([A, B], limit=3)
    while page:
        pages.append(page)
        page = store.timeline([A, B], limit=3, before=page[-1].cursor)
    assert [len(page) for page in pages] == [3, 3, 3, 3, 2]
    assert ids([item for page in pages for item in page]) == ids(everything)
    texts = [
        item.entry.content.text for item in everything if isinstance(item.entry.content, Post)
    ]
    assert texts[:4] == ["b6", "a6", "b5", "a5"]


def test_timeline_pages_through_equal_timestamps(store: Store) -> None:
    made = [
        store.append(key, Post(f"{n}"), timestamp=500) for n in range(3) for key in (ALICE, BOB)
    ]
    seen: list[bytes] = []
    page = store.timeline([A, B], limit=4)
    while page:
        seen += ids(page)
        page = store.timeline([A, B], limit=4, before=page[-1].cursor)
    # Equal times fall back on arrival order, newest first; nothing is lost or repeated.
    assert seen == [entry.id for entry in reversed(made)]


def test_a_future_timestamp_cannot_pin_the_top(store: Store, clock: FakeClock) -> None:
    clock.now = 10_000
    [liar] = chain(BOB, [Post("from the future")], start_ts=10**12)
    store.ingest([liar])
    clock.now = 20_000
    honest = store.append(ALICE, Post("now"), timestamp=20_000)
    assert ids(store.timeline([A, B])) == [honest.id, liar.id]
    assert store.get(liar.id).cursor[0] == 10_000


def timeline_model(
    rng: random.Random, authors: int
) -> tuple[list[tuple[Entry, int]], list[Ed25519PrivateKey]]:
    """Random logs, and a random interleaving of them in batches: (entry, received)."""
    keys = [make_key(100 + n) for n in range(authors)]
    logs: list[list[Entry]] = []
    for key in keys:
        entries: list[Entry] = []
        for seq in range(1, rng.randint(0, 14) + 1):
            roll = rng.random()
            own_posts = [e.id for e in entries if e.kind == "post"]
            payload: Payload
            if roll < 0.55:
                payload = Post(f"{seq}")
            elif roll < 0.65:
                payload = Repost(entry=rng.randbytes(32), author=rng.randbytes(32))
            elif roll < 0.75:
                payload = React(entry=rng.randbytes(32), author=rng.randbytes(32), emoji="+")
            elif roll < 0.85 and own_posts:
                payload = Delete(rng.choice(own_posts))
            else:
                payload = Follow(rng.randbytes(32))
            entries.append(
                create_entry(
                    key,
                    seq=seq,
                    prev=entries[-1].id if entries else None,
                    timestamp=rng.randint(0, 3_000),
                    payload=payload,
                )
            )
        logs.append(entries)
    arrivals: list[tuple[Entry, int]] = []
    positions = [0] * authors
    now = 1_000
    while any(positions[n] < len(logs[n]) for n in range(authors)):
        now += rng.randint(0, 200)
        for _ in range(rng.randint(1, 6)):
            open_logs = [n for n in range(authors) if positions[n] < len(logs[n])]
            if not open_logs:
                break
            n = rng.choice(open_logs)
            arrivals.append((logs[n][positions[n]], now))
            positions[n] += 1
    return arrivals, keys


@pytest.mark.parametrize("seed", range(8))
def test_timeline_matches_a_brute_force_model(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    arrivals, keys = timeline_model(rng, authors=5)
    clock = FakeClock()
    # The model: rowids count stored entries; sort_ts = min(timestamp, received).
    rows: dict[bytes, tuple[int, int]] = {}
    deleted: set[bytes] = set()
    with Store.open(tmp_path / "x.db", clock=clock) as store:
        index = 0
        while index < len(arrivals):
            received = arrivals[index][1]
            batch = [entry for entry, at in arrivals[index:] if at == received]
            clock.now = received
            chunk_size = rng.choice([1, 3, 1024])
            assert store.ingest(batch, chunk_size=chunk_size).stored == len(batch)
            for entry in batch:
                rows[entry.id] = (min(entry.header.timestamp, received), len(rows) + 1)
                if isinstance(entry.content, Delete):
                    deleted.add(entry.content.entry)
            index += len(batch)

        by_id = {entry.id: entry for entry, _ in arrivals}
        for _ in range(6):
            authors = {public(key) for key in rng.sample(keys, rng.randint(1, len(keys)))}
            expected = sorted(
                (
                    entry_id
                    for entry_id, entry in by_id.items()
                    if entry.author in authors
                    and entry.kind in ("post", "repost")
                    and entry_id not in deleted
                ),
                key=lambda entry_id: rows[entry_id],
                reverse=True,
            )
            limit = rng.randint(1, 9)
            assert ids(store.timeline(authors, limit=limit)) == expected[:limit]
            collected: list[bytes] = []
            page = store.timeline(authors, limit=limit)
            while page:
                collected += ids(page)
                page = store.timeline(authors, limit=limit, before=page[-1].cursor)
            assert collected == expected
            for stored in store.timeline(authors, limit=len(expected) + 1):
                assert stored.cursor == rows[stored.entry.id]
        store.verify_all()


# --- other queries ------------------------------------------------------------------------------


def test_mentions_newest_first_with_paging(store: Store) -> None:
    first = store.append(ALICE, Post("hi @bob", mentions=(B,)), timestamp=100)
    store.append(ALICE, Post("hi @carol", mentions=(C,)), timestamp=200)
    second = store.append(CAROL, Post("hi both", mentions=(A, B)), timestamp=300)
    assert ids(store.mentions(B)) == [second.id, first.id]
    assert ids(store.mentions(A)) == [second.id]
    page = store.mentions(B, limit=1)
    assert ids(page) == [second.id]
    assert ids(store.mentions(B, before=page[-1].cursor)) == [first.id]
    assert store.mentions(b"\x00" * 32) == []


def test_tagged_newest_first_with_paging(store: Store) -> None:
    first = store.append(ALICE, Post("one", tags=("trio", "python")), timestamp=100)
    second = store.append(BOB, Post("two", tags=("trio",)), timestamp=200)
    store.append(BOB, Post("three", tags=("rust",)), timestamp=300)
    assert ids(store.tagged("trio")) == [second.id, first.id]
    assert ids(store.tagged("python")) == [first.id]
    page = store.tagged("trio", limit=1)
    assert ids(store.tagged("trio", before=page[-1].cursor)) == [first.id]
    assert store.tagged("Trio") == []


def test_replies_oldest_first(store: Store) -> None:
    root = store.append(ALICE, Post("root"), timestamp=100)
    r1 = store.append(BOB, Post("r1", root=root.id, parent=root.id), timestamp=300)
    r2 = store.append(CAROL, Post("r2", root=root.id, parent=r1.id), timestamp=200)
    store.append(BOB, Post("elsewhere", root=b"\x01" * 32, parent=b"\x01" * 32))
    assert ids(store.replies(root.id)) == [r2.id, r1.id]
    assert store.replies(r1.id) == []


def test_reactions_count_one_per_author(store: Store) -> None:
    target = store.append(ALICE, Post("react to me"))
    for key, emoji in [(BOB, "+"), (CAROL, "+"), (ALICE, "\u2764"), (BOB, "\u2764")]:
        store.append(key, React(entry=target.id, author=A, emoji=emoji))
    # Bob changed his mind: only his newest reaction counts.
    assert store.reactions(target.id) == {"+": 1, "\u2764": 2}
    assert store.reactions(b"\x00" * 32) == {}


def test_following_blocking_and_followers(store: Store) -> None:
    store.append(ALICE, Follow(B))
    store.append(ALICE, Follow(C))
    store.append(ALICE, Unfollow(C))
    store.append(CAROL, Follow(B))
    store.append(ALICE, Block(C))
    store.append(BOB, Block(A))
    store.append(BOB, Unblock(A))
    assert store.following(A) == [B]
    assert store.following(B) == []
    assert sorted(store.followers(B)) == sorted([A, C])
    assert store.followers(C) == []
    assert store.blocking(A) == [C]
    assert store.blocking(B) == []
    # Following again after unfollowing counts.
    store.append(ALICE, Follow(C))
    assert sorted(store.following(A)) == sorted([B, C])


def test_relations_follow_log_order_when_ingested(tmp_path: Path, clock: FakeClock) -> None:
    log = chain(ALICE, [Follow(B), Unfollow(B), Follow(C)])
    with Store.open(tmp_path / "x.db", clock=clock) as store:
        store.ingest(log, chunk_size=1)
        assert store.following(A) == [C]


def test_profile_merges_name_and_bio(store: Store) -> None:
    store.append(ALICE, Profile(name="Alice", bio="Writes."))
    store.append(ALICE, Profile(name="Alice L."))
    info = store.feed_info(A)
    assert info is not None
    assert (info.name, info.bio) == ("Alice L.", "Writes.")
    store.append(ALICE, Profile(bio="Reads."))
    info = store.feed_info(A)
    assert info is not None
    assert (info.name, info.bio) == ("Alice L.", "Reads.")
    assert info.latest_seq == 3
    assert store.feed_info(B) is None
    assert [feed.author for feed in store.feeds()] == [A]


def test_profile_merge_when_ingested_in_several_chunks(tmp_path: Path, clock: FakeClock) -> None:
    log = chain(ALICE, [Profile(name="n", bio="b"), Post("x"), Profile(name="m")])
    with Store.open(tmp_path / "x.db", clock=clock) as store:
        store.ingest(log, chunk_size=1)
        info = store.feed_info(A)
        assert info is not None
        assert (info.name, info.bio) == ("m", "b")


def test_feed_lists_highest_seq_first(store: Store) -> None:
    made = [store.append(ALICE, Post(f"{n}")) for n in range(5)]
    assert ids(store.feed(A, limit=2)) == [made[4].id, made[3].id]
    assert ids(store.feed(A, before_seq=3)) == [made[1].id, made[0].id]
    assert ids(list(store.log(A, from_seq=4))) == [made[3].id, made[4].id]


def test_get_and_find(store: Store) -> None:
    made = store.append(ALICE, Post("x"))
    assert store.get(made.id).entry == made
    assert store.find(made.id) == store.get(made.id)
    assert store.find(b"\x00" * 32) is None
    with pytest.raises(NotFound):
        store.get(b"\x00" * 32)


# --- resolve_prefix ------------------------------------------------------------------------


def two_ids_sharing_a_prefix() -> tuple[Entry, Entry]:
    """Two first entries whose ids share their first 4 hex digits (a birthday search)."""
    seen: dict[bytes, Entry] = {}
    for n in range(5_000):
        entry = create_entry(make_key(1_000 + n), seq=1, prev=None, timestamp=0, payload=Post("x"))
        other = seen.setdefault(entry.id[:2], entry)
        if other is not entry:
            return other, entry
    raise AssertionError("no shared prefix in 5000 ids")


def test_resolve_prefix(store: Store) -> None:
    made = store.append(ALICE, Post("x"))
    full = made.id.hex()
    assert store.resolve_prefix(full) == made.id
    assert store.resolve_prefix(full[:4]) == made.id
    assert store.resolve_prefix(full[:7]) == made.id
    assert store.resolve_prefix(f"  {full[:10].upper()} ") == made.id


def test_resolve_prefix_not_found(store: Store) -> None:
    made = store.append(ALICE, Post("x"))
    other = "0000" if not made.id.hex().startswith("0000") else "ffff"
    with pytest.raises(NotFound):
        store.resolve_prefix(other)
    with pytest.raises(NotFound):
        store.resolve_prefix(made.id.hex()[:-1] + ("0" if made.id.hex()[-1] != "0" else "1"))


@pytest.mark.parametrize("bad", ["", "abc", "xyzw", "12 34", "0x1234", "a" * 65, "g" * 8])
def test_resolve_prefix_invalid(store: Store, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        store.resolve_prefix(bad)


def test_resolve_prefix_ambiguous(store: Store) -> None:
    first, second = two_ids_sharing_a_prefix()
    store.ingest([first, second])
    shared = first.id.hex()[:4]
    with pytest.raises(AmbiguousId) as info:
        store.resolve_prefix(shared)
    assert isinstance(info.value, LocalError)
    common = 4
    while first.id.hex()[common] == second.id.hex()[common]:
        common += 1
    assert store.resolve_prefix(first.id.hex()[: common + 1]) == first.id
    assert store.resolve_prefix(second.id.hex()[: common + 1]) == second.id


# --- verify_all and damaged files ----------------------------------------------------------------


def damage(path: Path, sql: str, *params: object) -> None:
    db = sqlite3.connect(path)
    try:
        with db:
            assert db.execute(sql, params).rowcount == 1
    finally:
        db.close()


def filled(path: Path) -> list[Entry]:
    with Store.open(path, clock=FakeClock()) as store:
        made = [store.append(ALICE, Post(f"n{n}")) for n in range(3)]
        made.append(store.append(BOB, Post("b")))
        assert store.verify_all() == VerifyReport(entries=4, feeds=2, payloads=4)
    return made


def test_verify_all_detects_a_changed_signature_byte(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    made = filled(path)
    signature = bytearray(made[1].signature)
    signature[10] ^= 0x01
    damage(path, "UPDATE entries SET signature = ? WHERE id = ?", bytes(signature), made[1].id)
    with Store.open(path) as store, pytest.raises(CorruptStore):
        store.verify_all()


def test_verify_all_checks_signatures_even_when_the_id_column_agrees(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    made = filled(path)
    signature = bytearray(made[1].signature)
    signature[40] ^= 0x80
    new_id = entry_id(made[1].header_bytes, bytes(signature))
    damage(
        path,
        "UPDATE entries SET signature = ?, id = ? WHERE id = ?",
        bytes(signature),
        new_id,
        made[1].id,
    )
    with Store.open(path) as store, pytest.raises(CorruptStore, match="does not verify") as info:
        store.verify_all()
    assert new_id.hex() in str(info.value)


def test_verify_all_detects_a_damaged_payload(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    made = filled(path)
    payload = bytearray(made[2].payload or b"")
    payload[-1] ^= 0x01
    damage(path, "UPDATE entries SET payload = ? WHERE id = ?", bytes(payload), made[2].id)
    with Store.open(path) as store:
        with pytest.raises(CorruptStore):
            store.verify_all()
        with pytest.raises(CorruptStore):
            store.get(made[2].id)


def test_verify_all_detects_a_damaged_header(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    made = filled(path)
    damage(path, "UPDATE entries SET header = ? WHERE id = ?", b"\x00", made[0].id)
    with Store.open(path) as store, pytest.raises(CorruptStore):
        store.verify_all()


def test_verify_all_detects_index_columns_that_disagree(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    made = filled(path)
    damage(path, "UPDATE entries SET seq = 9 WHERE id = ?", made[2].id)
    with Store.open(path) as store, pytest.raises(CorruptStore, match="disagree"):
        store.verify_all()


@pytest.mark.parametrize("missing", [0, 1])
def test_verify_all_detects_a_missing_entry(tmp_path: Path, missing: int) -> None:
    path = tmp_path / "x.db"
    made = filled(path)
    damage(path, "DELETE FROM entries WHERE id = ?", made[missing].id)
    with Store.open(path) as store, pytest.raises(CorruptStore):
        store.verify_all()


def test_open_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not a database, just text\n" * 200)
    with pytest.raises(StorageError):
        Store.open(path)


def test_open_a_path_that_cannot_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        Store.open(tmp_path / "missing-dir" / "x.db")


def test_open_a_store_from_a_newer_torv(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    filled(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError, match="newer"):
        Store.open(path)


def test_open_an_sqlite_file_of_another_program(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE entries (something_else TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StorageError):
        Store.open(path)


def test_migrate_applies_later_migrations_and_reports_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    made = filled(path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(db) == SCHEMA_VERSION  # nothing to do
        assert migrate(db, (*MIGRATIONS, "CREATE TABLE extra (x)")) == SCHEMA_VERSION
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
        assert db.execute("SELECT count(*) FROM extra").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM entries").fetchone() == (len(made),)
        with pytest.raises(StorageError, match="newer"):
            migrate(db)
    finally:
        db.close()


def test_migrate_from_empty_and_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        assert migrate(db) == 0
        broken = (*MIGRATIONS, "CREATE TABLE half (x);\nCREATE TABLE entries (y);")
        with pytest.raises(StorageError, match=f"version {SCHEMA_VERSION + 1}"):
            migrate(db, broken)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
        assert not db.in_transaction
    finally:
        db.close()


def test_migration_statements_may_hold_semicolons_in_comments(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        script = "CREATE TABLE a (x); -- one; two\nCREATE TABLE b (\n  y -- why; so\n);\n"
        assert migrate(db, (script,)) == 0
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert names == {"a", "b"}
    finally:
        db.close()
