"""Posts kept for the square without their logs: signatures checked, bounded,
shown in timelines with cursors that never tie, dropped when deleted or blocked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import Store
from storage.entry import Entry, create_entry
from storage.payloads import Delete, Post, React
from storage.store import SQUARE_CAPACITY

from .helpers import FakeClock, make_key, posts, public, with_signature

NOW = 1_700_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "x.db", clock=FakeClock(NOW)) as opened:
        yield opened


def loose_post(n: int, seq: int, text: str, ts: int) -> Entry:
    """A post at ``seq`` of key ``n`` whose earlier entries nobody here holds."""
    return create_entry(make_key(n), seq=seq, prev=bytes(32), timestamp=ts, payload=Post(text))


def texts(store: Store, **kwargs: object) -> list[str]:
    found = []
    for stored in store.recent(**kwargs):  # type: ignore[arg-type]
        assert isinstance(stored.entry.content, Post)
        found.append(stored.entry.content.text)
    return found


def test_kept_posts_are_shown_with_the_logs_newest_first(store: Store) -> None:
    store.ingest(posts(make_key(1), 3, start_ts=1_000))  # post 0..2 at 1000, 1010, 1020
    stranger = [loose_post(2, 40, "far 1", 1_005), loose_post(2, 41, "far 2", 1_030)]
    report = store.keep_on_square(stranger)
    assert report.kept == (0, 1)
    assert report.bad == ()
    assert texts(store) == ["far 2", "post 2", "post 1", "far 1", "post 0"]
    found = store.get(stranger[0].id)
    assert found.loose
    assert found.entry == stranger[0]
    assert not store.get(store.recent()[1].entry.id).loose
    assert store.latest_seq(public(make_key(2))) == 0  # no log of the stranger


def test_paging_crosses_both_tables_without_repeats_or_gaps(store: Store) -> None:
    store.ingest(posts(make_key(1), 30, start_ts=1_000))
    store.keep_on_square([loose_post(2, 7 + n, f"far {n}", 1_000 + 10 * n) for n in range(30)])
    everything = store.recent(limit=100)
    assert len(everything) == 60
    paged, before = [], None
    while page := store.recent(limit=7, before=before):
        paged.extend(page)
        before = page[-1].cursor
    assert [s.entry.id for s in paged] == [s.entry.id for s in everything]


def test_bad_signatures_are_reported_and_not_kept(store: Store) -> None:
    good = loose_post(2, 5, "real", 1_000)
    forged = with_signature(loose_post(2, 6, "forged", 1_001), bytes(64))
    report = store.keep_on_square([good, forged])
    assert report.kept == (0,)
    assert report.bad == (1,)
    assert store.find(forged.id) is None


def test_only_new_posts_are_kept_and_the_bound_is_asked_for_each(store: Store) -> None:
    held = posts(make_key(1), 1)
    store.ingest(held)
    react = create_entry(
        make_key(2),
        seq=3,
        prev=bytes(32),
        timestamp=1_000,
        payload=React(held[0].id, public(make_key(1)), "+"),
    )
    fresh = [loose_post(2, 4 + n, f"n{n}", 1_000 + n) for n in range(4)]
    asked: list[bytes] = []

    def allow(entry: Entry) -> bool:
        asked.append(entry.id)
        return len(asked) <= 2

    report = store.keep_on_square([held[0], react, *fresh], allow)
    assert report.kept == (2, 3)
    assert asked == [e.id for e in fresh]  # not for the held post, nor the reaction
    again = store.keep_on_square(fresh[:2], allow)
    assert again.kept == ()
    assert len(asked) == 4


def test_the_square_is_bounded_and_the_oldest_go_first(store: Store) -> None:
    extra = 5
    batch = [loose_post(3, n + 2, f"p{n}", 1_000 + n) for n in range(SQUARE_CAPACITY + extra)]
    store.keep_on_square(batch)
    kept = store.recent(limit=SQUARE_CAPACITY + extra)
    assert len(kept) == SQUARE_CAPACITY
    assert store.find(batch[extra - 1].id) is None
    assert store.find(batch[extra].id) is not None


def test_a_log_entry_takes_the_place_of_its_square_copy(store: Store) -> None:
    log = posts(make_key(2), 3)
    store.keep_on_square([log[2]])
    store.ingest(log)
    shown = store.recent()
    assert [s.entry.id for s in shown] == [e.id for e in reversed(log)]
    assert not store.get(log[2].id).loose


def test_deletes_drop_the_authors_own_posts_only(store: Store) -> None:
    mine = loose_post(2, 10, "oops", 1_000)
    theirs = loose_post(4, 3, "keep me", 1_001)
    store.keep_on_square([mine, theirs])
    delete_mine = create_entry(
        make_key(2), seq=11, prev=mine.id, timestamp=1_002, payload=Delete(mine.id)
    )
    delete_theirs = create_entry(
        make_key(2), seq=12, prev=delete_mine.id, timestamp=1_003, payload=Delete(theirs.id)
    )
    forged = with_signature(delete_mine, bytes(64))
    report = store.drop_from_square([forged, delete_theirs, delete_mine])
    assert report.kept == (2,)
    assert report.bad == (0,)
    assert store.find(mine.id) is None
    assert store.find(theirs.id) is not None


def test_purge_removes_the_feeds_square_posts(store: Store) -> None:
    store.keep_on_square([loose_post(2, 9, "spam", 1_000), loose_post(4, 2, "fine", 1_000)])
    store.purge(public(make_key(2)))
    assert texts(store) == ["fine"]


def test_the_square_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    post = loose_post(2, 9, "still here", 1_000)
    with Store.open(path, clock=FakeClock(NOW)) as store:
        store.keep_on_square([post])
    with Store.open(path, clock=FakeClock(NOW)) as store:
        assert store.get(post.id).loose
