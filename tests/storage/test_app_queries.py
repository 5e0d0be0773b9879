"""Store queries behind the app's screens: search, replies to a person,
repost counts and whether someone reacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.payloads import Delete, Post, React, Repost
from storage.store import Store, StoredEntry

from .helpers import FakeClock, make_key, public

ANA, BEN, CAL = make_key(1), make_key(2), make_key(3)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "x.db", clock=FakeClock()) as opened:
        yield opened


def texts(items: list[StoredEntry]) -> list[str]:
    return [item.entry.content.text for item in items if isinstance(item.entry.content, Post)]


def test_search_finds_text_case_insensitively_newest_first(store: Store) -> None:
    for text in ["Bread today", "no match here", "more BREAD", "Brød og smør", "BRØD igen"]:
        store.append(ANA, Post(text=text))
    assert texts(store.search("bread")) == ["more BREAD", "Bread today"]
    assert texts(store.search("brød")) == ["BRØD igen", "Brød og smør"]
    assert texts(store.search("bread", limit=1)) == ["more BREAD"]
    newest = store.search("bread", limit=1)[0]
    assert texts(store.search("bread", before=newest.cursor)) == ["Bread today"]
    assert store.search("") == []
    # Only the newest posts are looked through: 2 holds no bread, 3 one.
    assert store.search("bread", scan=2) == []
    assert texts(store.search("bread", scan=3)) == ["more BREAD"]


def test_search_ignores_deleted_posts_and_other_kinds(store: Store) -> None:
    post = store.append(ANA, Post(text="secret bread"))
    store.append(BEN, Repost(entry=post.id, author=public(ANA)))
    assert texts(store.search("bread")) == ["secret bread"]
    store.append(ANA, Delete(entry=post.id))
    assert store.search("bread") == []


def test_replies_to_a_person_are_others_replies_to_their_posts(store: Store) -> None:
    mine = store.append(ANA, Post(text="mine"))
    other = store.append(BEN, Post(text="ben's"))
    to_me = store.append(BEN, Post(text="to ana", root=mine.id, parent=mine.id))
    store.append(ANA, Post(text="ana to herself", root=mine.id, parent=to_me.id))
    store.append(CAL, Post(text="to ben", root=other.id, parent=other.id))
    deeper = store.append(CAL, Post(text="to ana too", root=mine.id, parent=mine.id))
    found = store.replies_to(public(ANA))
    assert [item.entry.id for item in found] == [deeper.id, to_me.id]
    assert [item.entry.id for item in store.replies_to(public(ANA), limit=1)] == [deeper.id]
    assert [item.entry.id for item in store.replies_to(public(ANA), before=found[0].cursor)] == [
        to_me.id
    ]


def test_reposts_count_feeds_and_reacted_tells_who(store: Store) -> None:
    post = store.append(ANA, Post(text="share me"))
    assert store.reposts(post.id) == 0
    for key in (BEN, CAL, CAL):
        store.append(key, Repost(entry=post.id, author=public(ANA)))
    assert store.reposts(post.id) == 2
    assert not store.reacted(post.id, public(BEN))
    store.append(BEN, React(entry=post.id, author=public(ANA), emoji="♥"))
    assert store.reacted(post.id, public(BEN))
    assert not store.reacted(post.id, public(CAL))
